"""A learning cycle's objective: what to change, what to keep, as one optimiser step.

One step of a cycle adds, for one adapter (see docs/LEARNING.md):

    L = w_sft * mean SFT(corrections) + w_dpo * mean DPO(preferences)
        + w_pg * mean clipped-PG(ratings) + kl_coef * mean KL(parent || adapter)(untouched traffic)
        + w_away * mean DPO(served answer over a correction's answer, on prompts near it)

Each term is its own mean (`LossSpec(reduction="call")`), so a weight of 1 gives a loss the same
gradient scale alone or mixed, and the gradient of the mixture is the weighted sum of the
single-loss gradients. The KL term runs on the agent's own recent traffic that no feedback
touched (and, for an agent with an environment, the parent's answers to environment tasks); its
reference is the parent version, pinned when the adapter is created from it. The ``away`` term is
the DPO loss on its own rows and weight: untouched prompts near a correction, each preferring the
answer it was served over the correction's answer verbatim, so that the correction is learned
without being copied onto its neighbours (`app.cycles.untouched.away_pairs`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from trainer.batch import Batch, encode_chat
from trainer.engine import TrainingEngine
from trainer.losses import LossSpec

OBJECTIVE_KINDS = ("sft", "dpo", "pg", "kl", "away")
"""Loss kinds a cycle's objective may hold, in the order a step runs them."""


def sft_batch(tokenizer: Any, payloads: Sequence[Mapping[str, Any]]) -> Batch:
    """Cross-entropy rows on each conversation's last assistant turn (tools and system prompt
    rendered as they were served)."""
    rows = [
        encode_chat(tokenizer, p["messages"], tools=p.get("tools"), only_last_assistant=True)
        for p in payloads
    ]
    return Batch(input_ids=[r[0] for r in rows], loss_mask=[r[1] for r in rows])


def dpo_batch(tokenizer: Any, payloads: Sequence[Mapping[str, Any]]) -> Batch:
    """Chosen/rejected row pairs sharing each conversation's prompt."""
    chosen: list[tuple[list[int], list[float]]] = []
    rejected: list[tuple[list[int], list[float]]] = []
    for p in payloads:
        for answer, out in ((p["chosen"], chosen), (p["rejected"], rejected)):
            messages = [*p["messages"], answer]
            out.append(
                encode_chat(tokenizer, messages, tools=p.get("tools"), only_last_assistant=True)
            )
    return Batch(
        input_ids=[r[0] for r in chosen],
        loss_mask=[r[1] for r in chosen],
        rejected_input_ids=[r[0] for r in rejected],
        rejected_loss_mask=[r[1] for r in rejected],
    )


def _logged_row(tokenizer: Any, p: Mapping[str, Any]) -> tuple[list[int], list[float], int]:
    """(ids, mask, prompt length) of a logged completion: the engine's own token ids when the
    payload has them, else the conversation re-rendered with the output as the last turn."""
    prompt, completion = p.get("prompt_token_ids"), p.get("completion_token_ids")
    if prompt and completion:
        ids = [*prompt, *completion]
        return ids, [0.0] * len(prompt) + [1.0] * len(completion), len(prompt)
    ids, mask = encode_chat(
        tokenizer, [*p["messages"], p["output"]], tools=p.get("tools"), only_last_assistant=True
    )
    return ids, mask, mask.index(1.0) if 1.0 in mask else len(ids)


def pg_batch(tokenizer: Any, payloads: Sequence[Mapping[str, Any]]) -> Batch:
    """Off-policy policy-gradient rows from rated outputs: advantage = the rating in [-1, 1],
    importance ratio against the logged sampling logprobs (NaN where none were logged, which
    the loss treats as on-policy). A payload with ``token_ids``, ``loss_mask`` and
    ``sampling_logprobs`` over the whole row (a reinforcement job's rollout) is taken as is."""
    ids_rows, masks, sampling, advantages = [], [], [], []
    for p in payloads:
        if p.get("token_ids") is not None:  # a whole sampled episode, tool results masked out
            ids_rows.append([int(t) for t in p["token_ids"]])
            masks.append([float(m) for m in p["loss_mask"]])
            sampling.append([float(x) for x in p["sampling_logprobs"]])
            advantages.append(max(-1.0, min(1.0, float(p["reward"]))))
            continue
        ids, mask, start = _logged_row(tokenizer, p)
        logged = p.get("sampling_logprobs")
        completion = len(ids) - start
        if logged and len(logged) == completion and p.get("prompt_token_ids"):
            row = [0.0] * start + [float(x) for x in logged]
        else:
            row = [math.nan] * len(ids)
        ids_rows.append(ids)
        masks.append(mask)
        sampling.append(row)
        advantages.append(max(-1.0, min(1.0, float(p["reward"]))))
    return Batch(
        input_ids=ids_rows, loss_mask=masks, sampling_logprobs=sampling, advantages=advantages
    )


def kl_batch(tokenizer: Any, payloads: Sequence[Mapping[str, Any]]) -> Batch:
    """Rows of untouched traffic: the KL to the parent is taken at each completion token."""
    rows = [_logged_row(tokenizer, p) for p in payloads]
    return Batch(input_ids=[r[0] for r in rows], loss_mask=[r[1] for r in rows])


BUILDERS = {"sft": sft_batch, "dpo": dpo_batch, "pg": pg_batch, "kl": kl_batch, "away": dpo_batch}
LOSS_OF = {"away": "dpo"}
"""The loss a kind's rows take where it is not the kind's own name."""


