"""Checkpoints of one adapter's full training state, written atomically.

One file, `adapter_state.safetensors`, holds every tensor group (`<group>/<name>`) and, in the
safetensors metadata, the JSON of settings, step count, gradient units and the last step id.
Being one file, it is replaced atomically (write to a temporary name, fsync, rename, fsync the
directory): a crash leaves either the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from trainer.adapter_store import TENSOR_GROUPS, AdapterState
from trainer.config import LoraSettings
from trainer.errors import AdapterMismatchError

STATE_FILE = "adapter_state.safetensors"
FORMAT_VERSION = 1
_META_KEY = "clora_state"


def save_state(state: AdapterState, directory: Path, base_info: dict[str, Any]) -> Path:
    """Write the adapter's state into `directory` atomically; returns the file written."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{group}/{name}": t.detach().to("cpu").clone()  # views of one buffer: unshare
        for group in TENSOR_GROUPS
        for name, t in state.group(group).items()
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "adapter_id": state.adapter_id,
        "lora": dataclasses.asdict(state.lora),
        "shapes": {m: list(s) for m, s in state.shapes.items()},
        "step": state.step,
        "grad_units": state.grad_units,
        "grad_rows": state.grad_rows,
        "last_step_id": state.last_step_id,
        "base": base_info,
    }
    payload = save(tensors, metadata={_META_KEY: json.dumps(meta)})
    target = directory / STATE_FILE
    tmp = directory / f".{STATE_FILE}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def read_state(directory: Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Metadata and tensor groups of a checkpoint written by `save_state`."""
    path = directory / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no adapter checkpoint {path}")
    data = path.read_bytes()
    meta = _read_metadata(data)
    flat = load(data)
    groups: dict[str, dict[str, torch.Tensor]] = {g: {} for g in TENSOR_GROUPS}
    for key, tensor in flat.items():
        group, _, name = key.partition("/")
        if group not in groups:
            raise AdapterMismatchError(f"{path}: unknown tensor group {group!r}")
        groups[group][name] = tensor
    return meta, groups


def lora_from_meta(meta: dict[str, Any]) -> LoraSettings:
    """The LoRA settings recorded in a checkpoint."""
    raw = dict(meta["lora"])
    raw["target_modules"] = tuple(raw["target_modules"])
    return LoraSettings(**raw)


def _read_metadata(data: bytes) -> dict[str, Any]:
    # safetensors layout: 8-byte little-endian header size, then the JSON header.
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    meta = json.loads(header.get("__metadata__", {}).get(_META_KEY, "null"))
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise AdapterMismatchError("not a clora adapter checkpoint (or an unknown version)")
    return meta
