"""The one narrow door from app/ to the trainer.

Today the trainer runs in the calling worker process (one warm `TrainingEngine` per
process, every adapter's state in its AdapterStore); the methods here are the whole surface
the service side uses, so moving the trainer behind its own queue changes only this file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.config import get_settings

_lock = threading.Lock()
_engine: Any = None
_tokenizer: Any = None


def _warm() -> tuple[Any, Any]:
    global _engine, _tokenizer
    with _lock:
        if _engine is None:
            import torch
            from transformers import AutoTokenizer

            from trainer.engine import TrainingEngine

            torch.manual_seed(0)
            base = get_settings().base_model_path
            _engine = TrainingEngine(base)
            _tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    return _engine, _tokenizer


@dataclass(frozen=True)
class LoraShape:
    rank: int
    alpha: int
    target_modules: tuple[str, ...]


@dataclass(frozen=True)
class TrainStep:
    step: int
    losses: dict[str, float]


def train_adapter(
    adapter_id: str,
    lora: LoraShape,
    parent_dir: Path | None,
    examples: dict[str, Sequence[dict[str, Any]]],
    mixture: dict[str, float],
    steps: int,
    lr: float,
    *,
    kl_coef: float = 0.0,
    on_step: Callable[[TrainStep], None] | None = None,
    write_to: Path | None = None,
) -> list[TrainStep]:
    """Train a fresh copy of ``parent_dir`` (or a new adapter) on the examples; save it.

    ``examples`` maps a loss kind ("sft", "dpo", "pg") to its example payloads; each step
    runs one forward/backward per kind with a non-zero weight, then one optimiser step."""
    from trainer.batch import Batch
    from trainer.config import LoraSettings
    from trainer.losses import LossSpec

    engine, tokenizer = _warm()
    settings = LoraSettings(rank=lora.rank, alpha=lora.alpha, target_modules=lora.target_modules)
    if engine.has_adapter(adapter_id):
        engine.drop_adapter(adapter_id)
    engine.create_adapter(adapter_id, settings, seed=0, parent_dir=parent_dir)
    batches: dict[str, Any] = {}
    if examples.get("sft") and mixture.get("sft", 0) > 0:
        batches["sft"] = _sft_batch(Batch, tokenizer, examples["sft"])
    if examples.get("dpo") and mixture.get("dpo", 0) > 0:
        batches["dpo"] = _dpo_batch(Batch, tokenizer, examples["dpo"])
    history: list[TrainStep] = []
    try:
        for step in range(1, steps + 1):
            losses: dict[str, float] = {}
            for kind, batch in batches.items():
                spec = LossSpec(
                    kind=kind,  # type: ignore[arg-type]
                    kl_coef=kl_coef if kind == "pg" else 0.0,
                )
                rows = engine.forward_backward([(adapter_id, batch)], spec)[0]
                losses[kind] = sum(r.loss for r in rows) / max(len(rows), 1)
            if batches:
                engine.optim_step(adapter_id, lr, max_grad_norm=1.0)
            record = TrainStep(step, losses)
            history.append(record)
            if on_step is not None:
                on_step(record)
        if write_to is not None:
            engine.save_adapter(adapter_id, write_to)
    finally:
        engine.drop_adapter(adapter_id)
    return history


def _sft_batch(batch_cls: Any, tokenizer: Any, payloads: Sequence[dict[str, Any]]) -> Any:
    from trainer.batch import encode_chat

    rows = [
        encode_chat(tokenizer, p["messages"], tools=p.get("tools"), only_last_assistant=True)
        for p in payloads
    ]
    return batch_cls(input_ids=[r[0] for r in rows], loss_mask=[r[1] for r in rows])


def _dpo_batch(batch_cls: Any, tokenizer: Any, payloads: Sequence[dict[str, Any]]) -> Any:
    from trainer.batch import encode_chat

    chosen: list[tuple[list[int], list[float]]] = []
    rejected: list[tuple[list[int], list[float]]] = []
    for p in payloads:
        for answer, out in ((p["chosen"], chosen), (p["rejected"], rejected)):
            out.append(
                encode_chat(
                    tokenizer, [*p["messages"], answer], tools=p.get("tools"),
                    only_last_assistant=True,
                )
            )  # fmt: skip
    return batch_cls(
        input_ids=[r[0] for r in chosen],
        loss_mask=[r[1] for r in chosen],
        rejected_input_ids=[r[0] for r in rejected],
        rejected_loss_mask=[r[1] for r in rejected],
    )


class SharedTrainer:
    """One warm trainer shared by concurrent experiments in this process.

    Experiments submit whole optimiser steps; a single worker thread runs them through the
    trainer's fair scheduler, which multiplexes several agents' steps into one pass when they
    fit, so no experiment waits for another except for the trainer itself."""

    def __init__(self) -> None:
        from trainer.scheduler import FairScheduler

        self.engine, self.tokenizer = _warm()
        self.scheduler = FairScheduler(
            self.engine, signature=lambda a: self.engine.store.get(a).pass_signature
        )
        self._futures: dict[int, Any] = {}
        self._runner: Any = None
        self.busy_s = 0.0

    def ensure_adapter(
        self, adapter_id: str, lora: LoraShape, parent_dir: Path | None, seed: int
    ) -> None:
        from trainer.config import LoraSettings

        if not self.engine.has_adapter(adapter_id):
            settings = LoraSettings(
                rank=lora.rank, alpha=lora.alpha, target_modules=lora.target_modules
            )
            self.engine.create_adapter(adapter_id, settings, seed=seed, parent_dir=parent_dir)

    def drop(self, adapter_id: str) -> None:
        if self.engine.has_adapter(adapter_id):
            self.engine.drop_adapter(adapter_id)

    def save(self, adapter_id: str, out_dir: Path) -> None:
        self.engine.save_adapter(adapter_id, out_dir)

    async def step(self, adapter_id: str, batch: Any, loss: Any, lr: float, step_id: str) -> Any:
        """Queue one optimiser step and wait for its result (rows, step metrics, error)."""
        import asyncio

        from trainer.scheduler import StepRequest

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        request = StepRequest(adapter_id, batch, loss, lr, step_id=step_id, max_grad_norm=1.0)
        self._futures[id(request)] = future
        self.scheduler.submit(request)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        import asyncio
        import time

        while self.scheduler.pending():
            started = time.perf_counter()
            results = await asyncio.to_thread(self.scheduler.run_once)
            self.busy_s += time.perf_counter() - started
            for result in results:
                future = self._futures.pop(id(result.request))
                if not future.done():
                    future.set_result(result)
