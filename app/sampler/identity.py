"""A rank-1 LoRA of zeros: the base model's output, served as an adapter.

Requests for agents that have no adapter version yet go through this adapter instead of
the bare base model, because vLLM on CPU applies the last slot's adapter to base requests
batched with adapter requests once every LoRA slot is full (vllm-project/vllm#48421).

Written with numpy, not torch: the gateway writes it, and importing torch for this one file
made `import app.main` 297 MiB resident instead of 118 (the bytes are the same: float32
zeros).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

IDENTITY_ADAPTER = "clora-identity"


def write_identity_adapter(base_model_dir: Path, out_dir: Path) -> Path:
    """Write (once) a zero LoRA on every layer's q_proj of the base model; return its folder."""
    if (out_dir / "adapter_model.safetensors").exists():
        return out_dir
    config = json.loads((base_model_dir / "config.json").read_text())
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // int(config["num_attention_heads"]))
    q_out = int(config["num_attention_heads"]) * head_dim
    tensors = {}
    for layer in range(int(config["num_hidden_layers"])):
        key = f"base_model.model.model.layers.{layer}.self_attn.q_proj"
        tensors[f"{key}.lora_A.weight"] = np.zeros((1, hidden), dtype=np.float32)
        tensors[f"{key}.lora_B.weight"] = np.zeros((q_out, 1), dtype=np.float32)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp / "adapter_model.safetensors"))
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base_model_dir),
        "r": 1,
        "lora_alpha": 1,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj"],
        "bias": "none",
        "fan_in_fan_out": False,
    }
    (tmp / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    os.replace(tmp, out_dir)
    return out_dir
