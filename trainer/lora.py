"""Multi-LoRA linear layers: each row of a pass goes through its own adapter's A and B.

PEFT's injected layers hold one active adapter for the whole batch, so they cannot mix tenants
in one backward. `MultiLoraLinear` wraps a frozen `nn.Linear` and reads the stacked weights of
the current pass from a shared `LoraRouting`:

    y[r] = W x[r] + b + scale[s] * B[s] (A[s] x[r]),  s = slot of row r

with A stacked as (S, rank, in) and B as (S, out, rank) for the S adapters of the pass. Rows of
one adapter are contiguous ("runs"). The LoRA term is added into the base output in the same
call: `addmm` for one run; for equal-length runs one `bmm` + `baddbmm` over (runs, rows*T, .)
views, with no gather of per-row weights and no copy of activations; otherwise a GEMM pair per
run joined by one `cat`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

Run = tuple[int, int, int]  # (first row, end row, slot)


@dataclass
class LoraRouting:
    """The adapters of the current pass: stacked weights per module and the runs of rows."""

    stacks: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    """Module name -> (A (S, rank, in), B (S, out, rank)); modules absent here run base only."""
    runs: list[Run] = field(default_factory=list)
    """Maximal runs of rows sharing an adapter, in row order, covering every row."""
    slot_scales: list[float] = field(default_factory=list)  # alpha / rank of each slot
    run_slots: torch.Tensor | None = None
    """(k,) slot of each run, on the device; None when run i is slot i for every i."""
    run_scales: torch.Tensor | None = None  # (k, 1, 1) alpha / rank of each run's adapter
    dropout: float = 0.0
    """Dropout on the LoRA input, applied only while `training` is True."""
    training: bool = False
    _slices: dict[str, tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = field(
        default_factory=dict
    )

    @property
    def uniform(self) -> bool:
        """True when every run has the same number of rows (the batched kernel applies)."""
        return len({end - start for start, end, _ in self.runs}) == 1

    def slot_weights(self, name: str) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Per-slot (A_s, B_s) views of a module's stacks, unbound once per pass."""
        if name not in self._slices:
            lora_a, lora_b = self.stacks[name]
            self._slices[name] = (lora_a.unbind(0), lora_b.unbind(0))
        return self._slices[name]

    def route(
        self,
        stacks: dict[str, tuple[torch.Tensor, torch.Tensor]],
        runs: list[Run],
        slot_scales: list[float],
        *,
        dropout: float = 0.0,
        training: bool = False,
    ) -> None:
        """Set up a pass: module stacks, runs of rows and the alpha / rank of each slot."""
        self.clear()
        self.stacks, self.runs, self.slot_scales = stacks, runs, slot_scales
        self.dropout, self.training = dropout, training
        if len(runs) > 1:
            first = next(iter(stacks.values()))[0]  # (S, r, in): where and in which dtype
            run_slots = [slot for _, _, slot in runs]
            scales = torch.tensor([slot_scales[s] for s in run_slots], dtype=first.dtype)
            self.run_scales = scales.to(first.device).view(-1, 1, 1)  # (k, 1, 1)
            if run_slots != list(range(len(slot_scales))):
                self.run_slots = torch.tensor(run_slots, device=first.device)  # (k,)

    def clear(self) -> None:
        """Back to the base model: no adapter on any row."""
        self.stacks, self._slices, self.runs, self.slot_scales = {}, {}, [], []
        self.run_slots = self.run_scales = None
        self.dropout, self.training = 0.0, False


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
        if self.name not in routing.stacks:
            return self.base_layer(x)
        y = self.base_layer(x)  # (R, T, out)
        if routing.dropout > 0 and routing.training:
            x = F.dropout(x, p=routing.dropout, training=True)
        if len(routing.runs) == 1:
            return self._one_run(x, y)
        if routing.uniform:
            return self._equal_runs(x, y)
        return self._unequal_runs(x, y)

    def _one_run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        slot = self.routing.runs[0][2]
        lora_a, lora_b = self.routing.stacks[self.name]
        x2 = x.reshape(-1, self.in_features)  # (R*T, in)
        xa = torch.mm(x2, lora_a[slot].t())  # (R*T, r)
        y2 = y.reshape(-1, self.out_features)  # (R*T, out)
        scale = self.routing.slot_scales[slot]
        return torch.addmm(y2, xa, lora_b[slot].t(), alpha=scale).view(y.shape)

    def _equal_runs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        routing = self.routing
        if routing.run_scales is None:
            raise RuntimeError("routing of several runs needs run_scales")
        lora_a, lora_b = routing.stacks[self.name]  # (S, r, in), (S, out, r)
        if routing.run_slots is not None:
            lora_a, lora_b = lora_a[routing.run_slots], lora_b[routing.run_slots]  # (k, ...)
        k = len(routing.runs)
        xr = x.reshape(k, -1, self.in_features)  # (k, n*T, in)
        xa = torch.bmm(xr, lora_a.transpose(1, 2)) * routing.run_scales  # (k, n*T, r)
        yr = y.reshape(k, -1, self.out_features)  # (k, n*T, out)
        return torch.baddbmm(yr, xa, lora_b.transpose(1, 2)).view(y.shape)

    def _unequal_runs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        routing = self.routing
        lora_a, lora_b = routing.slot_weights(self.name)  # S x (r, in), S x (out, r)
        sizes = [end - start for start, end, _ in routing.runs]
        # split, not slicing: its backward is one cat, where each slice's backward would
        # write a zero-filled gradient of the whole input.
        outs = []
        for xs, ys, (_, _, slot) in zip(x.split(sizes), y.split(sizes), routing.runs, strict=True):
            xa = torch.mm(xs.reshape(-1, self.in_features), lora_a[slot].t())  # (n*T, r)
            ys2 = ys.reshape(-1, self.out_features)  # (n*T, out)
            ys2 = torch.addmm(ys2, xa, lora_b[slot].t(), alpha=routing.slot_scales[slot])
            outs.append(ys2.view(ys.shape))
        return torch.cat(outs, dim=0)

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
