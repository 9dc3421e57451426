"""What each process of a running stack holds: resident memory, and whether it has the base
model's weights mapped (`clora ps`; a test asserts that only the trainer does among clora's
own processes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class ProcessMemory:
    """One supervised child of `clora up`, with its descendants (vLLM's engine core, Celery's
    pool processes) counted in."""

    name: str
    pid: int
    processes: int
    rss_mb: float
    """Resident memory of the child and every descendant, in MiB."""
    holds_base_weights: bool
    """True when one of them maps the base model's weight files. Loading through transformers
    or safetensors (the trainer's `TrainingEngine`, anything that would train) keeps the file
    mapped, so a process without the mapping never loaded the model that way; vLLM on the CPU
    copies the weights into its own memory, so the engine reads False although it serves
    them."""


def _maps_weights(proc: psutil.Process, weight_files: set[str]) -> bool:
    try:
        return any(m.path in weight_files for m in proc.memory_maps(grouped=True))
    except (psutil.AccessDenied, psutil.NoSuchProcess, FileNotFoundError):
        return False


def stack_memory(data_dir: Path, base_model_dir: Path) -> list[ProcessMemory]:
    """Each child listed in ``<data_dir>/children.pid`` (written by `clora up`)."""
    pid_file = data_dir / "children.pid"
    if not pid_file.is_file():
        return []
    weight_files = {str(p.resolve()) for p in Path(base_model_dir).glob("*.safetensors")}
    out = []
    for line in pid_file.read_text().splitlines():
        if not line.strip():
            continue
        name, pid = line.split()[0], int(line.split()[1])
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        rss = 0
        for proc in family:
            try:
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        holds = any(_maps_weights(p, weight_files) for p in family)
        out.append(ProcessMemory(name, pid, len(family), rss / 2**20, holds))
    return out
