"""Adapter folders on disk: written atomically, never changed, checked by sha256."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from app.core.errors import InvalidRequest

log = logging.getLogger(__name__)

REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")


def checksum(folder: Path) -> str:
    """sha256 over the required files' names and bytes, in a fixed order."""
    digest = hashlib.sha256()
    for name in REQUIRED_FILES:
        digest.update(name.encode())
        with (folder / name).open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def validate_adapter_folder(folder: Path, max_rank: int) -> dict:
    """Refuse a folder that is not a PEFT LoRA adapter vLLM could load; return its config."""
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise InvalidRequest(f"adapter is missing {name}", param="adapter")
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"adapter_config.json is not JSON: {exc}", param="adapter") from exc
    if config.get("peft_type") != "LORA":
        raise InvalidRequest("adapter is not a LoRA (peft_type)", param="adapter")
    rank = config.get("r")
    if not isinstance(rank, int) or not 1 <= rank <= max_rank:
        raise InvalidRequest(f"adapter rank must be 1..{max_rank}", param="adapter")
    _validate_weights(folder / "adapter_model.safetensors", rank)
    return config


def _validate_weights(path: Path, rank: int) -> None:
    """Every tensor is a LoRA A (rank rows) or B (rank columns) matrix of finite numbers."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InvalidRequest(
            f"adapter weights are not safetensors: {exc}", param="adapter"
        ) from exc
    if not tensors:
        raise InvalidRequest("adapter weights are empty", param="adapter")
    for name, tensor in tensors.items():
        if tensor.dim() != 2 or not ("lora_A" in name or "lora_B" in name):
            raise InvalidRequest(f"adapter tensor {name!r} is not a LoRA matrix", param="adapter")
        if tensor.shape[0 if "lora_A" in name else 1] != rank:
            raise InvalidRequest(
                f"adapter tensor {name!r} has shape {tuple(tensor.shape)}, not rank {rank}",
                param="adapter",
            )
        if not torch.isfinite(tensor).all():
            raise InvalidRequest(f"adapter tensor {name!r} holds NaN or inf", param="adapter")


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


ORPHANS = ".orphans"
"""Where folders that no version row names are moved aside (under the adapter root)."""


def write_version_folder(
    root: Path, relative: Path, write: Callable[[Path], None], max_rank: int
) -> tuple[Path, str]:
    """Write into a temp folder, validate, fsync, then rename into place; never overwrite.

    The caller guarantees that no version row names ``relative`` (publish holds the agent's
    lock and takes the next number). A folder already there is therefore an orphan of a
    publish that died between this rename and its commit: when it holds exactly the bytes
    being written it is reused, otherwise it is moved aside to ``.orphans`` and kept."""
    final = root / relative
    tmp = root / ".tmp" / uuid.uuid4().hex
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        validate_adapter_folder(tmp, max_rank)
        digest = checksum(tmp)
        if final.exists() and _recover_orphan(root, final, digest):
            shutil.rmtree(tmp, ignore_errors=True)
            return final, digest
        _fsync_tree(tmp)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, final)
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, digest


def _recover_orphan(root: Path, folder: Path, digest: str) -> bool:
    """Reuse an orphaned folder with the same checksum (True), or move it aside (False)."""
    try:
        same = checksum(folder) == digest
    except (FileNotFoundError, NotADirectoryError):
        same = False
    if same:
        log.warning("adapter folder %s was left by an earlier publish; reusing it", folder)
        return True
    aside = (
        root
        / ORPHANS
        / f"{folder.relative_to(root).as_posix().replace('/', '__')}-{uuid.uuid4().hex[:8]}"
    )
    aside.parent.mkdir(parents=True, exist_ok=True)
    os.rename(folder, aside)
    log.warning("adapter folder %s had no version row; moved aside to %s", folder, aside)
    return False


def copy_from(source: Path) -> Callable[[Path], None]:
    """A writer that copies an existing adapter folder's required files."""

    def write(dest: Path) -> None:
        for name in REQUIRED_FILES:
            shutil.copyfile(source / name, dest / name)

    return write
