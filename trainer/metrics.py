"""Metrics the training API returns: per row of `forward_backward`, per `optim_step`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RowMetrics:
    """What one row (one DPO pair) contributed to its adapter's accumulated loss."""

    adapter_id: str
    loss: float
    """Row loss per normalisation unit (loss_sum / units; mean token NLL for SFT)."""
    loss_sum: float
    """Row loss summed over its units; the gradient accumulated is that of loss_sum."""
    units: float
    """Normalisation units of the row: trained tokens (sft, pg), 1 (pg per sequence, dpo)."""
    tokens: int
    """Trained (masked) tokens of the row, chosen plus rejected for a DPO pair."""
    extra: dict[str, float] = field(default_factory=dict)
    """Loss-specific metrics: nll, margin (sft, see `losses.greedy_margin`); clip_fraction, ratio, kl; reward_margin, accuracy, ..."""


@dataclass(frozen=True)
class StepMetrics:
    """Outcome of one `optim_step` of one adapter."""

    adapter_id: str
    step: int
    """The adapter's step count after this call."""
    grad_norm: float
    """Total gradient norm before clipping (of the unit-normalised gradient)."""
    units: float
    """Normalisation units the gradient was averaged over."""
    rows: int
    """Rows accumulated into this step."""
    lr: float
    skipped: bool = False
    """True when nothing was applied: no accumulated rows, or a step id already applied."""
