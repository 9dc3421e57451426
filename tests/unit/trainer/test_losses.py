"""Each loss against numbers computed by hand on tiny examples, masks and clipping included."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import (
    dpo_loss,
    group_advantages,
    kl_k3,
    policy_gradient_loss,
    sft_loss,
    token_logprobs,
)


def test_token_logprobs_are_aligned_with_inputs() -> None:
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, 5.0]]])  # (1, 3, V=2)
    ids = torch.tensor([[1, 0, 1]])
    logp = token_logprobs(logits, ids)
    # token 0: no prediction; token 1 (=0) from uniform: log 1/2; token 2 (=1) from [3:1]: log 1/4
    assert torch.allclose(logp, torch.tensor([[0.0, math.log(0.5), math.log(0.25)]]))


def test_sft_sums_masked_tokens_only() -> None:
    logp = torch.tensor([[0.0, -1.0, -2.0, -3.0], [0.0, -5.0, -0.5, -9.0]])
    mask = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    terms = sft_loss(logp, mask)
    assert terms.loss.tolist() == [5.0, 5.0]
    assert terms.units.tolist() == [2.0, 1.0]
    assert terms.metrics["nll"].tolist() == [2.5, 5.0]


def test_dpo_matches_rafailov_eq7() -> None:
    # Chosen: policy -1 (two tokens -0.5 each), ref -2; rejected: policy -3, ref -2; beta 0.5.
    pi_w = torch.tensor([[0.0, -0.5, -0.5, -7.0]], requires_grad=True)
    mask_w = torch.tensor([[0.0, 1.0, 1.0, 0.0]])  # the -7 is prompt, masked out
    pi_l = torch.tensor([[0.0, -3.0, 0.0, 0.0]], requires_grad=True)
    mask_l = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    ref_w = torch.tensor([[0.0, -1.0, -1.0, -100.0]])
    ref_l = torch.tensor([[0.0, -2.0, -50.0, 0.0]])
    terms = dpo_loss(pi_w, mask_w, pi_l, mask_l, ref_w, ref_l, beta=0.5)
    # margin = 0.5 * ((-1 + 2) - (-3 + 2)) = 1; loss = -log sigmoid(1) = log(1 + e^-1)
    assert terms.loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)
    assert terms.metrics["reward_margin"].item() == pytest.approx(1.0)
    assert terms.metrics["accuracy"].item() == 1.0
    assert terms.units.tolist() == [1.0]
    terms.loss.sum().backward()
    # d loss / d pi_w_t = -beta * sigmoid(-margin) on masked tokens, 0 elsewhere
    g = -0.5 * (1 - 1 / (1 + math.exp(-1.0)))
    assert pi_w.grad is not None and pi_l.grad is not None
    assert torch.allclose(pi_w.grad, torch.tensor([[0.0, g, g, 0.0]]), atol=1e-6)
    assert torch.allclose(pi_l.grad, torch.tensor([[0.0, -g, 0.0, 0.0]]), atol=1e-6)


def test_pg_clipping_follows_ppo_eq7() -> None:
    eps = 0.2
    # token ratios 1.5, 0.5, 0.5, 1.0 (the last is masked with an absurd sampling logprob)
    logp = torch.log(torch.tensor([[0.1, 0.3, 0.1, 0.1, 0.2]])).requires_grad_(True)
    samp = torch.log(torch.tensor([[0.1, 0.2, 0.2, 0.2, 1e-30]]))
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]])
    for adv, expected, grads in [
        # A > 0: ratio 1.5 clipped to 1.2 (no gradient); ratio 0.5 kept (gradient -A * ratio)
        (1.0, [-1.2, -0.5, -0.5], [0.0, -0.5, -0.5]),
        # A < 0: ratio 1.5 kept; ratio 0.5 clipped to 0.8 (no gradient)
        (-1.0, [1.5, 0.8, 0.8], [1.5, 0.0, 0.0]),
    ]:
        logp.grad = None
        terms = policy_gradient_loss(
            logp, samp, torch.tensor([adv]), mask, clip_low=eps, clip_high=eps
        )
        assert terms.loss.item() == pytest.approx(sum(expected), abs=1e-5)
        assert terms.units.tolist() == [3.0]
        assert terms.metrics["clip_fraction"].item() == pytest.approx(
            sum(g == 0.0 for g in grads) / 3
        )
        terms.loss.sum().backward()
        assert logp.grad is not None
        assert torch.allclose(logp.grad[0, 1:4], torch.tensor(grads), atol=1e-5)
        assert logp.grad[0, 0] == 0 and logp.grad[0, 4] == 0  # masked: no gradient, no NaN


def test_pg_asymmetric_clip_and_sequence_normalisation() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.13, 0.13], [0.5, 0.1, 0.1]]))
    samp = torch.log(torch.tensor([[0.5, 0.1, 0.1], [0.5, 0.1, 0.1]]))
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    adv = torch.tensor([2.0, 1.0])
    # ratio 1.3 in row 0 clipped at 1 + 0.28 (clip-higher), row 1 ratio 1
    terms = policy_gradient_loss(
        logp, samp, adv, mask, clip_low=0.2, clip_high=0.28, normalize="sequences"
    )
    assert terms.loss.tolist() == pytest.approx([-2 * 1.28, -1.0], abs=1e-5)
    assert terms.units.tolist() == [1.0, 1.0]


def test_kl_penalty_k3() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.log(torch.tensor([[0.5, 0.5]]))
    # k3 = r - log r - 1 with r = ref / pi: 0 for equal, 2 - log 2 - 1 for ratio 2
    assert torch.allclose(kl_k3(logp, ref), torch.tensor([[0.0, 1.0 - math.log(2.0)]]))
    mask = torch.tensor([[0.0, 1.0]])
    terms = policy_gradient_loss(
        logp,
        logp,
        torch.tensor([0.0]),
        mask,
        clip_low=0.2,
        clip_high=0.2,
        ref_logprobs=ref,
        kl_coef=0.1,
    )
    assert terms.loss.item() == pytest.approx(0.1 * (1.0 - math.log(2.0)), abs=1e-6)


def test_group_advantages_grpo_and_rloo() -> None:
    rewards = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    rloo = group_advantages(rewards, 4, "rloo")
    # r_i - mean of the other three
    assert rloo.tolist() == pytest.approx(
        [1 - 1 / 3, -2 / 3, -2 / 3, 1 - 1 / 3, 1 - 2 / 3, 1 - 2 / 3, 1 - 2 / 3, -1.0], abs=1e-6
    )
    grpo = group_advantages(rewards, 4, "grpo")
    std1 = math.sqrt(4 * 0.25 / 3)  # unbiased std of [1, 0, 0, 1]
    std2 = math.sqrt((3 * 0.0625 + 0.5625) / 3)  # of [1, 1, 1, 0], mean 0.75
    expected = [0.5 / std1, -0.5 / std1, -0.5 / std1, 0.5 / std1]
    assert grpo[:4].tolist() == pytest.approx(expected, abs=1e-5)
    assert grpo[7].item() == pytest.approx(-0.75 / std2, abs=1e-5)
    flat = group_advantages([2.0, 2.0], 2, "grpo")
    assert flat.tolist() == [0.0, 0.0]  # equal rewards: no signal, no division by zero
    with pytest.raises(ValueError):
        group_advantages([1.0, 2.0, 3.0], 2, "grpo")