def build_batches(
    tokenizer: Any, examples: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, Batch]:
    """One batch per loss kind that has examples."""
    return {
        kind: BUILDERS[kind](tokenizer, examples[kind])
        for kind in OBJECTIVE_KINDS
        if examples.get(kind)
    }


def step_examples(
    examples: Mapping[str, Sequence[Mapping[str, Any]]],
    batch_size: int | None,
    seed: int,
    step: int,
) -> dict[str, list[Mapping[str, Any]]]:
    """The examples step ``step`` (from 1) trains on: with ``batch_size``, each loss kind's
    rows go by in epochs, each epoch in its own seeded order, ``batch_size`` rows a step
    (the last batch of an epoch may be smaller); without it, every row every step. The KL
    rows (what to keep) are always all used."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for kind, rows in examples.items():
        if kind == "kl" or not batch_size or batch_size >= len(rows):
            out[kind] = list(rows)
            continue
        per_epoch = math.ceil(len(rows) / batch_size)
        epoch, index = divmod(step - 1, per_epoch)
        order = list(range(len(rows)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out[kind] = [rows[i] for i in order[index * batch_size : (index + 1) * batch_size]]
    return out


def objective_weights(mixture: Mapping[str, float], kl_coef: float) -> dict[str, float]:
    """The weight of each term: the schedule's loss mixture (``away`` among them), and
    `kl_coef` for the KL term."""
    weights = {kind: float(mixture.get(kind, 0.0)) for kind in ("sft", "dpo", "pg", "away")}
    weights["kl"] = float(kl_coef)
    return weights


@dataclass(frozen=True)
class ObjectiveWork:
    """One adapter's share of a round: its batches per loss kind and their weights."""

    adapter_id: str
    batches: Mapping[str, Batch]
    weights: Mapping[str, float]
    dpo_beta: float = 0.1
    """The DPO loss's beta (Rafailov et al. 2023, eq. 7) for this adapter's preference rows."""
    pg_proximal: Literal["sampler", "reference"] = "sampler"
    """What the rating rows' clipped ratio is taken against (`LossSpec.proximal`): a learning
    cycle's ratings use ``reference``, its pinned parent; an RL experiment's fresh rollouts use
    ``sampler``."""


def accumulate_round(
    engine: TrainingEngine, work: Sequence[ObjectiveWork]
) -> list[dict[str, float]]:
    """Add every adapter's weighted mean gradient of every term, all adapters of a loss kind in
    one `forward_backward` (their rows share passes where they fit; DPO rows share a pass with
    rows of the same beta); returns each adapter's mean loss per term (unweighted), and under
    "margin" the smallest greedy margin of its SFT rows before this step
    (`trainer.losses.greedy_margin`)."""
    losses: list[dict[str, float]] = [{} for _ in work]
    for kind in OBJECTIVE_KINDS:
        chosen = [
            i for i, w in enumerate(work) if kind in w.batches and w.weights.get(kind, 0.0) > 0
        ]
        # Rows share a pass only under one loss spec: DPO rows by beta, ratings by proximal.
        loss = LOSS_OF.get(kind, kind)
        specs = sorted(
            {
                (
                    work[i].dpo_beta if loss == "dpo" else 0.1,
                    work[i].pg_proximal if kind == "pg" else "sampler",
                )
                for i in chosen
            }
        )
        for beta, proximal in specs:
            group = [
                i
                for i in chosen
                if (loss != "dpo" or work[i].dpo_beta == beta)
                and (kind != "pg" or work[i].pg_proximal == proximal)
            ]
            spec = LossSpec(kind=loss, reduction="call", dpo_beta=beta, proximal=proximal)  # type: ignore[arg-type]
            items = [(work[i].adapter_id, work[i].batches[kind]) for i in group]
            weights = [float(work[i].weights[kind]) for i in group]
            for i, rows in zip(group, engine.forward_backward(items, spec, weights), strict=True):
                units = sum(r.units for r in rows)
                losses[i][kind] = sum(r.loss_sum for r in rows) / units if units > 0 else 0.0
                margins = [r.extra.get("margin", math.inf) for r in rows]
                if kind == "sft" and any(math.isfinite(m) for m in margins):
                    losses[i]["margin"] = min(margins)
    return losses


def accumulate(
    engine: TrainingEngine,
    adapter_id: str,
    batches: Mapping[str, Batch],
    weights: Mapping[str, float],
    *,
    dpo_beta: float = 0.1,
    pg_proximal: Literal["sampler", "reference"] = "sampler",
) -> dict[str, float]:
    """Add the weighted mean gradient of every term with a positive weight; the mean loss of
    each term (unweighted) is returned for the step's record."""
    work = [ObjectiveWork(adapter_id, batches, weights, dpo_beta, pg_proximal)]
    return accumulate_round(engine, work)[0]


def objective_step(
    engine: TrainingEngine,
    adapter_id: str,
    batches: Mapping[str, Batch],
    weights: Mapping[str, float],
    lr: float,
    *,
    step_id: str | None = None,
    max_grad_norm: float | None = 1.0,
    pg_proximal: Literal["sampler", "reference"] = "sampler",
) -> dict[str, float]:
    """One optimiser step on the whole objective; returns each term's mean loss."""
    losses = accumulate(engine, adapter_id, batches, weights, pg_proximal=pg_proximal)
    if any(kind in losses for kind in OBJECTIVE_KINDS):
        engine.optim_step(adapter_id, lr, max_grad_norm=max_grad_norm, step_id=step_id)
    else:
        engine.store.get(adapter_id).last_step_id = step_id
    return losses
