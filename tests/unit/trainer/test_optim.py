"""The per-adapter AdamW equals torch.optim.AdamW for one adapter; clipping equals torch's."""

from __future__ import annotations

import pytest
import torch

from trainer.optim import AdamWParams, adamw_step_, clip_grads_, global_grad_norm


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_torch(weight_decay: float) -> None:
    """Bit-identical to torch.optim.AdamW (foreach=False) over five steps, moments included."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 8), (16, 4), (3,)]
    ours = [torch.randn(s, generator=gen) for s in shapes]
    ref = [p.clone().requires_grad_(True) for p in ours]
    opt = torch.optim.AdamW(
        ref, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay, foreach=False
    )
    m = [torch.zeros_like(p) for p in ours]
    v = [torch.zeros_like(p) for p in ours]
    hp = AdamWParams(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay)
    for step in range(1, 6):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for p, g in zip(ref, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        adamw_step_(ours, [g.clone() for g in grads], m, v, step, hp)
        for a, b in zip(ours, ref, strict=True):
            torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
    for i, p in enumerate(ref):
        torch.testing.assert_close(m[i], opt.state[p]["exp_avg"], rtol=0, atol=0)
        torch.testing.assert_close(v[i], opt.state[p]["exp_avg_sq"], rtol=0, atol=0)


def test_clip_matches_clip_grad_norm() -> None:
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(5, 5, requires_grad=True), torch.randn(7, requires_grad=True)]
    grads = [10 * torch.randn(p.shape, generator=gen) for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
    mine = [g.clone() for g in grads]
    norm = global_grad_norm(mine)
    clip_grads_(mine, norm, 1.0)
    torch.testing.assert_close(norm, expected_norm)
    for p, g in zip(params, mine, strict=True):
        torch.testing.assert_close(g, p.grad)
