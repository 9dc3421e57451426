"""The language-model head in chunks of positions: no pass ever holds (tokens x vocab) logits.

A real vocabulary makes the head the biggest tensor of a pass: at Qwen3's 151,936 tokens one
position's fp32 logits take 0.6 MB, and the whole-pass logits plus their fp32 copies (log-softmax,
the greedy margin's scatter, the KL's two distributions) grew the trainer by 2.3 MB a token. Here
every quantity a loss reads from the head is computed from the decoder's last hidden states a
chunk of positions at a time, and no chunk's logits outlive it (the idea behind fused linear
cross-entropy, Wijmans et al. 2024 "Cut Your Losses in Large-Vocabulary Language Models").

Each differentiable quantity is one number per position that depends on that position's hidden
state only, so its gradient is one hidden-sized vector per position: `_PerPosition` computes
it in the forward pass, chunk by chunk, while the chunk's logits are at hand, and keeps only
that (positions x hidden) tensor; the backward pass scales it by the incoming gradient. Two
matrix products with the head per chunk, as the whole-pass computation makes (recomputing the
logits in the backward pass, activation checkpointing, made three). Where the head's own
weight or bias trains, chunks fall back to checkpointing.

- `token_logprobs`: log p(x_t | x_<t) at the positions a loss reads (differentiable);
- `greedy_margin`: how surely greedy decoding gives each target (no gradient);
- `forward_kl`: KL(reference || policy) over the whole vocabulary at each trained position,
  the reference's hidden states coming from a pass without gradient (differentiable).

Results equal the whole-pass computation to float tolerance (`tests/unit/trainer/test_head.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK_BYTES = 256 * 2**20
"""fp32 logits one chunk may hold (with their log-softmax and gradient, about three times this
while the chunk is computed; nothing of it is kept for the backward pass)."""


class LMHead:
    """The output projection of a causal LM, applied in chunks of positions."""

    def __init__(self, head: nn.Module, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self.weight: torch.Tensor = head.get_parameter("weight")  # (V, H)
        self.bias: torch.Tensor | None = getattr(head, "bias", None)
        self.vocab = int(self.weight.shape[0])
        self.chunk = max(1, int(chunk_bytes) // (4 * self.vocab))
        """Positions per chunk."""

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight, self.bias).float()  # (M, V)

    def _per_position(
        self,
        value_of_logits: Callable[..., torch.Tensor],
        grad_of_logits: Callable[..., tuple[torch.Tensor, torch.Tensor]],
        hidden: torch.Tensor,
        *extras: torch.Tensor,
    ) -> torch.Tensor:
        """A value per position from the logits at ``hidden`` (M, H), over chunks of
        positions: ``value_of_logits(logits, *extras) -> (M,)``, differentiable, and
        ``grad_of_logits(logits, *extras) -> (value, d value / d logits)``, the same value
        with its gradient in the logits. Differentiable in ``hidden`` when it requires grad."""
        grad = torch.is_grad_enabled() and hidden.requires_grad
        trains = self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad)
        if not grad or trains or hidden.shape[0] == 0:
            return self._chunked(
                lambda h, *e: value_of_logits(self._logits(h), *e), hidden, *extras
            )
        out: torch.Tensor = _PerPosition.apply(self, grad_of_logits, hidden, *extras)
        return out

    def _chunked(self, fn, *tensors: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
        """``fn`` over chunks of the positions of ``tensors`` (first dimension), concatenated;
        with gradient, each chunk's activations are recomputed in the backward pass."""
        m = tensors[0].shape[0]
        if m == 0:
            return torch.zeros(0, device=tensors[0].device)
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        parts = []
        for start in range(0, m, self.chunk):
            piece = [t[start : start + self.chunk] for t in tensors]
            if grad:
                parts.append(checkpoint(fn, *piece, use_reentrant=False))
            else:
                parts.append(fn(*piece))
        return torch.cat(parts)

    def token_logprobs(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Log-probability of each input token given the tokens before it, aligned with
        input_ids (token 0: 0). With ``mask`` only the masked positions are computed (0
        elsewhere): what every loss reads."""
        # hidden: (N, T, H); input_ids, mask: (N, T)
        n, t = input_ids.shape
        wanted = torch.ones(n, t - 1, dtype=torch.bool, device=input_ids.device)
        if mask is not None:
            wanted = mask[:, 1:] > 0  # (N, T-1): position t predicts token t + 1
        at = wanted.nonzero(as_tuple=True)
        picked = self._per_position(  # (M,)
            _logprob, _logprob_and_grad, hidden[:, :-1][at], input_ids[:, 1:][at]
        )
        out = torch.zeros(n, t - 1, dtype=torch.float32, device=hidden.device)
        out = out.index_put(at, picked)  # (N, T-1)
        return F.pad(out, (1, 0))  # (N, T)

    def token_logprobs_and_margin(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`token_logprobs` at the masked positions and `greedy_margin`, the margin read from
        the same projection of each chunk where the gradient is taken in the forward pass (an
        SFT pass then projects each position once, as the whole-pass computation did)."""
        gaps: list[torch.Tensor] = []

        def with_gap(
            logits: torch.Tensor, targets: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            gaps.append(_gap(logits, targets))
            return _logprob_and_grad(logits, targets)

        wanted = mask[:, 1:] > 0  # (N, T-1)
        at = wanted.nonzero(as_tuple=True)
        picked = self._per_position(  # (M,)
            _logprob, with_gap, hidden[:, :-1][at], input_ids[:, 1:][at]
        )
        out = torch.zeros(wanted.shape, dtype=torch.float32, device=hidden.device)
        logp = F.pad(out.index_put(at, picked), (1, 0))  # (N, T)
        if not gaps and picked.numel():  # the gradient was not taken in the forward pass
            return logp, self.greedy_margin(hidden, input_ids, mask)
        margin = torch.full(wanted.shape, float("inf"), device=hidden.device)  # (N, T-1)
        if gaps:
            margin = margin.index_put(at, torch.cat(gaps))
        return logp, margin.amin(dim=1)  # (N, T), (N,)

    def greedy_margin(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Smallest margin, over each row's masked tokens, by which the token is the argmax:
        min_t [logit(x_t) - max_{v != x_t} logit(v)]; +inf for a row without targets."""
        # hidden: (N, T, H); input_ids, mask: (N, T)
        wanted = mask[:, 1:] > 0  # (N, T-1)
        at = wanted.nonzero(as_tuple=True)

        def gap(h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return _gap(self._logits(h), targets)

        with torch.no_grad():
            gaps = self._chunked(gap, hidden[:, :-1][at].detach(), input_ids[:, 1:][at])
        out = torch.full(wanted.shape, float("inf"), device=hidden.device)  # (N, T-1)
        out = out.index_put(at, gaps)
        return out.amin(dim=1)  # (N,)

    def forward_kl(self, hidden: torch.Tensor, ref_hidden: torch.Tensor) -> torch.Tensor:
        """KL(ref || pi) over the vocabulary at each of M positions, from the policy's and
        the reference's hidden states there (both (M, H)); (M,)."""

        def kl(logits: torch.Tensor, ref_h: torch.Tensor) -> torch.Tensor:
            logp = torch.log_softmax(logits, dim=-1)  # (M, V)
            ref_logp = torch.log_softmax(self._logits(ref_h), dim=-1)  # (M, V)
            return (ref_logp.exp() * (ref_logp - logp)).sum(dim=-1)  # (M,)

        def kl_and_grad(
            logits: torch.Tensor, ref_h: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            logp = torch.log_softmax(logits, dim=-1)  # (M, V)
            ref_logp = torch.log_softmax(self._logits(ref_h), dim=-1)  # (M, V)
            ref_p = ref_logp.exp()
            value = (ref_p * (ref_logp - logp)).sum(dim=-1)  # (M,)
            del ref_logp
            return value, logp.exp_().sub_(ref_p)  # d KL / d logits = pi - ref, in place

        return self._per_position(kl, kl_and_grad, hidden, ref_hidden.detach())


def _gap(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How far each target's logit is above the best other token's (M,): negative where
    greedy decoding picks another token."""
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (M,)
    if logits.shape[-1] < 2:  # no other token: greedy always gives the target
        return torch.full_like(picked, float("inf")).detach()
    top = logits.topk(2, dim=-1)  # (M, 2): the best, and the best after it
    rival = torch.where(top.indices[:, 0] == targets, top.values[:, 1], top.values[:, 0])
    return (picked - rival).detach()


def _logprob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position (M,)."""
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (M,)
    return picked - torch.logsumexp(logits, dim=-1)


def _logprob_and_grad(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) at each position, and its gradient in the logits: onehot - softmax."""
    logp = torch.log_softmax(logits, dim=-1)  # (M, V)
    value = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (M,)
    grad = logp.exp_().neg_()  # (M, V): -softmax, in place of logp
    grad.scatter_add_(-1, targets.unsqueeze(-1), torch.ones_like(value).unsqueeze(-1))
    return value, grad


class _PerPosition(torch.autograd.Function):
    """A value per position from the head's logits, whose gradient in the position's hidden
    state, ``d value / d logits @ W``, is computed in the forward pass a chunk at a time."""

    @staticmethod
    def forward(
        ctx, head: LMHead, grad_of_logits, hidden: torch.Tensor, *extras: torch.Tensor
    ) -> torch.Tensor:  # type: ignore[no-untyped-def, override]
        values, grads = [], []
        with torch.no_grad():
            for start in range(0, hidden.shape[0], head.chunk):
                stop = start + head.chunk
                piece = [e[start:stop] for e in extras]
                value, d_logits = grad_of_logits(head._logits(hidden[start:stop]), *piece)
                values.append(value)
                grads.append(d_logits.to(head.weight.dtype) @ head.weight)  # (m, H)
                del d_logits
        ctx.save_for_backward(torch.cat(grads).to(hidden.dtype))
        ctx.extras = len(extras)
        return torch.cat(values)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[no-untyped-def, override]
        (d_hidden,) = ctx.saved_tensors
        grad = (grad_out.unsqueeze(-1).float() * d_hidden.float()).to(d_hidden.dtype)
        return (None, None, grad) + (None,) * ctx.extras
