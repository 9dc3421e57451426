"""Batches: assistant-only masks from chat templates, validation, splitting and joining."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from trainer.batch import Batch, encode_chat
from trainer.errors import ChatTemplateError, InvalidBatchError

CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what is six times seven"},
    {"role": "assistant", "content": "calling the calculator"},
    {"role": "tool", "content": "42"},
    {"role": "assistant", "content": "the answer is 42"},
]


def _trained_text(tok: PreTrainedTokenizerFast, ids: list[int], mask: list[float]) -> str:
    return str(tok.decode([t for t, m in zip(ids, mask, strict=True) if m]))


def test_only_assistant_tokens_are_trained(tokenizer: PreTrainedTokenizerFast) -> None:
    ids, mask = encode_chat(tokenizer, CONVERSATION)
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    trained = _trained_text(tokenizer, ids, mask)
    assert trained == "calling the calculator<|im_end|>the answer is 42<|im_end|>"
    untrained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    for text in ("be brief", "six times seven", "42<|im_end|>", "<|im_start|>assistant"):
        assert text in untrained  # system, user, tool result and role headers stay at mask 0


def test_only_last_assistant(tokenizer: PreTrainedTokenizerFast) -> None:
    ids, mask = encode_chat(tokenizer, CONVERSATION, only_last_assistant=True)
    assert _trained_text(tokenizer, ids, mask) == "the answer is 42<|im_end|>"


def test_batch_from_chats(tokenizer: PreTrainedTokenizerFast) -> None:
    batch = Batch.from_chats(tokenizer, [CONVERSATION, CONVERSATION[:3]])
    batch.validate()
    assert len(batch) == 2 and len(batch.input_ids[1]) < len(batch.input_ids[0])


def test_template_that_rewrites_history_is_refused(tokenizer: PreTrainedTokenizerFast) -> None:
    # A template that shows only the last message: earlier turns vanish, no prefix property.
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = "{{ messages[-1]['content'] }}{% if add_generation_prompt %}>{% endif %}"
    with pytest.raises(ChatTemplateError):
        encode_chat(tok, CONVERSATION)


def test_validation_and_row_operations() -> None:
    batch = Batch(input_ids=[[1, 2, 3], [4, 5]], loss_mask=[[0, 1, 1], [0, 1]])
    batch.validate()
    with pytest.raises(InvalidBatchError):
        Batch(input_ids=[[1, 2, 3]], loss_mask=[[0, 1]]).validate()
    with pytest.raises(InvalidBatchError):
        Batch(input_ids=[[1, 2]], loss_mask=[[1, 1]]).validate()  # token 0 is never predicted
    with pytest.raises(InvalidBatchError):
        batch.with_fields(advantages=[1.0]).validate()
    with pytest.raises(InvalidBatchError):
        batch.with_fields(rejected_input_ids=[[1, 2], [3, 4]]).validate()  # no rejected mask
    assert Batch.concat([batch.select([1]), batch.select([0])]).input_ids == [[4, 5], [1, 2, 3]]
    padded = Batch.from_tensors(
        torch.tensor([[1, 2, 3], [4, 5, 0]]),
        torch.tensor([[0, 1, 1], [0, 1, 0]]),
        torch.tensor([[1, 1, 1], [1, 1, 0]]),
    )
    assert padded.input_ids == batch.input_ids and padded.loss_mask == batch.loss_mask
