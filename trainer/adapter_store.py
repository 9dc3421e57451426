"""AdapterStore: every adapter's training state in host memory, swapped onto the device per step.

Per adapter the store keeps the working LoRA weights (compute dtype), an fp32 master copy, the
AdamW moments and step count, the accumulated gradient sums with their normalisation units, and
the reference weights used by DPO and the KL penalty. Each of these groups is one flat buffer
(all LoRA matrices back to back, named views into it), so a swap is one copy per group rather
than one per matrix. Host buffers are pinned when the device is CUDA, so the host-to-device and
device-to-host copies are non-blocking.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from trainer.base_model import ModuleShapes
from trainer.config import LoraSettings
from trainer.errors import AdapterExistsError, AdapterNotFoundError

TensorDict = dict[str, torch.Tensor]
TENSOR_GROUPS = ("weights", "master", "exp_avg", "exp_avg_sq", "grad", "reference")
OPTIMIZER_GROUPS = ("master", "exp_avg", "exp_avg_sq", "grad")
_COMPUTE_GROUPS = ("weights", "reference")  # the others are in the master dtype


@dataclass(frozen=True)
class ParamLayout:
    """Where each LoRA matrix lives in an adapter's flat buffers (sorted names, packed)."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    numel: int

    @classmethod
    def of(cls, tensors: TensorDict) -> ParamLayout:
        """The layout packing these tensors by sorted name."""
        names = tuple(sorted(tensors))
        shapes = tuple(tuple(tensors[n].shape) for n in names)
        sizes = [math.prod(s) for s in shapes]
        offsets = tuple(sum(sizes[:i]) for i in range(len(sizes)))
        return cls(names, shapes, offsets, sum(sizes))

    def views(self, flat: torch.Tensor) -> TensorDict:
        """Named views into a flat buffer (P,), or into stacked buffers (S, P) -> (S, *shape)."""
        lead = flat.shape[:-1]
        return {
            name: flat[..., off : off + math.prod(shape)].view(*lead, *shape)
            for name, shape, off in zip(self.names, self.shapes, self.offsets, strict=True)
        }


@dataclass
class AdapterState:
    """One adapter's complete training state, resident in host memory between its steps."""

    adapter_id: str
    lora: LoraSettings
    shapes: ModuleShapes  # module name -> (in_features, out_features)
    layout: ParamLayout
    flat: TensorDict
    """Group name -> flat buffer (P,): weights and reference in the compute dtype; master,
    exp_avg, exp_avg_sq and grad (the gradient sums since the last step) in the master dtype."""
    step: int = 0
    """Optimiser steps applied (AdamW bias correction uses this adapter's own count)."""
    grad_units: float = 0.0
    """Normalisation units (tokens, sequences or pairs) behind `grad`; optim_step divides by it."""
    grad_rows: int = 0
    """Rows whose gradients `grad` holds."""
    last_step_id: str | None = None
    """Id of the last applied optimiser step, so a replayed step is recognised and skipped."""
    _views: dict[str, TensorDict] = field(default_factory=dict, repr=False)

    @property
    def pass_signature(self) -> tuple[int, tuple[str, ...], float, ParamLayout]:
        """Adapters with equal signatures can share one multiplexed pass."""
        return (self.lora.rank, self.lora.target_modules, self.lora.dropout, self.layout)

    @property
    def param_names(self) -> list[str]:
        """Names of the LoRA matrices, sorted (`<module>.lora_A`, `<module>.lora_B`)."""
        return list(self.layout.names)

    def group(self, name: str) -> TensorDict:
        """Named views (lora_A (r, in), lora_B (out, r)) into one of TENSOR_GROUPS."""
        if name not in self._views:
            self._views[name] = self.layout.views(self.flat[name])
        return self._views[name]

    @property
    def weights(self) -> TensorDict:
        return self.group("weights")

    @property
    def master(self) -> TensorDict:
        return self.group("master")

    @property
    def exp_avg(self) -> TensorDict:
        return self.group("exp_avg")

    @property
    def exp_avg_sq(self) -> TensorDict:
        return self.group("exp_avg_sq")

    @property
    def grad(self) -> TensorDict:
        return self.group("grad")

    @property
    def reference(self) -> TensorDict:
        return self.group("reference")


