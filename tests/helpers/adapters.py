"""Real PEFT adapters with random weights, made with peft itself, for serving tests."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from tests.helpers.engine import MODEL_DIR

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def random_adapter(out_dir: Path, seed: int, rank: int = 8, scale: float = 0.3) -> Path:
    """A LoRA whose B is not zero, so its outputs differ from the base and from other seeds."""
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(
        MODEL_DIR, local_files_only=True, dtype=torch.float32
    )
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS, init_lora_weights=False)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.mul_(scale)
    model.save_pretrained(str(out_dir))
    return out_dir
