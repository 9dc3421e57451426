"""Training rows of one adapter: token ids, loss masks and the per-row/per-token RL fields.

Every per-token list is aligned with `input_ids`: entry t describes token t as predicted from
tokens < t (the convention of vLLM's prompt logprobs), so entry 0 is never trained and is 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from trainer.errors import ChatTemplateError, InvalidBatchError

TokenRows = list[list[int]]
FloatRows = list[list[float]]


@dataclass
class Batch:
    """Rows of one adapter's training data (for DPO, one row is a chosen/rejected pair)."""

    input_ids: TokenRows
    """Token ids per row: prompt and completion, unpadded."""
    loss_mask: FloatRows
    """Per token: 1.0 on tokens to train (assistant tokens only), 0.0 elsewhere (weights allowed)."""
    advantages: list[float] | None = None
    """Policy gradient: one advantage per row (see `losses.group_advantages`)."""
    rewards: list[float] | None = None
    """Policy gradient: one reward per row, turned into advantages when `advantages` is None."""
    sampling_logprobs: FloatRows | None = None
    """Policy gradient: per token, the logprob under the policy that sampled it (serving/rollout)."""
    reference_logprobs: FloatRows | None = None
    """DPO / KL: per token logprobs of the reference; None lets the engine compute them."""
    rejected_input_ids: TokenRows | None = None
    """DPO: the rejected completion of each pair (`input_ids` holds the chosen one)."""
    rejected_loss_mask: FloatRows | None = None
    """DPO: loss mask of the rejected rows."""
    rejected_reference_logprobs: FloatRows | None = None
    """DPO: reference logprobs of the rejected rows; None lets the engine compute them."""

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def is_pairwise(self) -> bool:
        """True for DPO batches, whose rows are chosen/rejected pairs."""
        return self.rejected_input_ids is not None

    def sequences_per_row(self) -> int:
        """How many sequences one row puts through the model (2 for a preference pair)."""
        return 2 if self.is_pairwise else 1

    def row_length(self, i: int) -> int:
        """Longest sequence of row i (the padded length it needs in a pass)."""
        n = len(self.input_ids[i])
        if self.rejected_input_ids is not None:
            n = max(n, len(self.rejected_input_ids[i]))
        return n

    def select(self, rows: Sequence[int]) -> Batch:
        """The sub-batch of the given rows (used to split work across passes)."""
        picked: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            picked[f.name] = None if value is None else [value[i] for i in rows]
        return Batch(**picked)

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """One batch holding the rows of all given batches, in order."""
        if not batches:
            raise InvalidBatchError("cannot concatenate zero batches")
        merged: dict[str, Any] = {}
        for f in fields(Batch):
            values = [getattr(b, f.name) for b in batches]
            if all(v is None for v in values):
                merged[f.name] = None
            elif any(v is None for v in values):
                raise InvalidBatchError(f"field {f.name} is set on some batches only")
            else:
                merged[f.name] = [x for v in values for x in v]
        return Batch(**merged)

    def validate(self) -> None:
        """Raise `InvalidBatchError` when lengths or alignments disagree."""
        n = len(self.input_ids)
        if n == 0:
            raise InvalidBatchError("batch has no rows")
        _check_aligned("loss_mask", self.input_ids, self.loss_mask)
        for name in ("advantages", "rewards"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise InvalidBatchError(f"{name} has {len(value)} entries for {n} rows")
        for name in ("sampling_logprobs", "reference_logprobs"):
            value = getattr(self, name)
            if value is not None:
                _check_aligned(name, self.input_ids, value)
        if self.rejected_input_ids is not None:
            if self.rejected_loss_mask is None:
                raise InvalidBatchError("rejected_input_ids needs rejected_loss_mask")
            if len(self.rejected_input_ids) != n:
                raise InvalidBatchError("chosen and rejected rows differ in number")
            _check_aligned("rejected_loss_mask", self.rejected_input_ids, self.rejected_loss_mask)
            if self.rejected_reference_logprobs is not None:
                _check_aligned(
                    "rejected_reference_logprobs",
                    self.rejected_input_ids,
                    self.rejected_reference_logprobs,
                )
            if (self.reference_logprobs is None) != (self.rejected_reference_logprobs is None):
                raise InvalidBatchError("give reference logprobs for both chosen and rejected")
        pairs = zip(self.rejected_input_ids or [], self.rejected_loss_mask or [], strict=True)
        for row, mask in [*zip(self.input_ids, self.loss_mask, strict=True), *pairs]:
            if len(row) < 2:
                raise InvalidBatchError("every row needs at least two tokens")
            if mask[0] != 0:
                raise InvalidBatchError(
                    "loss_mask[0] must be 0: the first token is never predicted"
                )

    @classmethod
    def from_tensors(
        cls, input_ids: torch.Tensor, loss_mask: torch.Tensor, attention_mask: torch.Tensor
    ) -> Batch:
        """A batch from right-padded tensors (R, T); padding is dropped via attention_mask."""
        lengths = attention_mask.sum(dim=1).tolist()  # (R,)
        ids = [row[: int(n)].tolist() for row, n in zip(input_ids, lengths, strict=True)]
        mask = [row[: int(n)].float().tolist() for row, n in zip(loss_mask, lengths, strict=True)]
        return cls(input_ids=ids, loss_mask=mask)

    @classmethod
    def from_chats(
        cls,
        tokenizer: Any,
        conversations: Sequence[Sequence[Mapping[str, Any]]],
        *,
        tools: list[dict[str, Any]] | None = None,
        only_last_assistant: bool = False,
    ) -> Batch:
        """An SFT batch from chat conversations, training on assistant tokens only."""
        rows = [
            encode_chat(tokenizer, conv, tools=tools, only_last_assistant=only_last_assistant)
            for conv in conversations
        ]
        return cls(input_ids=[r[0] for r in rows], loss_mask=[r[1] for r in rows])

    def with_fields(self, **changes: Any) -> Batch:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def _check_aligned(name: str, ids: TokenRows, values: Sequence[Sequence[float]]) -> None:
    if len(values) != len(ids):
        raise InvalidBatchError(f"{name} has {len(values)} rows for {len(ids)} rows of tokens")
    for i, (row, v) in enumerate(zip(ids, values, strict=True)):
        if len(v) != len(row):
            raise InvalidBatchError(f"{name}[{i}] has {len(v)} entries for {len(row)} tokens")


def _render(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Any, gen: bool
) -> list[int]:
    text = tokenizer.apply_chat_template(
        list(messages), tools=tools, tokenize=False, add_generation_prompt=gen
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_chat(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    only_last_assistant: bool = False,
) -> tuple[list[int], list[float]]:
    """Token ids of a conversation and a mask that is 1 on assistant tokens only.

    Renders incrementally: the tokens an assistant message adds beyond the prompt the template
    produces with `add_generation_prompt=True` are that message's tokens (its content, tool calls
    and end-of-turn token, up to the tokenizer's eos). User text, system text and tool results
    stay at mask 0.
    """
    full = _render(tokenizer, messages, tools, gen=False)
    mask = [0.0] * len(full)
    assistant_at = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if only_last_assistant:
        assistant_at = assistant_at[-1:]
    for i in assistant_at:
        prompt = _render(tokenizer, messages[:i], tools, gen=True)
        upto = _render(tokenizer, messages[: i + 1], tools, gen=False)
        if upto[: len(prompt)] != prompt or full[: len(upto)] != upto:
            raise ChatTemplateError(
                "the chat template does not render prefix-consistently (it rewrites earlier "
                "turns); assistant tokens cannot be located"
            )
        end = len(upto)
        # Stop after the end-of-turn token: what the template adds behind it (a newline) is
        # never sampled, so it is not trained either.
        eos = getattr(tokenizer, "eos_token_id", None)
        span = upto[len(prompt) :]
        if eos is not None and eos in span:
            end = len(prompt) + len(span) - span[::-1].index(eos)
        for t in range(len(prompt), end):
            mask[t] = 1.0
    if mask and mask[0] != 0.0:
        raise ChatTemplateError("the rendered conversation starts with an assistant token")
    return full, mask