class AdapterStore:
    """Host-resident training state of every adapter, plus the copies to and from the device."""

    def __init__(self, device: torch.device, dtype: torch.dtype, pin_memory: bool) -> None:
        self.device = device
        self.dtype = dtype
        self.pin_memory = pin_memory
        # Masters, moments and gradients are fp32, or fp64 when the model computes in fp64.
        self.master_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        self.swap_seconds = 0.0
        """Wall time spent copying adapter state between host and device (benchmarks read it)."""
        self._states: dict[str, AdapterState] = {}

    def __contains__(self, adapter_id: object) -> bool:
        return adapter_id in self._states

    def ids(self) -> list[str]:
        """Ids of every adapter held."""
        return list(self._states)

    def get(self, adapter_id: str) -> AdapterState:
        """The state of one adapter; `AdapterNotFoundError` when absent."""
        try:
            return self._states[adapter_id]
        except KeyError:
            raise AdapterNotFoundError(f"no adapter {adapter_id!r} in the trainer") from None

    def drop(self, adapter_id: str) -> None:
        """Forget an adapter and free its host memory."""
        self.get(adapter_id)
        del self._states[adapter_id]

    def group_dtype(self, group: str) -> torch.dtype:
        """Dtype of a tensor group: compute dtype for weights/reference, else master dtype."""
        return self.dtype if group in _COMPUTE_GROUPS else self.master_dtype

    def create(
        self,
        adapter_id: str,
        lora: LoraSettings,
        shapes: ModuleShapes,
        master: TensorDict,
        reference: TensorDict | None = None,
    ) -> AdapterState:
        """A new adapter whose master starts at `master`; reference defaults to the same."""
        if adapter_id in self._states:
            raise AdapterExistsError(f"adapter {adapter_id!r} already exists")
        layout = ParamLayout.of(master)
        flat = {
            g: torch.zeros(layout.numel, dtype=self.group_dtype(g), pin_memory=self.pin_memory)
            for g in TENSOR_GROUPS
        }
        state = AdapterState(adapter_id, lora, dict(shapes), layout, flat)
        for group, source in (("master", master), ("weights", master)):
            for name, view in state.group(group).items():
                view.copy_(source[name].detach())
        ref = master if reference is None else reference
        for name, view in state.reference.items():
            view.copy_(ref[name].detach())
        self._states[adapter_id] = state
        return state

    @contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.swap_seconds += time.perf_counter() - start

    def stack_to_device(self, states: Sequence[AdapterState], group: str) -> torch.Tensor:
        """One group of several adapters (same layout) stacked on the device: (S, P)."""
        with self._timed():
            first = states[0].flat[group]
            stacked = torch.empty(
                (len(states), first.numel()), dtype=first.dtype, device=self.device
            )
            for i, st in enumerate(states):
                stacked[i].copy_(st.flat[group], non_blocking=True)
        return stacked

    def accumulate_grads(
        self,
        states: Sequence[AdapterState],
        stacked_grads: torch.Tensor,
        units: Sequence[float],
        rows: Sequence[int],
    ) -> None:
        """Add row i of the stacked gradient (S, P) to adapter i's host gradient sums."""
        with self._timed():
            host = self._to_host([stacked_grads])[0]
            for i, st in enumerate(states):
                st.flat["grad"].add_(host[i])
                st.grad_units += float(units[i])
                st.grad_rows += int(rows[i])

    def swap_in(self, state: AdapterState, groups: Sequence[str]) -> TensorDict:
        """Device copies of some flat groups of one adapter (non-blocking from pinned memory)."""
        with self._timed():
            return {g: state.flat[g].to(self.device, non_blocking=True, copy=True) for g in groups}

    def swap_out(self, state: AdapterState, device_groups: TensorDict) -> None:
        """Write device copies of flat groups back over the adapter's host buffers (exactly)."""
        with self._timed():
            names = list(device_groups)
            host = self._to_host([device_groups[g] for g in names])
            for g, t in zip(names, host, strict=True):
                state.flat[g].copy_(t)

    def _to_host(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.device.type == "cpu":
            return tensors
        staged = []
        for t in tensors:
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=self.pin_memory)
            buf.copy_(t, non_blocking=True)
            staged.append(buf)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return staged
