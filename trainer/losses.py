"""Training losses as pure functions: SFT cross-entropy, DPO, clipped policy gradient, KL.

Every loss returns per-row *sums* plus the number of normalisation units of each row. With
`reduction="step"` the engine adds sums and units over every `forward_backward` of a step and
divides the summed gradient by the summed units in `optim_step`, so accumulating over several
calls (and multiplexing rows of several adapters into one pass) equals one call on the
concatenated batch. With `reduction="call"` each call's loss is its own mean (its sums divided by
its own units, `item_units`) times `LossSpec.weight`, and `optim_step` adds those means
undivided: a mixture of losses then has the gradient `sum_k weight_k * grad(mean loss_k)`, so a
weight of 1 gives a loss the same gradient scale alone or mixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

AdvantageKind = Literal["grpo", "rloo"]
PgNormalize = Literal["tokens", "sequences"]
LossKind = Literal["sft", "dpo", "pg", "kl"]
Reduction = Literal["step", "call"]


@dataclass(frozen=True)
class LossSpec:
    """Which loss a `forward_backward` call optimises, and its hyper-parameters."""

    kind: LossKind
    """sft: cross-entropy on masked tokens; dpo: preference pairs; pg: clipped policy gradient;
    kl: full-distribution KL(reference || adapter) on masked tokens (keep behaviour)."""
    dpo_beta: float = 0.1
    """DPO temperature beta (Rafailov et al. 2023, eq. 7)."""
    clip_low: float = 0.2
    """PPO clip epsilon below 1: the ratio is clipped to >= 1 - clip_low."""
    clip_high: float = 0.2
    """PPO clip epsilon above 1 (DAPO's clip-higher uses 0.28): ratio clipped to <= 1 + clip_high."""
    advantage: AdvantageKind = "grpo"
    """Estimator turning `Batch.rewards` into advantages when `Batch.advantages` is None."""
    group_size: int | None = None
    """Rollouts per prompt for the advantage estimator (consecutive rows form a group)."""
    kl_coef: float = 0.0
    """Weight of the per-token KL penalty towards the reference (pg only)."""
    reference: Literal["parent", "base"] = "parent"
    """DPO/KL reference when the batch carries no reference logprobs: the adapter's pinned
    parent weights (`TrainingEngine.set_reference`) or the base model with the adapter off."""
    proximal: Literal["sampler", "reference"] = "sampler"
    """pg: what the clipped ratio is taken against. ``sampler``: the logged sampling logprobs
    (PPO; on-policy RL). ``reference``: the reference's logprobs computed in the pass (the
    pinned parent of a learning cycle), with the sampler's off-policy correction as a
    truncated, stop-gradient weight (decoupled PPO, Hilton et al. 2022, eq. 3): each cycle can
    move a rated answer by the clip range again, where a ratio to the original sampler stops
    moving it for good once it leaves that range."""
    behaviour_cap: float = 1.0
    """pg with ``proximal="reference"``: the most the weight pi_reference / pi_sampler may be
    (truncated importance sampling, as V-trace's rho-bar of 1)."""
    pg_normalize: PgNormalize = "tokens"
    """pg: average over all assistant tokens of the step, or first within each sequence (GRPO)."""
    weight: float = 1.0
    """Factor on this loss (a mixture weight); 0 is allowed and contributes a zero gradient."""
    reduction: Reduction = "step"
    """step: sums divided by every unit of the optimiser step; call: this call's own mean per
    adapter, times `weight`, added undivided (see the module doc)."""

    def __post_init__(self) -> None:
        if self.kind not in ("sft", "dpo", "pg", "kl"):
            raise ValueError(f"unknown loss kind {self.kind!r}")
        if self.clip_low < 0 or self.clip_high < 0 or self.dpo_beta <= 0 or self.kl_coef < 0:
            raise ValueError("clip epsilons and kl_coef must be >= 0, dpo_beta > 0")
        if self.weight < 0 or self.reduction not in ("step", "call"):
            raise ValueError("weight must be >= 0 and reduction 'step' or 'call'")

    @property
    def needs_reference(self) -> bool:
        """True when the loss reads reference logprobs (kl reads whole reference distributions)."""
        return self.kind == "dpo" or (
            self.kind == "pg" and (self.kl_coef > 0 or self.proximal == "reference")
        )


@dataclass
class LossTerms:
    """Per-row loss sums, normalisation units and metrics of one loss evaluation."""

    loss: torch.Tensor  # (R,) summed loss of each row; the objective is loss.sum() / units.sum()
    units: torch.Tensor  # (R,) normalisation units of each row (tokens, sequences or pairs)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (R,)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-probability of each input token given the tokens before it, aligned with input_ids."""
    shifted = logits[:, :-1]  # (B, T-1, V): position t predicts token t+1
    if shifted.dtype not in (torch.float32, torch.float64):
        shifted = shifted.float()  # half-precision logits lose too much in logsumexp
    targets = input_ids[:, 1:].unsqueeze(-1)  # (B, T-1, 1)
    picked = shifted.gather(-1, targets).squeeze(-1)  # (B, T-1)
    logp = picked - torch.logsumexp(shifted, dim=-1)  # (B, T-1)
    return F.pad(logp, (1, 0))  # (B, T); token 0 has no prediction, logprob 0


def sft_loss(logprobs: torch.Tensor, mask: torch.Tensor) -> LossTerms:
    """Cross-entropy on masked target tokens: sum_t -mask_t * log p(x_t | x_<t)."""
    # logprobs, mask: (R, T)
    nll = -(logprobs * mask).sum(dim=1)  # (R,)
    units = mask.sum(dim=1)  # (R,)
    mean_nll = nll.detach() / units.clamp(min=1e-9)
    return LossTerms(nll, units, {"nll": mean_nll})


def greedy_margin(
    logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Smallest margin, over each row's masked tokens, by which the token is the argmax given
    the tokens before it: min_t [logit(x_t) - max_{v != x_t} logit(v)]. Positive means greedy
    decoding from the row's prompt reproduces its target exactly; +inf for a row without
    targets."""
    # logits: (R, T, V); input_ids, mask: (R, T)
    shifted = logits[:, :-1].detach().float()  # (R, T-1, V): position t predicts token t+1
    targets = input_ids[:, 1:].unsqueeze(-1)  # (R, T-1, 1)
    picked = shifted.gather(-1, targets).squeeze(-1)  # (R, T-1)
    rival = shifted.scatter(-1, targets, float("-inf")).amax(dim=-1)  # (R, T-1)
    gap = F.pad(picked - rival, (1, 0))  # (R, T), aligned with input_ids
    return torch.where(mask > 0, gap, torch.full_like(gap, float("inf"))).amin(dim=1)  # (R,)


def sequence_logprob(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of masked token logprobs: log pi(y | x) of each completion."""
    return (logprobs * mask).sum(dim=1)  # (R, T) -> (R,)


def dpo_loss(
    chosen_logprobs: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_logprobs: torch.Tensor,
    rejected_mask: torch.Tensor,
    ref_chosen_logprobs: torch.Tensor,
    ref_rejected_logprobs: torch.Tensor,
    beta: float,
) -> LossTerms:
    """DPO, Rafailov et al. 2023 eq. 7, one unit per pair.

    L = -log sigmoid(beta * [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))])
    """
    # every *_logprobs and *_mask: (P, T) for P pairs (chosen and rejected padded alike)
    pi_w = sequence_logprob(chosen_logprobs, chosen_mask)  # (P,)
    pi_l = sequence_logprob(rejected_logprobs, rejected_mask)  # (P,)
    ref_w = sequence_logprob(ref_chosen_logprobs, chosen_mask)  # (P,)
    ref_l = sequence_logprob(ref_rejected_logprobs, rejected_mask)  # (P,)
    reward_w = beta * (pi_w - ref_w)  # (P,) implicit reward of the chosen completion
    reward_l = beta * (pi_l - ref_l)  # (P,)
    loss = -F.logsigmoid(reward_w - reward_l)  # (P,)
    metrics = {
        "reward_chosen": reward_w.detach(),
        "reward_rejected": reward_l.detach(),
        "reward_margin": (reward_w - reward_l).detach(),
        "accuracy": (reward_w > reward_l).float().detach(),
    }
    return LossTerms(loss, torch.ones_like(loss), metrics)


def distribution_kl(
    logits: torch.Tensor, ref_logits: torch.Tensor, rows: torch.Tensor, n_rows: int
) -> LossTerms:
    """Forward KL(ref || pi) over the whole vocabulary at each trained position, summed per row.

    KL_t = sum_v ref(v | x_<t) * (log ref(v | x_<t) - log pi(v | x_<t)), the token-level
    distillation objective of Hinton et al. 2015 and GKD (Agarwal et al. 2024, eq. 1 with the
    forward KL). Unlike a sampled-token estimator it pins the parent's whole next-token
    distribution, so greedy choices elsewhere in the sequence are kept as well.
    """
    # logits, ref_logits: (M, V) at the M trained positions; rows: (M,) row index of each
    logp = torch.log_softmax(logits.float(), dim=-1)  # (M, V)
    ref_logp = torch.log_softmax(ref_logits.float(), dim=-1)  # (M, V)
    per_pos = (ref_logp.exp() * (ref_logp - logp)).sum(dim=-1)  # (M,)
    return kl_terms(per_pos, rows, n_rows)


def kl_terms(per_pos: torch.Tensor, rows: torch.Tensor, n_rows: int) -> LossTerms:
    """Per-position KLs (M,) summed per row, one unit per position (`distribution_kl`)."""
    loss = torch.zeros(n_rows, dtype=per_pos.dtype, device=per_pos.device)
    loss = loss.index_add(0, rows, per_pos)  # (R,)
    units = torch.zeros(n_rows, dtype=per_pos.dtype, device=per_pos.device)
    units = units.index_add(0, rows, torch.ones_like(per_pos))  # (R,)
    return LossTerms(loss, units, {"kl": loss.detach() / units.clamp(min=1e-9)})


def item_units(spec: LossSpec, mask_rows: list[list[float]]) -> float:
    """Normalisation units a batch contributes to `spec`'s loss (what `reduction="call"`
    divides by): trained tokens for sft, kl and token-normalised pg, rows for sequence-
    normalised pg, pairs for dpo. Agrees with the `units` the losses above return."""
    if spec.kind == "dpo" or (spec.kind == "pg" and spec.pg_normalize == "sequences"):
        return float(len(mask_rows))
    if spec.kind == "kl":
        return float(sum(1 for row in mask_rows for m in row if m > 0))
    return float(sum(sum(row) for row in mask_rows))


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || ref) estimator, Shao et al. 2024 eq. 4 (Schulman's k3, always >= 0)."""
    # (R, T) -> (R, T): ref/pi - log(ref/pi) - 1
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0


def policy_gradient_loss(
    logprobs: torch.Tensor,
    sampling_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float,
    clip_high: float,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    normalize: PgNormalize = "tokens",
    proximal_logprobs: torch.Tensor | None = None,
    behaviour_cap: float = 1.0,
) -> LossTerms:
    """Importance-sampled policy gradient with PPO clipping, Schulman et al. 2017 eq. 7.

    Per token: -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A), rho = pi / pi_sampling,
    plus kl_coef * KL_k3(pi || ref) (GRPO, Shao et al. 2024 eq. 3). With `proximal_logprobs`
    the ratio is taken against them instead, rho = pi / pi_prox, and each token is weighted by
    min(pi_prox / pi_sampling, behaviour_cap), held constant (decoupled PPO, Hilton et al.
    2022, eq. 3). With `normalize="tokens"` every assistant token of the step weighs the same;
    "sequences" first averages within a row.
    """
    # logprobs, sampling_logprobs, mask: (R, T); advantages: (R,)
    # Untrained positions (prompt, tool results, padding) may hold any recorded value; pin
    # their ratio to 1 so exp() cannot overflow into inf * 0 = NaN.
    live = mask > 0
    sampling_logprobs = torch.where(live, sampling_logprobs, logprobs.detach())
    behaviour = torch.ones_like(logprobs)  # (R, T)
    if proximal_logprobs is not None:
        prox = torch.where(live, proximal_logprobs, logprobs.detach())  # (R, T)
        behaviour = torch.exp(prox - sampling_logprobs).clamp(max=behaviour_cap).detach()
        sampling_logprobs = prox
    ratio = torch.exp(logprobs - sampling_logprobs)  # (R, T)
    adv = advantages.unsqueeze(1)  # (R, 1)
    unclipped = ratio * adv  # (R, T)
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv  # (R, T)
    per_token = -torch.minimum(unclipped, clipped) * behaviour  # (R, T)
    metrics: dict[str, torch.Tensor] = {}
    if ref_logprobs is not None and kl_coef > 0:
        kl = kl_k3(logprobs, torch.where(live, ref_logprobs, logprobs.detach()))  # (R, T)
        per_token = per_token + kl_coef * kl
        metrics["kl"] = _masked_mean(kl.detach(), mask)
    tokens = mask.sum(dim=1)  # (R,)
    row_sum = (per_token * mask).sum(dim=1)  # (R,)
    if normalize == "tokens":
        loss, units = row_sum, tokens
    else:
        loss, units = row_sum / tokens.clamp(min=1e-9), torch.ones_like(row_sum)
    metrics["clip_fraction"] = _masked_mean((clipped < unclipped).float(), mask)
    metrics["ratio"] = _masked_mean(ratio.detach(), mask)
    return LossTerms(loss, units, metrics)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (R, T) -> (R,)


def group_advantages(
    rewards: torch.Tensor | list[float],
    group_size: int,
    kind: AdvantageKind = "grpo",
    *,
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Advantages of G rollouts per prompt from their rewards; consecutive rows form a group.

    grpo (Shao et al. 2024, sec. 4.1.2): A_i = (r_i - mean(r)) / (std(r) + eps), unbiased std
    as in TRL; `scale_by_std=False` keeps only the mean baseline (Dr. GRPO).
    rloo (Ahmadian et al. 2024, eq. 6): A_i = r_i - mean_{j != i} r_j.
    """
    r = torch.as_tensor(rewards, dtype=torch.float64)  # (N,)
    if group_size < 2 or r.numel() % group_size != 0:
        raise ValueError(f"{r.numel()} rewards do not split into groups of {group_size} >= 2")
    groups = r.view(-1, group_size)  # (N / G, G)
    mean = groups.mean(dim=1, keepdim=True)  # (N / G, 1)
    if kind == "grpo":
        adv = groups - mean
        if scale_by_std:
            adv = adv / (groups.std(dim=1, keepdim=True) + eps)
    elif kind == "rloo":
        others = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
        adv = groups - others
    else:
        raise ValueError(f"unknown advantage estimator {kind!r}")
    return adv.reshape(-1).float()  # (N,)
