"""The identity adapter (a rank-1 LoRA of zeros) is written without torch, as PEFT reads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from app.sampler.identity import write_identity_adapter

WEIGHTS = Path(__file__).resolve().parents[3] / "weights"


def test_the_identity_adapter_is_float32_zeros_on_every_q_proj(tmp_path: Path) -> None:
    for model in ("clora-tiny", "clora-tiny-qwen3"):
        config = json.loads((WEIGHTS / model / "config.json").read_text())
        out = write_identity_adapter(WEIGHTS / model, tmp_path / model)
        tensors = load_file(str(out / "adapter_model.safetensors"))
        layers = int(config["num_hidden_layers"])
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        assert len(tensors) == 2 * layers
        for name, tensor in tensors.items():
            assert ".self_attn.q_proj.lora_" in name and tensor.dtype.is_floating_point
            assert str(tensor.dtype) == "torch.float32" and not tensor.any()
        a = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
        b = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
        assert tuple(a.shape) == (1, config["hidden_size"])
        assert tuple(b.shape) == (config["num_attention_heads"] * head_dim, 1)
        assert json.loads((out / "adapter_config.json").read_text())["r"] == 1


def test_the_gateway_does_not_import_torch() -> None:
    """torch made the gateway 297 MiB at import instead of 118, only to write the file above."""
    code = "import sys, app.main; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
