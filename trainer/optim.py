"""AdamW over one adapter's fp32 master weights, with that adapter's own step count.

Keeping one optimiser state (moments *and* step count) per adapter matters: a shared optimiser
over stacked per-adapter tensors applies weight decay and stale moments to adapters that had no
rows and shares one bias-correction step, which drifted 1.9e-3 from sequential training within
three rounds in the prototype (issue 5). Here an adapter that takes no step is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AdamWParams:
    """Hyper-parameters of one AdamW update."""

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0


def global_grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm over all gradient tensors together (a 0-dim fp32 tensor)."""
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads, 2)
    return torch.linalg.vector_norm(torch.stack(norms), 2)


def clip_grads_(grads: list[torch.Tensor], total_norm: torch.Tensor, max_norm: float) -> None:
    """Scale gradients in place so their total norm is at most max_norm (as clip_grad_norm_)."""
    coef = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    torch._foreach_mul_(grads, coef)


def adamw_step_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    step: int,
    hp: AdamWParams,
) -> None:
    """One in-place AdamW update; `step` is the adapter's step count after this update (>= 1).

    Same arithmetic as `torch.optim.AdamW` (Loshchilov & Hutter 2019, algorithm 2 with
    decoupled weight decay), written with foreach ops.
    """
    beta1, beta2 = hp.betas
    if hp.weight_decay != 0:
        torch._foreach_mul_(params, 1 - hp.lr * hp.weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)  # m = b1 m + (1 - b1) g
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)  # v = b2 v + (1 - b2) g^2
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    step_size = hp.lr / bias_correction1
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias_correction2_sqrt)
    torch._foreach_add_(denom, hp.eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, -step_size)  # p -= lr_t m / (sqrt v + eps)
