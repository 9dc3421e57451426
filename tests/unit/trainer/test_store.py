"""AdapterStore swaps and checkpoints restore every tensor exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.tiny import (
    SMALL_LORA,
    EngineFactory,
    make_tiny_model,
    random_batch,
    snapshot,
)
from trainer.adapter_store import TENSOR_GROUPS
from trainer.checkpoint import STATE_FILE
from trainer.config import TrainerConfig
from trainer.engine import TrainingEngine
from trainer.errors import AdapterMismatchError
from trainer.losses import LossSpec

SFT = LossSpec("sft")


def _trained(make_engine: EngineFactory) -> TrainingEngine:
    """An engine whose adapter 'a' has moments, a step count and a pending gradient."""
    engine = make_engine()
    engine.create_adapter("a", SMALL_LORA, seed=1)
    for seed in range(2):
        engine.forward_backward([("a", random_batch(seed))], SFT)
        engine.optim_step("a", lr=1e-2)
    engine.forward_backward([("a", random_batch(9))], SFT)
    return engine


def test_swap_round_trip_restores_every_tensor(make_engine: EngineFactory) -> None:
    engine = _trained(make_engine)
    st = engine.store.get("a")
    before = snapshot(engine, "a")
    on_device = engine.store.swap_in(st, TENSOR_GROUPS)
    for group in TENSOR_GROUPS:  # the host copies are overwritten while swapped out
        st.flat[group].fill_(float("nan"))
    engine.store.swap_out(st, on_device)
    after = snapshot(engine, "a")
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].dtype == after[key].dtype
        assert torch.equal(before[key], after[key]), key


def test_stacked_swap_in_matches_each_adapter(make_engine: EngineFactory) -> None:
    engine = make_engine()
    states = [engine.create_adapter(a, SMALL_LORA, seed=i) for i, a in enumerate("abc")]
    stacks = states[0].layout.views(engine.store.stack_to_device(states, "weights"))  # (S, ...)
    for name in states[0].param_names:
        for i, st in enumerate(states):
            assert torch.equal(stacks[name][i], st.weights[name])


def test_checkpoint_round_trip_and_identical_continuation(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = _trained(make_engine)
    path = engine.save_state("a", tmp_path / "ckpt")
    assert path.name == STATE_FILE
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [STATE_FILE]  # no temp left
    restored = make_engine()
    restored.load_state("a", tmp_path / "ckpt")
    before, after = snapshot(engine, "a"), snapshot(restored, "a")
    for key in before:
        assert torch.equal(before[key], after[key]), key
    st, rt = engine.store.get("a"), restored.store.get("a")
    assert (st.step, st.grad_units, st.grad_rows, st.lora) == (
        rt.step,
        rt.grad_units,
        rt.grad_rows,
        rt.lora,
    )
    for e in (engine, restored):  # same next step, bit for bit
        e.optim_step("a", lr=1e-2)
        e.forward_backward([("a", random_batch(5))], SFT)
        e.optim_step("a", lr=1e-2)
    for key, value in snapshot(engine, "a").items():
        assert torch.equal(value, snapshot(restored, "a")[key]), key


def test_load_state_replaces_existing_adapter(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = _trained(make_engine)
    saved = snapshot(engine, "a")
    engine.save_state("a", tmp_path)
    engine.forward_backward([("a", random_batch(3))], SFT)
    engine.optim_step("a", lr=1e-2)
    engine.load_state("a", tmp_path)
    assert all(torch.equal(v, snapshot(engine, "a")[k]) for k, v in saved.items())


def test_checkpoint_from_another_base_is_refused(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = _trained(make_engine)
    engine.save_state("a", tmp_path / "ckpt")
    other_dir = make_tiny_model(tmp_path / "wider", hidden=32)
    other = TrainingEngine(device="cpu", config=TrainerConfig(base_model_dir=other_dir))
    with pytest.raises(AdapterMismatchError):
        other.load_state("a", tmp_path / "ckpt")
