"""MultiLoraLinear: every kernel path equals the per-row definition, values and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.config import LoraSettings
from trainer.lora import LoraRouting, MultiLoraLinear, init_lora_weights, matches_target

SCALES = [2.0, 0.5, 1.5]
CASES = {
    "one run": [(0, 6, 1)],
    "equal runs, slot order": [(0, 2, 0), (2, 4, 1), (4, 6, 2)],
    "equal runs, gathered slots": [(0, 2, 1), (2, 4, 0), (4, 6, 1)],  # e.g. DPO chosen|rejected
    "unequal runs": [(0, 1, 0), (1, 4, 2), (4, 6, 1)],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernels_match_per_row_definition(case: str) -> None:
    runs = CASES[case]
    gen = torch.Generator().manual_seed(0)
    f64 = torch.float64  # exact enough to compare summation orders tightly
    base = nn.Linear(8, 6).to(f64)
    base.requires_grad_(False)
    lora_a = torch.randn(3, 2, 8, generator=gen, dtype=f64, requires_grad=True)  # (S, r, in)
    lora_b = torch.randn(3, 6, 2, generator=gen, dtype=f64, requires_grad=True)  # (S, out, r)
    x = torch.randn(6, 4, 8, generator=gen, dtype=f64, requires_grad=True)  # (R, T, in)
    routing = LoraRouting()
    layer = MultiLoraLinear(base, "m", routing)
    routing.route({"m": (lora_a, lora_b)}, runs, SCALES)
    y = layer(x)
    grads = torch.autograd.grad(y.square().sum(), (lora_a, lora_b, x))
    routing.clear()
    torch.testing.assert_close(layer(x), base(x))  # cleared routing: base only

    rows = []
    for start, end, slot in runs:
        for r in range(start, end):
            delta = SCALES[slot] * (x[r] @ lora_a[slot].T) @ lora_b[slot].T  # (T, out)
            rows.append(base(x[r]) + delta)
    expected = torch.stack(rows)  # (R, T, out)
    expected_grads = torch.autograd.grad(expected.square().sum(), (lora_a, lora_b, x))
    torch.testing.assert_close(y, expected)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_targets_match_like_peft() -> None:
    assert matches_target("model.layers.0.self_attn.q_proj", ["q_proj"])
    assert matches_target("model.layers.0.self_attn.q_proj", ["self_attn.q_proj"])
    assert not matches_target("model.layers.0.self_attn.q_proj_extra", ["q_proj"])


def test_init_is_seeded_kaiming_a_and_zero_b() -> None:
    shapes = {"m1": (64, 32), "m2": (32, 64)}
    first = init_lora_weights(shapes, rank=4, seed=7)
    again = init_lora_weights(shapes, rank=4, seed=7)
    other = init_lora_weights(shapes, rank=4, seed=8)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["m1.lora_A"], other["m1.lora_A"])
    assert first["m1.lora_A"].shape == (4, 64) and first["m1.lora_B"].shape == (32, 4)
    assert not first["m1.lora_B"].any()
    bound = 1 / 64**0.5  # kaiming_uniform(a=sqrt 5) on fan_in 64, as PEFT and nn.Linear
    assert first["m1.lora_A"].abs().max() <= bound


def test_lora_settings_normalise_and_validate() -> None:
    assert LoraSettings(target_modules=("v_proj", "q_proj")) == LoraSettings(
        target_modules=("q_proj", "v_proj", "q_proj")
    )
    assert LoraSettings(rank=8, alpha=16).scale == 2.0
    with pytest.raises(ValueError):
        LoraSettings(rank=0)
