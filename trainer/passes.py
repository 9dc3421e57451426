"""Planning and collating forward/backward passes that mix rows of several adapters.

A pass holds rows of adapters that share a shape signature (rank, targets, dropout); each
adapter gets one slot of the stacked LoRA weights and its rows are contiguous. Work beyond
`max_tokens_per_pass` padded tokens is split over several passes whose gradients accumulate:
on CPU a pass of a few thousand tokens costs less per token than one of tens of thousands.
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
    merge_below: int,
) -> list[PassPlan]:
    """Split work into passes of one signature and at most `max_tokens` padded tokens each.

    Items (one adapter's batch) under `merge_below` padded tokens are packed whole into shared
    passes, so each adapter is one run of rows and equal items give equal runs (the batched
    LoRA kernel). Bigger items are cut into micro-passes: their rows, item after item, fill
    passes of balanced size up to `max_tokens`, so a big batch shares its passes with other
    adapters' big batches and its gradients accumulate across them. `merge_below=0` never
    merges: one adapter swapped in at a time, each item in balanced chunks of its own. A single
    row longer than `max_tokens` gets a pass of its own.
    """
    groups: dict[Hashable, list[int]] = {}
    for i, (adapter_id, _) in enumerate(items):
        groups.setdefault(signature(adapter_id), []).append(i)
    plans: list[PassPlan] = []
    for item_ids in groups.values():
        # Same adapter twice in one call: keep its rows together in one run.
        first_seen: dict[str, int] = {}
        for i in item_ids:
            first_seen.setdefault(items[i][0], len(first_seen))
        ordered = sorted(item_ids, key=lambda i: first_seen[items[i][0]])
        small = {i for i in ordered if _padded(items[i][1]) < min(merge_below, max_tokens + 1)}
        whole = [i for i in ordered if i in small]
        cut = [i for i in ordered if i not in small]
        plans += _pack_whole(items, whole, max_tokens)
        if merge_below > 0:
            plans += _micro_passes(items, cut, max_tokens)
        else:
            for i in cut:
                plans += _micro_passes(items, [i], max_tokens)
    return plans


def split_plan(plan: PassPlan, items: Sequence[tuple[str, Batch]]) -> list[PassPlan]:
    """A pass's rows as two passes of half the rows each, in order (a pass that ran out of
    memory); a one-row pass cannot be split and is returned as it is."""
    if len(plan.rows) < 2:
        return [plan]
    halves = [PassPlan(), PassPlan()]
    for k, (i, r) in enumerate(plan.rows):
        adapter_id, batch = items[i]
        half = halves[0] if k < len(plan.rows) // 2 else halves[1]
        half.add(adapter_id, i, r, batch.sequences_per_row(), batch.row_length(r))
    return halves


def _padded(batch: Batch) -> int:
    """Padded tokens of a batch alone: rows x sequences per row x longest row."""
    longest = max(batch.row_length(r) for r in range(len(batch)))
    return len(batch) * batch.sequences_per_row() * longest


def _pack_whole(
    items: Sequence[tuple[str, Batch]], ids: Sequence[int], max_tokens: int
) -> list[PassPlan]:
    """Whole items, in order, in passes of at most `max_tokens` padded tokens."""
    plans: list[PassPlan] = []
    current = PassPlan()
    for i in ids:
        adapter_id, batch = items[i]
        seqs = batch.sequences_per_row()
        longest = max(batch.row_length(r) for r in range(len(batch)))
        if current.rows and current.padded_tokens_with(seqs * len(batch), longest) > max_tokens:
            plans.append(current)
            current = PassPlan()
        for r in range(len(batch)):
            current.add(adapter_id, i, r, seqs, batch.row_length(r))
    if current.rows:
        plans.append(current)
    return plans


def _micro_passes(
    items: Sequence[tuple[str, Batch]], ids: Sequence[int], max_tokens: int
) -> list[PassPlan]:
    """The items' rows, in order, cut into the fewest passes of balanced size.

    Aims at ceil(tokens / max_tokens) passes of equal tokens: a pass closes once it reaches its
    share of the stream, or when the next row would take it over `max_tokens` padded tokens.
    10 rows of 10 tokens under 40 give passes of 3, 4 and 3 rows."""
    rows = [(i, r) for i in ids for r in range(len(items[i][1]))]
    if not rows:
        return []
    cost = [items[i][1].sequences_per_row() * items[i][1].row_length(r) for i, r in rows]
    target = sum(cost) / -(-sum(cost) // max_tokens)  # tokens per pass, ceil(total / max) passes
    plans: list[PassPlan] = []
    current = PassPlan()
    done = 0.0  # tokens of the stream before the current row
    for (i, r), tokens in zip(rows, cost, strict=True):
        adapter_id, batch = items[i]
        seqs, length = batch.sequences_per_row(), batch.row_length(r)
        over = current.padded_tokens_with(seqs, length) > max_tokens
        share_met = done + tokens / 2 > (len(plans) + 1) * target
        if current.rows and (over or share_met):
            plans.append(current)
            current = PassPlan()
        current.add(adapter_id, i, r, seqs, length)
        done += tokens
    plans.append(current)
    return plans


@dataclass
class PassTensors:
    """Right-padded tensors of one pass; DPO passes put all chosen rows first, then rejected."""

    input_ids: torch.Tensor  # (N, T) long
    attention_mask: torch.Tensor | None  # (N, T) long; None when no row is padded
    loss_mask: torch.Tensor  # (N, T) float32
    runs: list[tuple[int, int, int]]  # maximal runs of sequences of one slot: (start, end, slot)
    sampling_logprobs: torch.Tensor | None  # (N, T) float32; NaN rows: none recorded
    reference_logprobs: torch.Tensor | None  # (N, T) float32; NaN rows: engine computes them
    advantages: torch.Tensor | None  # (N,) float32


def slot_runs(slots: Sequence[int]) -> list[tuple[int, int, int]]:
    """Maximal runs of equal slots: [0, 0, 1, 1, 0] -> [(0, 2, 0), (2, 4, 1), (4, 5, 0)]."""
    runs: list[tuple[int, int, int]] = []
    for i, slot in enumerate(slots):
        if runs and runs[-1][2] == slot:
            runs[-1] = (runs[-1][0], i + 1, slot)
        else:
            runs.append((i, i + 1, slot))
    return runs


def _pad(
    rows: Sequence[Sequence[float]], length: int, value: float, dtype: torch.dtype
) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=dtype)  # (N, T)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=dtype)
    return out


def _rows_or_nan(
    sources: Sequence[tuple[Sequence[Sequence[float]] | None, int, int]],
) -> list[list[float]] | None:
    """Row r of each source (or NaNs of the row's length); None when no source has rows."""
    if all(values is None for values, _, _ in sources):
        return None
    nan = float("nan")
    return [list(values[r]) if values is not None else [nan] * n for values, r, n in sources]


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
    # Rows without recorded logprobs (another item of the pass has them) get NaN: the loss
    # then uses on-policy / engine-computed values for exactly those rows.
    samp = _rows_or_nan([(b.sampling_logprobs, r, len(b.input_ids[r])) for b, r in batches])
    refs = _rows_or_nan([(b.reference_logprobs, r, len(b.input_ids[r])) for b, r in batches])
    adv_rows = [advantages[i] for i, _ in plan.rows]
    adv = None
    if all(a is not None for a in adv_rows):
        adv = torch.stack([a[r] for a, (_, r) in zip(adv_rows, plan.rows, strict=True)])  # type: ignore[index]
    if all(b.is_pairwise for b, _ in batches):
        ids += [b.rejected_input_ids[r] for b, r in batches]  # type: ignore[index]
        masks += [b.rejected_loss_mask[r] for b, r in batches]  # type: ignore[index]
        slots += slots
        if refs is not None:
            rejected = [
                (b.rejected_reference_logprobs, r, len(b.rejected_input_ids[r]))  # type: ignore[index]
                for b, r in batches
            ]
            refs += _rows_or_nan(rejected) or []
    length = max(len(s) for s in ids)
    padded = any(len(s) != length for s in ids)
    attention = _pad([[1] * len(s) for s in ids], length, 0, torch.long) if padded else None

    def dev(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device, non_blocking=True)

    return PassTensors(
        input_ids=_pad(ids, length, pad_id, torch.long).to(device),
        attention_mask=dev(attention),
        loss_mask=_pad(masks, length, 0.0, torch.float32).to(device),
        runs=slot_runs(slots),
        sampling_logprobs=dev(None if samp is None else _pad(samp, length, 0.0, torch.float32)),
        reference_logprobs=dev(None if refs is None else _pad(refs, length, 0.0, torch.float32)),
        advantages=dev(adv),
    )
