"""The trainer's memory settings change how a pass runs, never what it computes: gradient
checkpointing recomputes each layer in the backward pass, and a pass that runs out of memory is
split and run again; the gradients equal the plain run's. Settings reach the daemon's engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.tiny import (
    SMALL_LORA,
    EngineFactory,
    dpo_batch,
    random_batch,
    write_random_parent,
)
from trainer.batch import Batch
from trainer.config import TrainerConfig
from trainer.engine import TrainingEngine
from trainer.objective import accumulate


def _batches() -> dict[str, Batch]:
    return {
        "sft": random_batch(1, rows=6, length=20),
        "dpo": dpo_batch(4),
        "kl": random_batch(5, rows=4, length=12),
    }


def _grads(engine: TrainingEngine, parent: Path) -> torch.Tensor:
    engine.create_adapter("a", parent_dir=parent)
    accumulate(engine, "a", _batches(), {"sft": 1.0, "dpo": 0.5, "kl": 2.0})
    return engine.store.get("a").flat["grad"].clone()


def _count_mlp_runs(engine: TrainingEngine) -> list[int]:
    """Every run of the first layer's MLP (recomputation skips module hooks: wrap forward)."""
    mlp = engine.base.model.get_decoder().layers[0].mlp
    runs: list[int] = []
    forward = mlp.forward

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        runs.append(1)
        return forward(*args, **kwargs)

    mlp.forward = counted
    return runs


def test_gradient_checkpointing_recomputes_layers_and_keeps_the_gradients(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    plain = TrainingEngine(device="cpu", config=TrainerConfig(base_model_dir=tiny_model_dir))
    parent = write_random_parent(plain, tmp_path / "parent", SMALL_LORA, seed=3)
    expected = _grads(plain, parent)
    saving = TrainingEngine(
        device="cpu",
        config=TrainerConfig(base_model_dir=tiny_model_dir, gradient_checkpointing=True),
    )
    calls = _count_mlp_runs(saving)
    got = _grads(saving, parent)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    # The effect: the layer ran again in the backward pass of each training pass (one more
    # forward per pass with gradients than without checkpointing).
    plain_calls = _count_mlp_runs(plain)
    plain.drop_adapter("a")
    _grads(plain, parent)
    print({"checkpointed": len(calls), "plain": len(plain_calls)})
    assert len(calls) > len(plain_calls)
    assert not any(m.training for m in saving.base.model.modules() if "Dropout" in type(m).__name__)


def test_a_pass_that_runs_out_of_memory_is_split_and_run_again(
    make_engine: EngineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = make_engine()
    parent = write_random_parent(plain, tmp_path / "parent", SMALL_LORA, seed=3)
    expected = _grads(plain, parent)
    engine = make_engine()
    real = engine._run_pass
    failed: list[int] = []

    def tight(plan, *args, **kwargs):  # type: ignore[no-untyped-def]
        """The device's memory holds passes of at most two rows (fault injection)."""
        if len(plan.rows) > 2:
            failed.append(len(plan.rows))
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(engine, "_run_pass", tight)
    got = _grads(engine, parent)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert failed and engine.out_of_memory_splits == len(failed)
    assert engine.max_tokens_per_pass < 4096  # later passes are planned smaller

    def never(plan, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(engine, "_run_pass", never)
    engine.drop_adapter("a")
    with pytest.raises(torch.OutOfMemoryError):  # one row that does not fit fails the job
        _grads(engine, parent)


def test_the_trainer_settings_reach_the_daemons_engine(tiny_model_dir: Path) -> None:
    from app.core.config import Settings
    from app.training.daemon import trainer_config

    settings = Settings(
        base_model_path=tiny_model_dir,
        trainer_device="cpu",
        trainer_dtype="bfloat16",
        trainer_tokens_per_pass=2048,
        trainer_gradient_checkpointing=True,
        trainer_logit_chunk_mb=8,
    )
    engine = TrainingEngine(config=trainer_config(settings))
    assert engine.device.type == "cpu" and engine.dtype == torch.bfloat16
    assert engine.max_tokens_per_pass == 2048 and engine.head.chunk == 8 * 2**20 // (
        4 * engine.head.vocab
    )
    assert engine.config.gradient_checkpointing
    # Left unset: float32 on the CPU (bfloat16 is the CUDA default).
    assert (
        TrainingEngine(config=trainer_config(Settings(base_model_path=tiny_model_dir))).dtype
        == torch.float32
    )
