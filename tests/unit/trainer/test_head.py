"""The LM head in chunks of positions equals the whole-pass computation, values and gradients,
for every loss kind, alone and multiplexed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers.tiny import (
    SMALL_LORA,
    VOCAB,
    dpo_batch,
    pg_batch,
    random_batch,
    write_random_parent,
)
from trainer.config import TrainerConfig
from trainer.engine import TrainingEngine
from trainer.head import LMHead
from trainer.losses import LossSpec, distribution_kl, greedy_margin, token_logprobs


def _head(
    vocab: int, hidden: int, chunk_positions: int, trains: bool = False
) -> tuple[nn.Linear, LMHead]:
    torch.manual_seed(0)
    linear = nn.Linear(hidden, vocab, bias=False).requires_grad_(trains)
    return linear, LMHead(linear, chunk_bytes=chunk_positions * 4 * vocab)


@pytest.mark.parametrize("head_trains", [False, True], ids=["frozen head", "head trains"])
def test_chunked_logprobs_margin_and_kl_equal_the_whole_computation(head_trains: bool) -> None:
    """With the head frozen (as under LoRA) each position's gradient is computed in the
    forward pass; where the head's weight trains, chunks are recomputed (checkpointing)."""
    linear, head = _head(vocab=97, hidden=16, chunk_positions=3, trains=head_trains)
    assert head.chunk == 3
    hidden = torch.randn(2, 9, 16, requires_grad=True)  # (N, T, H)
    ids = torch.randint(0, 97, (2, 9))
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1, 1, 1]]).float()

    whole = token_logprobs(linear(hidden), ids)  # (N, T)
    chunked = head.token_logprobs(hidden, ids, mask)
    torch.testing.assert_close(chunked * mask, whole * mask)  # equal where a loss reads
    assert torch.equal(chunked * (1 - mask), torch.zeros_like(chunked))  # nothing elsewhere
    torch.testing.assert_close(head.token_logprobs(hidden, ids), whole)  # every position
    (g_whole,) = torch.autograd.grad((whole * mask).sum(), hidden)
    (g_chunk,) = torch.autograd.grad((chunked * mask).sum(), hidden)
    torch.testing.assert_close(g_chunk, g_whole)

    torch.testing.assert_close(
        head.greedy_margin(hidden, ids, mask), greedy_margin(linear(hidden), ids, mask)
    )
    assert head.greedy_margin(hidden, ids, torch.zeros_like(mask)).isinf().all()
    # Both from one projection of each chunk (the SFT pass), equal to the two apart.
    logp, margin = head.token_logprobs_and_margin(hidden, ids, mask)
    torch.testing.assert_close(logp * mask, whole * mask)
    torch.testing.assert_close(margin, greedy_margin(linear(hidden), ids, mask))
    (g_both,) = torch.autograd.grad((logp * mask).sum(), hidden)
    torch.testing.assert_close(g_both, g_chunk)
    tie = torch.zeros(1, 2, 16, requires_grad=True)  # every logit equal: greedy is a tie
    assert head.token_logprobs_and_margin(tie, ids[:1, :2], mask[:1, :2] + 1)[1].item() == 0.0

    ref = torch.randn(7, 16)
    at = hidden[0, :7]
    rows = torch.zeros(7, dtype=torch.long)
    whole_kl = distribution_kl(linear(at), linear(ref), rows, 1).loss
    chunked_kl = head.forward_kl(at, ref).sum()
    torch.testing.assert_close(chunked_kl, whole_kl[0])
    (g_whole,) = torch.autograd.grad(whole_kl.sum(), hidden)
    (g_chunk,) = torch.autograd.grad(chunked_kl, hidden)
    torch.testing.assert_close(g_chunk, g_whole)


def _engine(tiny_model_dir: Path, chunk_bytes: int) -> TrainingEngine:
    cfg = TrainerConfig(
        base_model_dir=tiny_model_dir, max_tokens_per_pass=4096, logit_chunk_bytes=chunk_bytes
    )
    return TrainingEngine(device="cpu", config=cfg)


@pytest.mark.parametrize("kind", ["sft", "dpo", "pg", "kl"])
def test_every_loss_kind_trains_the_same_in_chunks(
    tiny_model_dir: Path, tmp_path: Path, kind: str
) -> None:
    """Two adapters multiplexed in one pass: losses, gradients and the SFT margin are the
    same with 2 positions a chunk as with the whole pass in one."""
    batches = {
        "sft": random_batch(1, rows=3),
        "dpo": dpo_batch(4),
        "pg": pg_batch(2).with_fields(rewards=None, advantages=[1.0, -0.5, 0.25, -1.0]),
        "kl": random_batch(5, rows=3, length=12),
    }
    # KL to the base model (the parent would be the adapter itself: zero KL, zero gradient).
    spec = LossSpec(
        kind=kind,  # type: ignore[arg-type]
        kl_coef=0.1 if kind == "pg" else 0.0,
        reference="base" if kind == "kl" else "parent",
    )
    seen = {}
    for label, chunk_bytes in (("whole", 2**40), ("chunked", 2 * 4 * VOCAB)):
        engine = _engine(tiny_model_dir, chunk_bytes)
        if label == "chunked":
            assert engine.head.chunk == 2  # several chunks a row
        for i, adapter in enumerate(("a", "b")):
            parent = write_random_parent(engine, tmp_path / f"{label}-{adapter}", SMALL_LORA, i)
            engine.create_adapter(adapter, parent_dir=parent)
        rows = engine.forward_backward([("a", batches[kind]), ("b", batches[kind])], spec)
        seen[label] = (
            [r.loss for item in rows for r in item],
            [r.extra.get("margin") for item in rows for r in item],
            [engine.store.get(a).flat["grad"].clone() for a in ("a", "b")],
        )
    (loss_w, margin_w, grad_w), (loss_c, margin_c, grad_c) = seen["whole"], seen["chunked"]
    assert loss_c == pytest.approx(loss_w, rel=1e-5, abs=1e-6)
    if kind == "sft":
        assert margin_c == pytest.approx(margin_w, rel=1e-5, abs=1e-6)
    for w, c in zip(grad_w, grad_c, strict=True):
        assert w.abs().sum() > 0
        torch.testing.assert_close(c, w, rtol=1e-4, atol=1e-6)


def test_one_token_vocabulary_has_an_infinite_margin_and_a_bias_that_trains_is_checkpointed() -> (
    None
):
    linear, head = _head(vocab=1, hidden=4, chunk_positions=2)
    hidden = torch.randn(1, 3, 4, requires_grad=True)
    ids, mask = torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3)
    logp, margin = head.token_logprobs_and_margin(hidden, ids, mask)
    assert margin.isinf().all() and torch.equal(logp, torch.zeros(1, 3))
    biased = nn.Linear(4, 5)
    biased.weight.requires_grad_(False)  # the bias alone trains: its gradient must arrive
    chunked = LMHead(biased, chunk_bytes=2 * 4 * 5)
    chunked.token_logprobs(hidden, torch.tensor([[1, 2, 3]]), mask).sum().backward()
    assert biased.bias.grad is not None and biased.bias.grad.abs().sum() > 0
