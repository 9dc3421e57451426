"""Multiplexed passes give what one-adapter-at-a-time training gives, for every loss."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.helpers.tiny import (
    SMALL_LORA,
    EngineFactory,
    dpo_batch,
    pg_batch,
    random_batch,
    write_random_parent,
)
from trainer.batch import Batch
from trainer.config import LoraSettings
from trainer.engine import TrainingEngine
from trainer.losses import LossSpec
from trainer.passes import plan_passes

ADAPTERS = ("a", "b", "c")
LOSSES: dict[str, tuple[LossSpec, Callable[[int, int], Batch]]] = {
    "sft": (LossSpec("sft"), random_batch),
    "dpo": (LossSpec("dpo", dpo_beta=0.5), dpo_batch),
    "pg": (LossSpec("pg", clip_low=0.2, clip_high=0.28, kl_coef=0.05), pg_batch),
    "pg_base_ref": (LossSpec("pg", kl_coef=0.1, reference="base", group_size=2), pg_batch),
}


def _setup(engine: TrainingEngine, parents: dict[str, Path]) -> None:
    for a in ADAPTERS:
        engine.create_adapter(a, SMALL_LORA, parent_dir=parents[a])


@pytest.fixture
def parents(make_engine: EngineFactory, tmp_path: Path) -> dict[str, Path]:
    """Random non-zero parents, so A and B both get gradients and the reference differs."""
    engine = make_engine()
    return {
        a: write_random_parent(engine, tmp_path / a, SMALL_LORA, seed=i + 1)
        for i, a in enumerate(ADAPTERS)
    }


def _weights(engine: TrainingEngine, adapter_id: str) -> dict[str, torch.Tensor]:
    st = engine.store.get(adapter_id)
    return {
        f"{g}/{n}": t.clone() for g in ("weights", "exp_avg_sq") for n, t in st.group(g).items()
    }


# Equal row counts use the batched (bmm) kernel, unequal ones the per-run kernel.
ROWS = {"equal": {"a": 4, "b": 4, "c": 4}, "unequal": {"a": 2, "b": 6, "c": 4}}
# Whole: every item packed whole in one shared pass. Micro: every item counts as big and is cut
# into micro-passes of at most 30 padded tokens that adapters share (gradients accumulate).
PACKING = {"whole": {}, "micro": {"max_tokens": 30, "merge_below": 1}}


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", sorted(ROWS))
@pytest.mark.parametrize("packing", sorted(PACKING))
def test_multiplexed_rounds_equal_sequential(
    make_engine: EngineFactory,
    parents: dict[str, Path],
    loss_name: str,
    dtype: torch.dtype,
    rows: str,
    packing: str,
) -> None:
    spec, make_batch = LOSSES[loss_name]
    mux = make_engine(multiplex=True, dtype=dtype, **PACKING[packing])
    seq = make_engine(multiplex=False, dtype=dtype)
    for engine in (mux, seq):
        _setup(engine, parents)
    # Three rounds; in round 2 adapter c has no rows (it must not move: per-adapter steps).
    for rnd in range(3):
        present = ADAPTERS if rnd != 1 else ("a", "b")
        work = [(a, make_batch(100 * rnd + i, ROWS[rows][a])) for i, a in enumerate(present)]
        plans = plan_passes(work, lambda a: 0, mux.max_tokens_per_pass, mux.merge_below_tokens)
        if packing == "micro":  # adapters' rows span passes, and passes mix adapters
            assert any(sum(a in p.adapter_ids for p in plans) > 1 for a in present)
            assert loss_name == "dpo" or any(len(p.adapter_ids) > 1 for p in plans)
        else:
            assert len(plans) == 1
        rows_mux = mux.forward_backward(work, spec)
        for a, batch in work:  # sequential: one adapter swapped in at a time
            seq.forward_backward([(a, batch)], spec)
        assert [len(r) for r in rows_mux] == [len(b) for _, b in work]
        for engine in (mux, seq):
            for a in ADAPTERS:
                engine.optim_step(a, lr=1e-2, weight_decay=0.01, max_grad_norm=10.0)
    rtol, atol = (1e-4, 2e-5) if dtype == torch.float32 else (0.0, 1e-12)
    for a in ADAPTERS:
        assert mux.store.get(a).step == seq.store.get(a).step == (3 if a != "c" else 2)
        w_mux, w_seq = _weights(mux, a), _weights(seq, a)
        for key in w_mux:
            torch.testing.assert_close(w_mux[key], w_seq[key], rtol=rtol, atol=atol, msg=key)


def test_pass_planning_merges_small_work_whole_and_cuts_big_work_into_shared_micro_passes(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    for a in ADAPTERS:
        engine.create_adapter(a, SMALL_LORA)
    sig = lambda a: engine.store.get(a).pass_signature  # noqa: E731
    small = [(a, random_batch(i, rows=3, length=10)) for i, a in enumerate(ADAPTERS)]  # 30 each
    assert [p.adapter_ids for p in plan_passes(small, sig, 4096, 64)] == [["a", "b", "c"]]
    assert len(plan_passes(small, sig, 4096, 0)) == 3  # never merge: one adapter at a time
    assert [len(p.adapter_ids) for p in plan_passes(small, sig, 60, 64)] == [2, 1]  # bounded
    # a (100 tokens) is cut into 3 balanced micro-passes; b and c (20 + 30) pack whole, and
    # go over the bound of 40 together.
    big = [("a", random_batch(1, rows=10, length=10)), ("b", random_batch(2, rows=2, length=10))]
    plans = plan_passes(big + small[2:], sig, 40, 64)
    assert [(p.adapter_ids, len(p.rows)) for p in plans] == [
        (["b"], 2),
        (["c"], 3),
        (["a"], 3),
        (["a"], 4),
        (["a"], 3),
    ]
    assert all(p.sequences * p.max_len <= 40 for p in plans)
    assert sorted(r for p in plans[2:] for _, r in p.rows) == list(range(10))
    # Two big batches of 60 tokens under a bound of 40: 3 full micro-passes, the middle one
    # shared, where each alone would take 2 (4 in all); without merging, 2 each.
    pair = [(a, random_batch(5 + i, rows=6, length=10)) for i, a in enumerate("ab")]
    plans = plan_passes(pair, sig, 40, 64)
    assert [p.adapter_ids for p in plans] == [["a"], ["a", "b"], ["b"]]
    assert [len(p.rows) for p in plans] == [4, 4, 4]
    assert all(p.sequences * p.max_len <= 40 for p in plans)
    assert [p.adapter_ids for p in plan_passes(pair, sig, 40, 0)] == [["a"], ["a"], ["b"], ["b"]]
    # A row longer than the bound gets a pass of its own.
    long = [("a", random_batch(9, rows=3, length=50))]
    assert [len(p.rows) for p in plan_passes(long, sig, 40, 64)] == [1, 1, 1]


def test_accumulation_across_interleaved_calls(
    make_engine: EngineFactory, parents: dict[str, Path]
) -> None:
    spec = LossSpec("sft")
    whole = random_batch(11, rows=6)
    parts = [whole.select([0, 1]), whole.select([2]), whole.select([3, 4, 5])]
    split, joined = make_engine(max_tokens=25), make_engine()
    for engine in (split, joined):
        _setup(engine, parents)
    # a's three calls are interleaved with b's and c's work, and split across bounded passes.
    split.forward_backward([("a", parts[0]), ("b", random_batch(1))], spec)
    split.forward_backward([("c", random_batch(2))], spec)
    split.forward_backward([("a", parts[1])], spec)
    split.forward_backward([("b", random_batch(3)), ("a", parts[2])], spec)
    joined.forward_backward([("a", whole)], spec)
    assert split.store.get("a").grad_rows == joined.store.get("a").grad_rows == 6
    for engine in (split, joined):
        engine.optim_step("a", lr=1e-2)
    for key, value in _weights(split, "a").items():
        torch.testing.assert_close(value, _weights(joined, "a")[key], rtol=1e-4, atol=2e-5)


def test_different_shapes_fall_back_to_separate_passes(make_engine: EngineFactory) -> None:
    spec = LossSpec("sft")
    shapes = {
        "r4": SMALL_LORA,
        "r8": LoraSettings(rank=8, alpha=8.0),
        "attn": LoraSettings(rank=4, alpha=4.0, target_modules=("q_proj", "v_proj")),
        "r4b": LoraSettings(rank=4, alpha=16.0),  # same shape as r4, other alpha: shares a pass
    }
    mux, seq = make_engine(), make_engine(multiplex=False)
    for engine in (mux, seq):
        for i, (a, lora) in enumerate(shapes.items()):
            engine.create_adapter(a, lora, seed=i)
            for name, t in engine.store.get(a).master.items():
                if "lora_B" in name:
                    t.copy_(0.1 * torch.randn(t.shape, generator=torch.Generator().manual_seed(i)))
                    engine.store.get(a).weights[name].copy_(t)
    items = [(a, random_batch(i)) for i, a in enumerate(shapes)]
    sig = lambda a: mux.store.get(a).pass_signature  # noqa: E731
    assert len(plan_passes(items, sig, 4096, 4096)) == 3
    mux.forward_backward(items, spec)
    for item in items:
        seq.forward_backward([item], spec)
    for engine in (mux, seq):
        for a in shapes:
            engine.optim_step(a, lr=1e-2)
    for a in shapes:
        for key, value in _weights(mux, a).items():
            torch.testing.assert_close(value, _weights(seq, a)[key], rtol=1e-4, atol=2e-5)


def test_same_adapter_twice_in_one_call(make_engine: EngineFactory) -> None:
    engine, ref = make_engine(), make_engine()
    for e in (engine, ref):
        e.create_adapter("a", SMALL_LORA, seed=1)
        e.create_adapter("b", SMALL_LORA, seed=2)
    b1, b2 = random_batch(1), random_batch(2)
    rows = engine.forward_backward([("a", b1), ("b", random_batch(3)), ("a", b2)], LossSpec("sft"))
    assert [len(r) for r in rows] == [3, 3, 3]
    ref.forward_backward([("a", Batch.concat([b1, b2]))], LossSpec("sft"))
    assert engine.store.get("a").grad_units == ref.store.get("a").grad_units
    for name, g in engine.store.get("a").grad.items():
        torch.testing.assert_close(g, ref.store.get("a").grad[name], rtol=1e-4, atol=1e-5)


def test_rows_with_and_without_recorded_logprobs_share_a_pass(
    make_engine: EngineFactory, parents: dict[str, Path]
) -> None:
    spec = LossSpec("pg", kl_coef=0.1)
    mux, seq = make_engine(), make_engine(multiplex=False)
    for engine in (mux, seq):
        _setup(engine, parents)
    given = pg_batch(3)
    refs = seq.sample_logprobs(None, given)  # a reference recorded elsewhere (the base)
    work = [
        ("a", given.with_fields(reference_logprobs=refs)),  # off-policy, reference given
        ("b", pg_batch(4).with_fields(sampling_logprobs=None)),  # on-policy, reference computed
        ("c", pg_batch(5)),  # off-policy, reference computed
    ]
    assert len(plan_passes(work, lambda a: 0, 4096, 4096)) == 1
    mux.forward_backward(work, spec)
    for item in work:
        seq.forward_backward([item], spec)
    for engine in (mux, seq):
        for a in ADAPTERS:
            engine.optim_step(a, lr=1e-2)
    for a in ADAPTERS:
        for key, value in _weights(mux, a).items():
            torch.testing.assert_close(value, _weights(seq, a)[key], rtol=1e-4, atol=2e-5)
