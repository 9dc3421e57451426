"""What training must do: base frozen, adapters move, loss falls, tenants stay isolated."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.tiny import SMALL_LORA, EngineFactory, pg_batch, random_batch, snapshot
from trainer.errors import (
    AdapterExistsError,
    AdapterNotFoundError,
    InvalidBatchError,
    NonFiniteError,
)
from trainer.losses import LossSpec

SFT = LossSpec("sft")


def test_base_frozen_adapter_trained_loss_falls(make_engine: EngineFactory) -> None:
    engine = make_engine()
    base_before = {n: p.clone() for n, p in engine.base.base_parameters().items()}
    assert not any(p.requires_grad for p in engine.base.model.parameters())
    engine.create_adapter("a", SMALL_LORA, seed=1)
    start = snapshot(engine, "a")
    batch = random_batch(7, rows=4, length=12)
    losses = []
    for _ in range(15):
        rows = engine.forward_backward([("a", batch)], SFT)[0]
        losses.append(sum(r.loss_sum for r in rows) / sum(r.units for r in rows))
        engine.optim_step("a", lr=2e-2)
    assert losses[-1] < losses[0] - 0.3, losses
    for name, p in engine.base.base_parameters().items():
        assert torch.equal(p, base_before[name]), name
    after = snapshot(engine, "a")
    moved = [k for k in start if k.startswith("weights/") and not torch.equal(start[k], after[k])]
    assert len(moved) == len([k for k in start if k.startswith("weights/")])
    assert engine.store.get("a").step == 15


def test_step_of_one_adapter_leaves_another_bit_identical(make_engine: EngineFactory) -> None:
    engine = make_engine()
    for a in ("a", "b"):
        engine.create_adapter(a, SMALL_LORA, seed=hash(a) % 100)
    # Give b non-trivial moments and a pending gradient first.
    engine.forward_backward([("b", random_batch(1))], SFT)
    engine.optim_step("b", lr=1e-2)
    engine.forward_backward([("b", random_batch(2))], SFT)
    before = snapshot(engine, "b")
    step_b = engine.store.get("b").step
    for seed in range(3):
        engine.forward_backward([("a", random_batch(10 + seed))], SFT)
        engine.optim_step("a", lr=1e-2, weight_decay=0.1)
    after = snapshot(engine, "b")
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert engine.store.get("b").step == step_b


def test_multiplexed_pass_then_single_step_keeps_other_state(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.create_adapter("a", SMALL_LORA, seed=1)
    engine.create_adapter("b", SMALL_LORA, seed=2)
    engine.forward_backward([("a", random_batch(3)), ("b", random_batch(4))], SFT)
    before = snapshot(engine, "b")
    engine.optim_step("a", lr=1e-2, weight_decay=0.1)
    after = snapshot(engine, "b")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_non_finite_gradient_is_refused_and_state_kept(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.create_adapter("a", SMALL_LORA, seed=1)
    engine.forward_backward([("a", random_batch(1))], SFT)
    engine.optim_step("a", lr=1e-2)
    before = snapshot(engine, "a")
    bad = pg_batch(2).with_fields(rewards=None, advantages=[float("inf")] * 4)
    rows = engine.forward_backward([("a", bad)], LossSpec("pg"))
    assert not all(torch.isfinite(torch.tensor([r.loss for r in rows[0]])))
    with pytest.raises(NonFiniteError):
        engine.optim_step("a", lr=1e-2)
    after = snapshot(engine, "a")
    for key in before:
        if not key.startswith("grad/"):
            assert torch.equal(before[key], after[key]), key
    st = engine.store.get("a")
    assert st.step == 1 and st.grad_units == 0.0  # poisoned gradient discarded
    # The adapter still trains afterwards.
    engine.forward_backward([("a", random_batch(3))], SFT)
    assert engine.optim_step("a", lr=1e-2).step == 2


def test_step_ids_make_replays_no_ops(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.create_adapter("a", SMALL_LORA, seed=1)
    engine.forward_backward([("a", random_batch(1))], SFT)
    first = engine.optim_step("a", lr=1e-2, step_id="job1/0")
    assert not first.skipped and first.step == 1
    before = snapshot(engine, "a")
    engine.forward_backward([("a", random_batch(1))], SFT)
    replay = engine.optim_step("a", lr=1e-2, step_id="job1/0")
    assert replay.skipped and replay.step == 1
    assert all(torch.equal(before[k], snapshot(engine, "a")[k]) for k in before if "grad" not in k)


def test_step_without_rows_changes_nothing(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.create_adapter("a", SMALL_LORA, seed=1)
    engine.forward_backward([("a", random_batch(1))], SFT)
    engine.optim_step("a", lr=1e-2)
    before = snapshot(engine, "a")
    result = engine.optim_step("a", lr=1e-2, weight_decay=0.5)
    assert result.skipped
    after = snapshot(engine, "a")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_api_errors_are_typed(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.create_adapter("a", SMALL_LORA)
    with pytest.raises(AdapterExistsError):
        engine.create_adapter("a", SMALL_LORA)
    with pytest.raises(AdapterNotFoundError):
        engine.forward_backward([("missing", random_batch(1))], SFT)
    with pytest.raises(InvalidBatchError):
        engine.forward_backward([("a", random_batch(1))], LossSpec("dpo"))
    with pytest.raises(InvalidBatchError):
        engine.forward_backward([("a", random_batch(1, vocab=10_000))], SFT)
    with pytest.raises(InvalidBatchError):
        engine.forward_backward([("a", random_batch(1))], LossSpec("pg"))  # no rewards
    engine.drop_adapter("a")
    assert not engine.has_adapter("a")


def test_sample_logprobs_match_training_forward(make_engine: EngineFactory) -> None:
    engine = make_engine(max_tokens=20)  # several passes
    engine.create_adapter("a", SMALL_LORA, seed=3)
    batch = random_batch(5, rows=5)
    logprobs = engine.sample_logprobs("a", batch)
    assert [len(r) for r in logprobs] == [len(r) for r in batch.input_ids]
    rows = engine.forward_backward([("a", batch)], SFT)[0]
    for lp, mask, row in zip(logprobs, batch.loss_mask, rows, strict=True):
        nll = -sum(p * m for p, m in zip(lp, mask, strict=True))
        assert nll == pytest.approx(row.loss_sum, rel=1e-5)
    # A fresh adapter has B = 0, so it scores exactly like the base model.
    base = engine.sample_logprobs(None, batch)
    assert base == logprobs
