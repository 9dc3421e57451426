"""A learning cycle's objective: each knob has its effect (mixture weights, kl_coef, ratings)."""

from __future__ import annotations

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
from trainer.engine import TrainingEngine
from trainer.errors import InvalidBatchError
from trainer.losses import LossSpec, distribution_kl, greedy_margin
from trainer.objective import accumulate, objective_step, objective_weights
from trainer.objective import pg_batch as rating_batch


def _grad(engine: TrainingEngine, adapter: str) -> torch.Tensor:
    return engine.store.get(adapter).flat["grad"].clone()


def _parent(engine: TrainingEngine, tmp_path: Path, adapter: str) -> None:
    parent = write_random_parent(engine, tmp_path / "parent", SMALL_LORA, seed=3)
    engine.create_adapter(adapter, parent_dir=parent)


def _batches() -> dict[str, Batch]:
    pg = pg_batch(2)
    return {
        "sft": random_batch(1, rows=3),
        "dpo": dpo_batch(4),
        "pg": pg.with_fields(rewards=None, advantages=[1.0, -0.5, 0.25, -1.0]),
        "kl": random_batch(5, rows=4, length=12),
    }


def test_mixed_gradient_is_the_weighted_sum_of_single_loss_gradients(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine()
    _parent(engine, tmp_path, "a")
    batches = _batches()
    # One step away from the parent first: at the parent itself the KL term and its
    # gradient are exactly zero (the policy's distribution is the reference's).
    accumulate(engine, "a", batches, {"sft": 1.0})
    engine.optim_step("a", 1e-2)
    singles = {}
    for kind in batches:
        accumulate(engine, "a", batches, {kind: 1.0})
        singles[kind] = _grad(engine, "a")
        assert singles[kind].abs().sum() > 0, kind
        engine.zero_grad("a")
    weights = {"sft": 1.0, "dpo": 0.5, "pg": 2.0, "kl": 3.0}
    accumulate(engine, "a", batches, weights)
    mixed = _grad(engine, "a")
    expected = sum(weights[k] * singles[k] for k in batches)
    torch.testing.assert_close(mixed, expected, rtol=1e-4, atol=1e-7)
    # A weight of 1 gives the same scale alone or mixed: SFT's share is unchanged by adding DPO.
    engine.zero_grad("a")
    accumulate(engine, "a", batches, {"sft": 1.0, "dpo": 1.0})
    torch.testing.assert_close(
        _grad(engine, "a") - singles["dpo"], singles["sft"], rtol=1e-4, atol=1e-7
    )


def test_zero_weight_contributes_nothing_and_optim_step_applies_the_mean_undivided(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine()
    _parent(engine, tmp_path, "a")
    batches = _batches()
    losses = accumulate(engine, "a", batches, {"sft": 1.0, "dpo": 0.0})
    assert set(losses) == {"sft", "margin"}
    before = engine.store.get("a").flat["master"].clone()
    engine.optim_step("a", 1e-2)
    assert not torch.equal(engine.store.get("a").flat["master"], before)


def test_one_step_cannot_mix_reductions(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = make_engine()
    _parent(engine, tmp_path, "a")
    engine.forward_backward([("a", random_batch(1))], LossSpec("sft"))
    with pytest.raises(InvalidBatchError, match="mix"):
        engine.forward_backward([("a", random_batch(2))], LossSpec("sft", reduction="call"))


def test_distribution_kl_is_zero_against_itself_and_positive_otherwise() -> None:
    logits = torch.randn(5, 11)
    rows = torch.tensor([0, 0, 1, 1, 1])
    same = distribution_kl(logits, logits, rows, 2)
    assert torch.allclose(same.loss, torch.zeros(2), atol=1e-6)
    assert same.units.tolist() == [2.0, 3.0]
    other = distribution_kl(logits + torch.randn(5, 11), logits, rows, 2)
    assert bool((other.loss > 0).all())


def _drift(engine: TrainingEngine, adapter: str, parent: str, rows: Batch) -> float:
    """Mean |log p_adapter - log p_parent| over the rows' trained tokens."""
    after = engine.sample_logprobs(adapter, rows)
    before = engine.sample_logprobs(parent, rows)
    diffs = [
        abs(a - b)
        for ra, rb, mask in zip(after, before, rows.loss_mask, strict=True)
        for a, b, m in zip(ra, rb, mask, strict=True)
        if m > 0
    ]
    return sum(diffs) / len(diffs)


def test_higher_kl_coef_drifts_less_on_the_preservation_set(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine()
    parent = write_random_parent(engine, tmp_path / "parent", SMALL_LORA, seed=3)
    engine.create_adapter("parent", parent_dir=parent)
    keep = random_batch(7, rows=6, length=14)
    batches = {"sft": random_batch(8, rows=2), "kl": keep}
    drift = {}
    for coef in (0.0, 1.0, 10.0):
        adapter = f"kl{coef}"
        engine.create_adapter(adapter, parent_dir=parent)
        weights = objective_weights({"sft": 1.0}, coef)
        for step in range(15):
            objective_step(engine, adapter, batches, weights, 2e-2, step_id=f"{adapter}:{step}")
        drift[coef] = _drift(engine, adapter, "parent", keep)
    assert drift[10.0] < drift[1.0] < drift[0.0], drift


@pytest.mark.parametrize("reward, direction", [(-1.0, -1), (1.0, 1)])
def test_a_rating_moves_the_rated_output_logprob(
    make_engine: EngineFactory, tmp_path: Path, reward: float, direction: int
) -> None:
    """Thumbs-down lowers the rated output's log-probability under the new version; thumbs-up
    raises it (off-policy, with the logged sampling logprobs of the serving version)."""
    engine = make_engine()
    parent = write_random_parent(engine, tmp_path / "parent", SMALL_LORA, seed=3)
    engine.create_adapter("parent", parent_dir=parent)
    rated = random_batch(9, rows=1, length=14, prompt=5)
    prompt, completion = rated.input_ids[0][:5], rated.input_ids[0][5:]
    logged = engine.sample_logprobs("parent", rated)[0][5:]
    payload = {
        "prompt_token_ids": prompt,
        "completion_token_ids": completion,
        "sampling_logprobs": logged,
        "reward": reward,
    }
    batch = rating_batch(None, [payload])
    engine.create_adapter("child", parent_dir=parent)
    for step in range(10):
        objective_step(engine, "child", {"pg": batch}, {"pg": 1.0}, 1e-2, step_id=f"c:{step}")

    def seq_logprob(adapter: str) -> float:
        row = engine.sample_logprobs(adapter, rated)[0]
        return sum(row[5:])

    change = seq_logprob("child") - seq_logprob("parent")
    assert change * direction > 0.05, change


def test_greedy_margin_is_the_smallest_gap_to_the_runner_up_at_trained_tokens() -> None:
    logits = torch.full((1, 4, 5), 0.0)  # (R, T, V)
    logits[0, 0, 2] = 3.0  # predicts token 1 (= 2): the argmax by 3.0
    logits[0, 1, 4] = 1.0  # predicts token 2 (= 3): token 4 wins by 1.0, so 3 loses by 1.0
    logits[0, 2, 0] = 9.0  # predicts token 3, which is not trained
    ids = torch.tensor([[0, 2, 3, 1]])
    assert greedy_margin(logits, ids, torch.tensor([[0.0, 1.0, 0.0, 0.0]])).item() == 3.0
    assert greedy_margin(logits, ids, torch.tensor([[0.0, 1.0, 1.0, 0.0]])).item() == -1.0
    assert greedy_margin(logits, ids, torch.zeros(1, 4)).item() == float("inf")


def test_sft_steps_report_the_margin_and_training_widens_it_until_learned(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    """What a cycle stops on: random targets start far from greedy (negative margin) and
    become the greedy answer under training; the margin is each step's smallest row margin."""
    engine = make_engine()
    _parent(engine, tmp_path, "a")
    engine.create_adapter("b", parent_dir=tmp_path / "parent")
    sft = random_batch(11, rows=1, length=6)
    margins = []
    for step in range(100):
        losses = objective_step(engine, "a", {"sft": sft}, {"sft": 1.0}, 1e-2, step_id=f"a:{step}")
        margins.append(losses["margin"])
        if losses["margin"] >= 0.5:
            break
    assert margins[0] < 0 < margins[-1], margins
    assert margins[-1] >= 0.5, margins
    first = objective_step(engine, "b", {"sft": sft}, {"sft": 1.0}, 0.0, step_id="b:0")
    assert first["margin"] == pytest.approx(margins[0], abs=1e-5)  # the same rows, untrained


def test_each_adapter_keeps_its_own_dpo_beta_in_a_shared_round(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    """A fine-tuning job's beta: two adapters with different betas in one round get the
    gradients each gets alone, and a different beta gives a different gradient."""
    from trainer.objective import ObjectiveWork, accumulate_round

    engine = make_engine()
    _parent(engine, tmp_path, "a")
    _parent(engine, tmp_path, "b")
    batches = {"dpo": dpo_batch(4)}
    alone = {}
    for adapter, beta in (("a", 0.1), ("b", 2.0)):
        accumulate(engine, adapter, batches, {"dpo": 1.0}, dpo_beta=beta)
        alone[adapter] = _grad(engine, adapter)
        engine.zero_grad(adapter)
    assert not torch.allclose(alone["a"], alone["b"])  # same weights and rows: beta differs
    accumulate_round(
        engine,
        [
            ObjectiveWork("a", batches, {"dpo": 1.0}, dpo_beta=0.1),
            ObjectiveWork("b", batches, {"dpo": 1.0}, dpo_beta=2.0),
        ],
    )
    for adapter in ("a", "b"):
        torch.testing.assert_close(_grad(engine, adapter), alone[adapter], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("reward", [-1.0, 1.0])
def test_each_cycle_moves_a_rated_answer_further(
    make_engine: EngineFactory, tmp_path: Path, reward: float
) -> None:
    """Cycle after cycle on the same rating (the logged sampler's logprobs of cycle 0), each
    cycle a child of the last one's result. With the clipped ratio taken against each cycle's
    parent (a learning cycle's `pg_proximal="reference"`), every cycle moves the rated answer
    again (the clip range is a trust region around the parent, -log(0.8) = 0.22 nats a token
    down; shared weights carry tokens past it within a cycle); against the original sampler
    the ratio leaves the clip range in the first cycle and later cycles do not move it."""
    engine = make_engine()
    start = write_random_parent(engine, tmp_path / "v0", SMALL_LORA, seed=3)
    engine.create_adapter("v0", parent_dir=start)
    rated = random_batch(9, rows=1, length=14, prompt=5)
    payload = {
        "prompt_token_ids": rated.input_ids[0][:5],
        "completion_token_ids": rated.input_ids[0][5:],
        "sampling_logprobs": engine.sample_logprobs("v0", rated)[0][5:],
        "reward": reward,
    }
    batch = rating_batch(None, [payload])
    tokens = len(rated.input_ids[0]) - 5

    def seq_logprob(adapter: str) -> float:
        return sum(engine.sample_logprobs(adapter, rated)[0][5:])

    moved: dict[str, list[float]] = {}
    for proximal in ("reference", "sampler"):
        parent_dir, path = start, [seq_logprob("v0")]
        for cycle in range(1, 4):
            name = f"{proximal}-v{cycle}"
            engine.create_adapter(name, parent_dir=parent_dir)
            for step in range(25):
                objective_step(
                    engine,
                    name,
                    {"pg": batch},
                    {"pg": 1.0},
                    1e-2,
                    step_id=f"{name}:{step}",
                    pg_proximal=proximal,  # type: ignore[arg-type]
                )
            path.append(seq_logprob(name))
            parent_dir = tmp_path / name
            engine.save_adapter(name, parent_dir)
        moved[proximal] = [p - path[0] for p in path[1:]]
    print(moved)  # shown when an assertion below fails
    toward = [m * reward for m in moved["reference"]]
    # Each cycle moves it further, and three cycles at least twice as far as one.
    assert 0 < toward[0] < toward[1] < toward[2], moved
    assert toward[2] > 2 * toward[0], moved
    # A cycle is a trust region around its parent, not a free fall: each moves it by less
    # than a token's clip range would allow five times over.
    per_cycle = [toward[0], toward[1] - toward[0], toward[2] - toward[1]]
    assert all(d < 5 * tokens * 0.2232 for d in per_cycle), per_cycle
    # Against the original sampler, cycles 2 and 3 add little to what cycle 1 did.
    stalled = [m * reward for m in moved["sampler"]]
    assert stalled[2] - stalled[0] < 0.5 * (toward[2] - toward[0]), moved
