"""Reading and writing standard PEFT LoRA adapter directories (what vLLM and transformers load).

A directory holds `adapter_config.json` (a `peft.LoraConfig`) and `adapter_model.safetensors`
with keys `base_model.model.<module>.lora_A.weight` (rank, in) and `...lora_B.weight` (out, rank).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig
from safetensors.torch import load_file, save_file

from trainer.config import LoraSettings
from trainer.errors import AdapterMismatchError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_SUFFIX = ".weight"


def to_peft_key(name: str) -> str:
    """`model.layers.0.self_attn.q_proj.lora_A` -> PEFT's saved key."""
    return f"{_PREFIX}{name}{_SUFFIX}"


def from_peft_key(key: str) -> str:
    """PEFT's saved key -> the store's name of that matrix."""
    if not key.startswith(_PREFIX) or not key.endswith(_SUFFIX):
        raise AdapterMismatchError(f"unexpected key {key!r} in a PEFT LoRA adapter")
    name = key[len(_PREFIX) : -len(_SUFFIX)]
    if not (name.endswith(".lora_A") or name.endswith(".lora_B")):
        raise AdapterMismatchError(f"unsupported tensor {key!r} (only lora_A/lora_B are)")
    return name


def write_peft_adapter(
    out_dir: Path,
    weights: dict[str, torch.Tensor],
    lora: LoraSettings,
    base_model_name_or_path: str,
) -> None:
    """Write `weights` (store names -> tensors) as a PEFT adapter directory into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = LoraConfig(
        r=lora.rank,
        # PEFT and vLLM type alpha as int; keep a fractional alpha as it is.
        lora_alpha=int(lora.alpha) if float(lora.alpha).is_integer() else lora.alpha,  # type: ignore[arg-type]
        target_modules=list(lora.target_modules),
        lora_dropout=lora.dropout,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model_name_or_path,
        inference_mode=True,
    )
    config.save_pretrained(str(out_dir))
    tensors = {to_peft_key(n): t.detach().to("cpu").contiguous() for n, t in weights.items()}
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})


def read_peft_adapter(adapter_dir: Path) -> tuple[LoraSettings, dict[str, torch.Tensor]]:
    """LoRA settings and fp32 (fp64 if saved so) weights (store names) of a PEFT adapter directory.

    Refuses PEFT features the multi-LoRA layers do not implement (DoRA, rsLoRA, per-module
    ranks, trained biases, extra saved modules) with `AdapterMismatchError`.
    """
    config_path = adapter_dir / CONFIG_FILE
    if not config_path.is_file():
        raise AdapterMismatchError(f"no {CONFIG_FILE} in {adapter_dir}")
    cfg = json.loads(config_path.read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise AdapterMismatchError(f"{adapter_dir} is a {cfg.get('peft_type')} adapter, not LoRA")
    unsupported = {
        "use_dora": cfg.get("use_dora"),
        "use_rslora": cfg.get("use_rslora"),
        "rank_pattern": cfg.get("rank_pattern"),
        "alpha_pattern": cfg.get("alpha_pattern"),
        "modules_to_save": cfg.get("modules_to_save"),
        "lora_bias": cfg.get("lora_bias"),
        "fan_in_fan_out": cfg.get("fan_in_fan_out"),
    }
    used = [k for k, v in unsupported.items() if v]
    if used or cfg.get("bias", "none") != "none":
        raise AdapterMismatchError(f"{adapter_dir} uses unsupported PEFT options {used}")
    targets = cfg.get("target_modules")
    if not isinstance(targets, list) or not targets:
        raise AdapterMismatchError(f"{adapter_dir}: target_modules must be a list of names")
    lora = LoraSettings(
        rank=int(cfg["r"]),
        alpha=float(cfg["lora_alpha"]),
        target_modules=tuple(targets),
        dropout=float(cfg.get("lora_dropout") or 0.0),
    )
    weights_path = adapter_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        raise AdapterMismatchError(f"no {WEIGHTS_FILE} in {adapter_dir}")
    raw = load_file(str(weights_path))
    weights = {
        from_peft_key(k): v if v.dtype == torch.float64 else v.float() for k, v in raw.items()
    }
    return lora, weights
