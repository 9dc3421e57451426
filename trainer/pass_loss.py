"""Dispatch from a `LossSpec` to the pure losses for one collated pass, and its row metrics."""

from __future__ import annotations

import torch

from trainer.errors import InvalidBatchError
from trainer.losses import LossSpec, LossTerms, dpo_loss, policy_gradient_loss, sft_loss
from trainer.metrics import RowMetrics
from trainer.passes import PassPlan, PassTensors


def compute_loss(
    spec: LossSpec, logp: torch.Tensor, t: PassTensors, ref: torch.Tensor | None
) -> LossTerms:
    """Per-row loss terms of a pass; `logp` and `ref` are (N, T) token logprobs."""
    mask = t.loss_mask  # (N, T)
    if spec.kind == "sft":
        return sft_loss(logp, mask)
    if spec.kind == "pg":
        if t.advantages is None:
            raise InvalidBatchError("pg needs advantages for every row")
        # No recorded sampling logprobs: on-policy, the ratio is 1 and only its gradient counts.
        sampling = fill_missing(t.sampling_logprobs, logp.detach())
        return policy_gradient_loss(
            logp,
            sampling,
            t.advantages,
            mask,
            clip_low=spec.clip_low,
            clip_high=spec.clip_high,
            ref_logprobs=ref,
            kl_coef=spec.kl_coef,
            normalize=spec.pg_normalize,
            proximal_logprobs=ref if spec.proximal == "reference" else None,
            behaviour_cap=spec.behaviour_cap,
        )
    if ref is None:
        raise InvalidBatchError("dpo needs reference logprobs")
    pairs = logp.shape[0] // 2  # chosen rows first, then rejected
    return dpo_loss(
        logp[:pairs],
        mask[:pairs],
        logp[pairs:],
        mask[pairs:],
        ref[:pairs],
        ref[pairs:],
        spec.dpo_beta,
    )


def fill_missing(given: torch.Tensor | None, fallback: torch.Tensor) -> torch.Tensor:
    """`given` (N, T) with its NaN entries (rows that recorded none) taken from `fallback`."""
    if given is None:
        return fallback
    return torch.where(torch.isnan(given), fallback, given)


def row_metrics(plan: PassPlan, terms: LossTerms, t: PassTensors) -> list[RowMetrics]:
    """One `RowMetrics` per row of the pass, in plan order."""
    rows = len(plan.rows)
    tokens = t.loss_mask.sum(dim=1)  # (N,)
    if tokens.shape[0] == 2 * rows and terms.loss.shape[0] == rows:
        tokens = tokens[:rows] + tokens[rows:]  # a DPO pair counts chosen and rejected tokens
    loss_sum = terms.loss.detach().cpu().tolist()
    units = terms.units.detach().cpu().tolist()
    tok = tokens.cpu().tolist()
    extra = {k: v.detach().cpu().tolist() for k, v in terms.metrics.items()}
    out = []
    for j in range(rows):
        out.append(
            RowMetrics(
                adapter_id=plan.adapter_ids[plan.row_slots[j]],
                loss=loss_sum[j] / units[j] if units[j] > 0 else 0.0,
                loss_sum=loss_sum[j],
                units=units[j],
                tokens=int(round(tok[j])),
                extra={k: float(v[j]) for k, v in extra.items()},
            )
        )
    return out
