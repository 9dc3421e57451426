"""Planning and collating forward/backward passes that mix rows of several adapters.

A pass holds rows of adapters that share a shape signature (rank, targets, dropout); each
adapter gets one slot of the stacked LoRA weights and its rows are contiguous. Work beyond
`max_tokens_per_pass` padded tokens is split over several passes whose gradients accumulate.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import torch

from trainer.batch import Batch


@dataclass
class PassPlan:
    """Rows of one forward/backward: (item index, row index) grouped by adapter slot."""

    adapter_ids: list[str] = field(default_factory=list)  # slot -> adapter id
    rows: list[tuple[int, int]] = field(default_factory=list)  # (item, row), slot-contiguous
    row_slots: list[int] = field(default_factory=list)  # slot of each row
    sequences: int = 0  # sequences through the model (a DPO pair counts 2)
    max_len: int = 0  # longest sequence

    def padded_tokens_with(self, seqs: int, length: int) -> int:
        """Padded tokens of this pass after adding `seqs` sequences of `length` tokens."""
        return (self.sequences + seqs) * max(self.max_len, length)

    def add(self, adapter_id: str, item: int, row: int, seqs: int, length: int) -> None:
        """Append one row of `adapter_id`, opening its slot when needed."""
        if adapter_id not in self.adapter_ids:
            self.adapter_ids.append(adapter_id)
        self.rows.append((item, row))
        self.row_slots.append(self.adapter_ids.index(adapter_id))
        self.sequences += seqs
        self.max_len = max(self.max_len, length)


def plan_passes(
    items: Sequence[tuple[str, Batch]],
    signature: Callable[[str], Hashable],
    max_tokens: int,
    multiplex: bool,
) -> list[PassPlan]:
    """Split work into passes: one signature per pass, at most `max_tokens` padded tokens each.

    Without multiplexing every item gets passes of its own (one adapter swapped in at a time).
    Rows of one adapter stay contiguous, so slots are segments of the pass.
    """
    groups: dict[Hashable, list[int]] = {}
    for i, (adapter_id, _) in enumerate(items):
        key: Hashable = signature(adapter_id) if multiplex else ("item", i)
        groups.setdefault(key, []).append(i)
    plans: list[PassPlan] = []
    for item_ids in groups.values():
        # Same adapter twice in one call: keep its rows together in one slot.
        first_seen: dict[str, int] = {}
        for i in item_ids:
            first_seen.setdefault(items[i][0], len(first_seen))
        item_ids = sorted(item_ids, key=lambda i: first_seen[items[i][0]])
        current = PassPlan()
        for i in item_ids:
            adapter_id, batch = items[i]
            seqs = batch.sequences_per_row()
            for r in range(len(batch)):
                length = batch.row_length(r)
                if current.rows and current.padded_tokens_with(seqs, length) > max_tokens:
                    plans.append(current)
                    current = PassPlan()
                current.add(adapter_id, i, r, seqs, length)
        if current.rows:
            plans.append(current)
    return plans


@dataclass
class PassTensors:
    """Right-padded tensors of one pass; DPO passes put all chosen rows first, then rejected."""

    input_ids: torch.Tensor  # (N, T) long
    attention_mask: torch.Tensor | None  # (N, T) long; None when no row is padded
    loss_mask: torch.Tensor  # (N, T) float32
    seq_slot: torch.Tensor  # (N,) long: adapter slot of each sequence
    sampling_logprobs: torch.Tensor | None  # (N, T) float32
    reference_logprobs: torch.Tensor | None  # (N, T) float32; None when any row lacks them
    advantages: torch.Tensor | None  # (N,) float32


def _pad(rows: Sequence[Sequence[float]], length: int, value: float, dtype: torch.dtype) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=dtype)  # (N, T)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=dtype)
    return out


def collate_pass(
    plan: PassPlan,
    items: Sequence[tuple[str, Batch]],
    advantages: Sequence[torch.Tensor | None],
    pad_id: int,
    device: torch.device,
) -> PassTensors:
    """Tensors of one pass, on the device; `advantages[i]` is item i's (R_i,) or None."""
    batches = [(items[i][1], r) for i, r in plan.rows]
    ids = [b.input_ids[r] for b, r in batches]
    masks = [b.loss_mask[r] for b, r in batches]
    slots = list(plan.row_slots)
    samp: list[list[float]] | None = None
    if all(b.sampling_logprobs is not None for b, _ in batches):
        samp = [b.sampling_logprobs[r] for b, r in batches]  # type: ignore[index]
    refs: list[list[float]] | None = None
    if all(b.reference_logprobs is not None for b, _ in batches):
        refs = [b.reference_logprobs[r] for b, r in batches]  # type: ignore[index]
    adv_rows = [advantages[i] for i, _ in plan.rows]
    adv = None
    if all(a is not None for a in adv_rows):
        adv = torch.stack([a[r] for a, (_, r) in zip(adv_rows, plan.rows, strict=True)])  # type: ignore[index]
    if all(b.is_pairwise for b, _ in batches):
        ids += [b.rejected_input_ids[r] for b, r in batches]  # type: ignore[index]
        masks += [b.rejected_loss_mask[r] for b, r in batches]  # type: ignore[index]
        slots += slots
        if refs is not None:
            refs += [b.rejected_reference_logprobs[r] for b, r in batches]  # type: ignore[index]
    length = max(len(s) for s in ids)
    padded = any(len(s) != length for s in ids)
    attention = _pad([[1] * len(s) for s in ids], length, 0, torch.long) if padded else None

    def dev(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device, non_blocking=True)

    return PassTensors(
        input_ids=_pad(ids, length, pad_id, torch.long).to(device),
        attention_mask=dev(attention),
        loss_mask=_pad(masks, length, 0.0, torch.float32).to(device),
        seq_slot=torch.tensor(slots, dtype=torch.long).to(device),
        sampling_logprobs=dev(None if samp is None else _pad(samp, length, 0.0, torch.float32)),
        reference_logprobs=dev(None if refs is None else _pad(refs, length, 0.0, torch.float32)),
        advantages=dev(adv),
    )
