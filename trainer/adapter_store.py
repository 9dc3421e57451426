"""AdapterStore: every adapter's training state in host memory, swapped onto the device per step.

Per adapter the store keeps the working LoRA weights (compute dtype), an fp32 master copy, the
AdamW moments and step count, the accumulated gradient sums with their normalisation units, and
the reference weights used by DPO and the KL penalty. Host tensors are pinned when the device is
CUDA so the host-to-device and device-to-host copies can be non-blocking.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from trainer.base_model import ModuleShapes
from trainer.config import LoraSettings
from trainer.errors import AdapterExistsError, AdapterNotFoundError

TensorDict = dict[str, torch.Tensor]
TENSOR_GROUPS = ("weights", "master", "exp_avg", "exp_avg_sq", "grad", "reference")
OPTIMIZER_GROUPS = ("master", "exp_avg", "exp_avg_sq", "grad")


@dataclass
class AdapterState:
    """One adapter's complete training state, resident in host memory between its steps."""

    adapter_id: str
    lora: LoraSettings
    shapes: ModuleShapes  # module name -> (in_features, out_features)
    weights: TensorDict  # compute dtype; lora_A (r, in), lora_B (out, r)
    master: TensorDict  # fp32 copy the optimiser updates
    exp_avg: TensorDict  # fp32 AdamW first moment
    exp_avg_sq: TensorDict  # fp32 AdamW second moment
    grad: TensorDict  # fp32 sum of gradients of summed row losses since the last step
    reference: TensorDict  # compute dtype; the DPO/KL reference ("parent") weights
    step: int = 0
    """Optimiser steps applied (AdamW bias correction uses this adapter's own count)."""
    grad_units: float = 0.0
    """Normalisation units (tokens, sequences or pairs) behind `grad`; optim_step divides by it."""
    grad_rows: int = 0
    """Rows whose gradients `grad` holds."""
    last_step_id: str | None = None
    """Id of the last applied optimiser step, so a replayed step is recognised and skipped."""

    @property
    def pass_signature(self) -> tuple[int, tuple[str, ...], float]:
        """Adapters with equal signatures can share one multiplexed pass."""
        return (self.lora.rank, self.lora.target_modules, self.lora.dropout)

    @property
    def param_names(self) -> list[str]:
        """Names of the LoRA matrices, sorted (`<module>.lora_A`, `<module>.lora_B`)."""
        return sorted(self.master)

    def group(self, name: str) -> TensorDict:
        """One of TENSOR_GROUPS by name."""
        if name not in TENSOR_GROUPS:
            raise KeyError(name)
        tensors: TensorDict = getattr(self, name)
        return tensors


class AdapterStore:
    """Host-resident training state of every adapter, plus the copies to and from the device."""

    def __init__(self, device: torch.device, dtype: torch.dtype, pin_memory: bool) -> None:
        self.device = device
        self.dtype = dtype
        self.pin_memory = pin_memory
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

    def create(
        self,
        adapter_id: str,
        lora: LoraSettings,
        shapes: ModuleShapes,
        master: TensorDict,
        reference: TensorDict | None = None,
    ) -> AdapterState:
        """A new adapter whose fp32 master starts at `master`; reference defaults to the same."""
        if adapter_id in self._states:
            raise AdapterExistsError(f"adapter {adapter_id!r} already exists")
        master_h = {n: self._host(t, torch.float32) for n, t in master.items()}
        ref_src = master if reference is None else reference
        state = AdapterState(
            adapter_id=adapter_id,
            lora=lora,
            shapes=dict(shapes),
            weights={n: self._host(t, self.dtype) for n, t in master_h.items()},
            master=master_h,
            exp_avg={n: self._zeros(t) for n, t in master_h.items()},
            exp_avg_sq={n: self._zeros(t) for n, t in master_h.items()},
            grad={n: self._zeros(t) for n, t in master_h.items()},
            reference={n: self._host(t, self.dtype) for n, t in ref_src.items()},
        )
        self._states[adapter_id] = state
        return state

    def _host(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        out = torch.empty(t.shape, dtype=dtype, device="cpu", pin_memory=self.pin_memory)
        out.copy_(t.detach())
        return out

    def _zeros(self, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(like.shape, dtype=torch.float32, pin_memory=self.pin_memory)

    @contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.swap_seconds += time.perf_counter() - start

    def stack_to_device(
        self, states: Sequence[AdapterState], group: str, names: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Per name, the adapters' tensors stacked on the device: (S, *shape) in compute dtype."""
        out: dict[str, torch.Tensor] = {}
        with self._timed():
            for name in names:
                first = states[0].group(group)[name]
                stacked = torch.empty(
                    (len(states), *first.shape), dtype=self.dtype, device=self.device
                )
                for i, st in enumerate(states):
                    stacked[i].copy_(st.group(group)[name], non_blocking=True)
                out[name] = stacked
        return out

    def accumulate_grads(
        self,
        states: Sequence[AdapterState],
        stacked_grads: dict[str, torch.Tensor],
        units: Sequence[float],
        rows: Sequence[int],
    ) -> None:
        """Add slot i of every stacked gradient (S, *shape) to adapter i's host gradient sums."""
        with self._timed():
            host = self._to_host(list(stacked_grads.values()))
            for name, grad in zip(stacked_grads, host, strict=True):
                for i, st in enumerate(states):
                    st.grad[name].add_(grad[i])
            for st, u, r in zip(states, units, rows, strict=True):
                st.grad_units += float(u)
                st.grad_rows += int(r)

    def swap_in(self, state: AdapterState, groups: Sequence[str]) -> dict[str, TensorDict]:
        """Device copies of some tensor groups of one adapter (non-blocking from pinned memory)."""
        out: dict[str, TensorDict] = {}
        with self._timed():
            for g in groups:
                out[g] = {
                    n: t.to(self.device, non_blocking=True, copy=True)
                    for n, t in state.group(g).items()
                }
        return out

    def swap_out(self, state: AdapterState, device_groups: dict[str, TensorDict]) -> None:
        """Write device copies back over the adapter's host tensors (exact copies)."""
        with self._timed():
            for g, tensors in device_groups.items():
                names = list(tensors)
                host = self._to_host([tensors[n] for n in names])
                for n, t in zip(names, host, strict=True):
                    state.group(g)[n].copy_(t)

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
