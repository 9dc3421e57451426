"""Multi-LoRA linear layers: each row of a pass goes through its own adapter's A and B.

PEFT's injected layers hold one active adapter for the whole batch, so they cannot mix tenants
in one backward. `MultiLoraLinear` wraps a frozen `nn.Linear` and reads the stacked weights of
the current pass from a shared `LoraRouting`:

    y[r] = W x[r] + b + scale[r] * B[slot[r]] (A[slot[r]] x[r])

with A stacked as (S, rank, in) and B as (S, out, rank) for the S adapters of the pass. The
LoRA term is added to the base output in the same call (`addmm` / `baddbmm`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LoraRouting:
    """The adapters of the current pass: stacked weights per module and the slot of each row."""

    stacks: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    """Module name -> (A (S, rank, in), B (S, out, rank)); modules absent here run base only."""
    row_slot: torch.Tensor | None = None  # (R,) long: which stacked adapter each row uses
    row_scale: torch.Tensor | None = None  # (R, 1, 1): alpha / rank of each row's adapter
    single_scale: float = 1.0
    """alpha / rank when the pass holds exactly one adapter (then row_slot is unused)."""
    dropout: float = 0.0
    """Dropout on the LoRA input, applied only while `training` is True."""
    training: bool = False

    def clear(self) -> None:
        """Back to the base model: no adapter on any row."""
        self.stacks = {}
        self.row_slot = None
        self.row_scale = None
        self.single_scale = 1.0
        self.dropout = 0.0
        self.training = False


class MultiLoraLinear(nn.Module):
    """A frozen `nn.Linear` plus the per-row LoRA term of whatever adapters the routing holds."""

    def __init__(self, base_layer: nn.Linear, name: str, routing: LoraRouting) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.name = name
        self.routing = routing
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        routing = self.routing
        pair = routing.stacks.get(self.name)
        if pair is None:
            return self.base_layer(x)
        lora_a, lora_b = pair  # (S, r, in), (S, out, r)
        y = self.base_layer(x)  # (R, T, out)
        if routing.dropout > 0 and routing.training:
            x = F.dropout(x, p=routing.dropout, training=True)
        if lora_a.shape[0] == 1:
            # One adapter: plain GEMMs on (R*T, features), LoRA added into y by addmm.
            x2 = x.reshape(-1, self.in_features)  # (R*T, in)
            xa = F.linear(x2, lora_a[0]) * routing.single_scale  # (R*T, r)
            y2 = torch.addmm(y.reshape(-1, self.out_features), xa, lora_b[0].t())  # (R*T, out)
            return y2.view_as(y)
        if routing.row_slot is None or routing.row_scale is None:
            raise RuntimeError("several adapters stacked but no row routing set")
        slot = routing.row_slot  # (R,)
        xa = torch.bmm(x, lora_a[slot].transpose(1, 2))  # (R, T, in) @ (R, in, r) -> (R, T, r)
        xa = xa * routing.row_scale  # (R, T, r)
        return torch.baddbmm(y, xa, lora_b[slot].transpose(1, 2))  # (R, T, out)

    def extra_repr(self) -> str:
        return f"name={self.name}, in={self.in_features}, out={self.out_features}"


def matches_target(module_name: str, targets: Iterable[str]) -> bool:
    """PEFT's rule: a target names the module exactly or is a dotted suffix of its name."""
    return any(module_name == t or module_name.endswith("." + t) for t in targets)


def inject_multi_lora(
    model: nn.Module, targets: Iterable[str], routing: LoraRouting
) -> dict[str, MultiLoraLinear]:
    """Wrap every `nn.Linear` of the model matching a target; already wrapped ones are kept."""
    wrapped: dict[str, MultiLoraLinear] = {}
    targets = tuple(targets)
    for name, module in list(model.named_modules()):
        if isinstance(module, MultiLoraLinear):
            wrapped[module.name] = module
            continue
        if not isinstance(module, nn.Linear) or not matches_target(name, targets):
            continue
        if ".base_layer" in name:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = MultiLoraLinear(module, name, routing)
        setattr(parent, child, layer)
        wrapped[name] = layer
    return wrapped


def lora_param_names(module: str) -> tuple[str, str]:
    """Store names of a module's A and B matrices (PEFT keys without prefix and `.weight`)."""
    return f"{module}.lora_A", f"{module}.lora_B"


def init_lora_weights(
    shapes: dict[str, tuple[int, int]], rank: int, seed: int
) -> dict[str, torch.Tensor]:
    """Fresh fp32 LoRA weights: A kaiming-uniform (a=sqrt 5) as in PEFT, B zero.

    `shapes` maps module name -> (in_features, out_features). Seeded and in sorted module order,
    so the same seed gives the same adapter on any machine.
    """
    gen = torch.Generator().manual_seed(seed)
    weights: dict[str, torch.Tensor] = {}
    for module in sorted(shapes):
        fan_in, fan_out = shapes[module]
        a_name, b_name = lora_param_names(module)
        lora_a = torch.empty(rank, fan_in)  # (r, in)
        nn.init.kaiming_uniform_(lora_a, a=math.sqrt(5), generator=gen)
        weights[a_name] = lora_a
        weights[b_name] = torch.zeros(fan_out, rank)  # (out, r)
    return weights
