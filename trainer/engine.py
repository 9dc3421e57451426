"""TrainingEngine: the training API clora calls; one warm base model, many tenants' adapters.

Every adapter's state lives in the `AdapterStore` (host memory). `forward_backward` runs rows of
several adapters through one pass, each row through its own LoRA weights, and adds each
adapter's gradient sums to its store entry; `optim_step` swaps one adapter's optimiser state
onto the device, applies AdamW with that adapter's own step count and swaps it back.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import torch

from trainer.adapter_store import OPTIMIZER_GROUPS, AdapterState, AdapterStore
from trainer.base_model import BaseModel, check_adapter_fits, default_dtype, pick_device
from trainer.batch import Batch
from trainer.checkpoint import lora_from_meta, read_state, save_state
from trainer.config import LoraSettings, TrainerConfig
from trainer.errors import AdapterMismatchError, InvalidBatchError, NonFiniteError
from trainer.head import LMHead
from trainer.lora import init_lora_weights
from trainer.losses import LossSpec, LossTerms, group_advantages, item_units, kl_terms
from trainer.memory import Shape, bytes_per_token, tokens_per_pass, trainer_share
from trainer.metrics import RowMetrics, StepMetrics
from trainer.optim import AdamWParams, adamw_step_, clip_grads_, global_grad_norm
from trainer.pass_loss import compute_loss, fill_missing, row_metrics
from trainer.passes import PassPlan, PassTensors, collate_pass, plan_passes, split_plan
from trainer.peft_io import read_peft_adapter, write_peft_adapter

WorkItem = tuple[str, Batch]
log = logging.getLogger(__name__)


class AdapterPublisher(Protocol):
    """The adapter registry (app side): publishes files a callback writes as a new version."""

    def publish(self, adapter_id: str, write_files: Callable[[Path], None]) -> str:
        """Call `write_files(staging_dir)`, publish it atomically, return the version name."""
        ...


class TrainingEngine:
    """One frozen base model on the device and every adapter's training state on the host."""

    def __init__(
        self,
        base_model_dir: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        config: TrainerConfig | None = None,
    ) -> None:
        self.config = config or TrainerConfig()
        self.device = pick_device(device or self.config.device)
        dtype = dtype or self.config.dtype or default_dtype(self.device)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.memory_budget = self.config.memory_budget_bytes
        if self.device.type == "cuda":  # refused before the weights take the GPU
            total = torch.cuda.get_device_properties(self.device).total_memory
            self.memory_budget = trainer_share(
                total, self.config.engine_gpu_share, self.memory_budget
            )
        model_dir = base_model_dir or self.config.base_model_dir
        self.base = BaseModel(model_dir, self.device, self.dtype)
        if self.config.gradient_checkpointing:
            self.base.checkpoint_layers()
        self.head = LMHead(self.base.output_head(), self.config.logit_chunk_bytes)
        pin = self.config.pin_memory
        pin = self.device.type == "cuda" if pin is None else pin
        self.store = AdapterStore(self.device, self.dtype, pin_memory=pin)
        # Padded tokens one forward/backward may hold (see TrainerConfig.max_tokens_per_pass).
        cpu = self.device.type == "cpu"
        self.max_tokens_per_pass = self.config.max_tokens_per_pass or (
            self._tokens_within_budget(self.memory_budget)
            if self.memory_budget
            else (1024 if cpu else 32768)
        )
        merge = self.config.merge_below_tokens
        self.merge_below_tokens = merge or (384 if cpu else self.max_tokens_per_pass)
        # Per adapter: passes its rows went through, and how many of them held other adapters'
        # rows too (cumulative; the trainer service records each step's share).
        self.passes: Counter[str] = Counter()
        self.shared_passes: Counter[str] = Counter()
        self.out_of_memory_splits = 0
        """Passes that ran out of memory and were run again split in two."""

    def _tokens_within_budget(self, budget: int) -> int:
        """Tokens a pass may hold within ``budget`` bytes (`trainer.memory`)."""
        config = self.base.model.config
        per_token = bytes_per_token(
            Shape.of(config),
            self.dtype.itemsize,
            checkpointing=self.config.gradient_checkpointing,
            row_tokens=min(int(getattr(config, "max_position_embeddings", 2048)), 2048),
            full_attention=self.device.type == "cpu",
        )
        weights = sum(p.numel() * p.element_size() for p in self.base.model.parameters())
        return tokens_per_pass(
            budget, weights, self.config.logit_chunk_bytes, per_token, self.head.vocab
        )

    # ---- adapters -------------------------------------------------------------------------
    def create_adapter(
        self,
        adapter_id: str,
        lora: LoraSettings | None = None,
        *,
        seed: int | None = None,
        parent_dir: Path | None = None,
    ) -> AdapterState:
        """A new adapter: seeded init (B = 0, a no-op) or a copy of a PEFT adapter directory.

        `lora` defaults to the parent's settings, or to `LoraSettings()` without a parent. The
        starting weights also become the DPO/KL reference (see `set_reference`).
        Raises `AdapterMismatchError` when the settings or parent do not fit the base model.
        """
        if parent_dir is not None:
            parent_lora, weights = read_peft_adapter(Path(parent_dir))
            lora = lora or parent_lora
            shapes = self.base.target_shapes(lora)
            if (parent_lora.rank, parent_lora.alpha, parent_lora.target_modules) != (
                lora.rank,
                lora.alpha,
                lora.target_modules,
            ):
                raise AdapterMismatchError(
                    f"parent {parent_dir} has rank {parent_lora.rank}, alpha {parent_lora.alpha}, "
                    f"targets {parent_lora.target_modules}; requested {lora}"
                )
            check_adapter_fits(weights, shapes, lora.rank, f"parent adapter {parent_dir}")
        else:
            lora = lora or LoraSettings()
            shapes = self.base.target_shapes(lora)
            weights = init_lora_weights(shapes, lora.rank, lora.init_seed if seed is None else seed)
        state = self.store.create(adapter_id, lora, shapes, weights)
        self.base.ensure_wrapped(lora)
        return state

    def has_adapter(self, adapter_id: str) -> bool:
        """Whether the engine holds this adapter."""
        return adapter_id in self.store

    def drop_adapter(self, adapter_id: str) -> None:
        """Forget an adapter (its files, if saved, are untouched)."""
        self.store.drop(adapter_id)
        self.passes.pop(adapter_id, None)
        self.shared_passes.pop(adapter_id, None)

    def adapter_ids(self) -> list[str]:
        """Ids of every adapter held."""
        return self.store.ids()

    def set_reference(self, adapter_id: str) -> None:
        """Pin the adapter's current weights as its DPO/KL reference (the parent version)."""
        st = self.store.get(adapter_id)
        st.flat["reference"].copy_(st.flat["weights"])

    # ---- training -------------------------------------------------------------------------
    def forward_backward(
        self,
        items: Sequence[WorkItem],
        loss: LossSpec,
        weights: Sequence[float] | None = None,
    ) -> list[list[RowMetrics]]:
        """Accumulate gradients of `loss` for each (adapter, batch); metrics per row per item.

        Rows of adapters with equal shapes share passes (each row through its own adapter);
        other adapters run in passes of their own. Gradients are sums over rows; `optim_step`
        divides by the accumulated units, so calls for one adapter may be split and interleaved
        with other adapters' calls freely. `weights` gives each item its own `LossSpec.weight`
        (several jobs with different loss mixtures sharing one pass).
        """
        if not items:
            return []
        if weights is not None and len(weights) != len(items):
            raise InvalidBatchError(f"{len(weights)} weights for {len(items)} items")
        advantages = [self._check_item(a, b, loss) for a, b in items]
        scales = [
            self._item_scale(a, b, loss, loss.weight if weights is None else float(weights[i]))
            for i, (a, b) in enumerate(items)
        ]
        plans = plan_passes(
            items,
            lambda a: self.store.get(a).pass_signature,
            self.max_tokens_per_pass,
            self.merge_below_tokens if self.config.multiplex else 0,
        )
        results: list[list[RowMetrics | None]] = [[None] * len(b) for _, b in items]
        pending = list(plans)
        with torch.enable_grad():
            while pending:
                plan = pending.pop(0)
                try:
                    self._run_pass(plan, items, advantages, scales, loss, results)
                except torch.OutOfMemoryError:
                    # A pass adds its gradients to the adapters only once it has run whole, so
                    # a pass that ran out of memory is run again as two smaller ones; later
                    # passes are planned at half its size.
                    halves = split_plan(plan, items)
                    if len(halves) == 1:
                        raise
                    self._free_device_memory()
                    padded = plan.sequences * plan.max_len
                    self.max_tokens_per_pass = max(1, min(self.max_tokens_per_pass, padded // 2))
                    self.out_of_memory_splits += 1
                    log.warning(
                        "a pass of %d padded tokens ran out of memory: split in two; passes "
                        "now hold at most %d tokens",
                        padded,
                        self.max_tokens_per_pass,
                    )
                    pending[:0] = halves
                    continue
                self.passes.update(plan.adapter_ids)
                if len(plan.adapter_ids) > 1:
                    self.shared_passes.update(plan.adapter_ids)
        return [[m for m in row if m is not None] for row in results]

    def _free_device_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _item_scale(self, adapter_id: str, batch: Batch, loss: LossSpec, weight: float) -> float:
        """Factor on the item's loss sums: its weight, over its own units for a per-call mean."""
        st = self.store.get(adapter_id)
        if weight < 0:
            raise InvalidBatchError("loss weights must be >= 0")
        if loss.reduction == "step":
            if st.grad_rows > 0 and st.grad_units == 0:
                raise InvalidBatchError("one optimiser step cannot mix 'call' and 'step' losses")
            return weight
        if st.grad_units > 0:
            raise InvalidBatchError("one optimiser step cannot mix 'step' and 'call' losses")
        units = item_units(loss, batch.loss_mask)
        return weight / units if units > 0 else 0.0

    def check_batch(self, batch: Batch) -> None:
        """Raise `InvalidBatchError` for a batch no pass could take (shapes, alignment, ids
        beyond the base vocabulary), so a caller can refuse it before it shares a pass."""
        batch.validate()
        vocab = self.base.describe()["vocab_size"]
        seqs = batch.input_ids + (batch.rejected_input_ids or [])
        if vocab and max(max(s) for s in seqs) >= vocab:
            raise InvalidBatchError(f"token id beyond the base vocabulary of {vocab}")

    def _check_item(self, adapter_id: str, batch: Batch, loss: LossSpec) -> torch.Tensor | None:
        self.store.get(adapter_id)
        self.check_batch(batch)
        if (loss.kind == "dpo") != batch.is_pairwise:
            raise InvalidBatchError("dpo needs chosen/rejected pairs; sft and pg need plain rows")
        if loss.kind != "pg":
            return None
        if batch.advantages is not None:
            return torch.tensor(batch.advantages, dtype=torch.float32)
        if batch.rewards is None:
            raise InvalidBatchError("pg needs advantages or rewards per row")
        return group_advantages(batch.rewards, loss.group_size or len(batch), loss.advantage)

    def _run_pass(
        self,
        plan: PassPlan,
        items: Sequence[WorkItem],
        advantages: Sequence[torch.Tensor | None],
        scales: Sequence[float],
        loss: LossSpec,
        results: list[list[RowMetrics | None]],
    ) -> None:
        states = [self.store.get(a) for a in plan.adapter_ids]
        t = collate_pass(plan, items, advantages, self.base.pad_token_id, self.device)
        group = None if loss.reference == "base" else "reference"
        ref = t.reference_logprobs
        trained = t.loss_mask[:, 1:] > 0  # (N, T-1): position t predicts token t + 1
        ref_hidden = None
        if loss.kind == "kl":
            with torch.no_grad():
                ref_hidden = self._hidden(states, t, group)[:, :-1][trained]  # (M, H)
        elif loss.needs_reference and (ref is None or bool(torch.isnan(ref).any())):
            with torch.no_grad():
                ref = fill_missing(ref, self._logprobs(states, t, group))
        layout = states[0].layout
        flat = self.store.stack_to_device(states, "weights")  # (S, P)
        flat_grad = torch.zeros_like(flat)  # (S, P): the pass's gradients land here
        stacks = {}
        for (name, view), grad in zip(
            layout.views(flat).items(), layout.views(flat_grad).values(), strict=True
        ):
            leaf = view.detach().requires_grad_(True)  # (S, *shape), aliasing flat
            leaf.grad = grad  # autograd accumulates in place, i.e. into flat_grad
            stacks[name] = leaf
        row_scale = torch.tensor([scales[i] for i, _ in plan.rows], device=self.device)  # (R,)
        with self._routed(states, stacks, t.runs, training=True):
            terms: LossTerms
            hidden = self.base.hidden(t.input_ids, t.attention_mask)  # (N, T, H)
            if ref_hidden is not None:
                row_of = trained.nonzero()[:, 0]  # (M,) row of each trained position
                per_pos = self.head.forward_kl(hidden[:, :-1][trained], ref_hidden)  # (M,)
                terms = kl_terms(per_pos, row_of, len(plan.rows))
            else:
                if loss.kind == "sft":  # and how surely greedy decoding gives each target
                    logp, margin = self.head.token_logprobs_and_margin(
                        hidden, t.input_ids, t.loss_mask
                    )
                else:
                    logp = self.head.token_logprobs(hidden, t.input_ids, t.loss_mask)  # (N, T)
                terms = compute_loss(loss, logp, t, ref)
                if loss.kind == "sft":
                    terms.metrics["margin"] = margin
            with warnings.catch_warnings():
                # The leaves are strided views of flat_grad's twin; accumulating into them in
                # place is the point, so torch's layout hint does not apply.
                warnings.filterwarnings("ignore", message="grad and param do not obey")
                (terms.loss * row_scale.to(terms.loss.dtype)).sum().backward()
        slots = torch.tensor(plan.row_slots)
        row_units = terms.units.detach().cpu().float()
        if loss.reduction == "call":  # already divided by the item's own units
            row_units = torch.zeros_like(row_units)
        units = torch.zeros(len(states)).index_add_(0, slots, row_units)
        rows = torch.bincount(slots, minlength=len(states))
        self.store.accumulate_grads(states, flat_grad, units.tolist(), rows.tolist())
        for (item, row), m in zip(plan.rows, row_metrics(plan, terms, t), strict=True):
            results[item][row] = m

    def _logprobs(
        self,
        states: Sequence[AdapterState],
        t: PassTensors,
        group: str | None,
        *,
        every_position: bool = False,
    ) -> torch.Tensor:
        """Token logprobs (N, T) of the pass through `group` of each row's adapter (None: the
        base model alone): at the trained positions, or with `every_position` at all."""
        hidden = self._hidden(states, t, group)  # (N, T, H)
        mask = None if every_position else t.loss_mask
        return self.head.token_logprobs(hidden, t.input_ids, mask)

    def _hidden(
        self, states: Sequence[AdapterState], t: PassTensors, group: str | None
    ) -> torch.Tensor:
        """The decoder's last hidden states (N, T, H) with each row through `group` of its
        adapter (None: the base model alone)."""
        if group is None:
            return self.base.hidden(t.input_ids, t.attention_mask)
        stacks = states[0].layout.views(self.store.stack_to_device(states, group))
        with self._routed(states, stacks, t.runs, training=False):
            return self.base.hidden(t.input_ids, t.attention_mask)

    @contextmanager
    def _routed(
        self,
        states: Sequence[AdapterState],
        stacks: dict[str, torch.Tensor],
        runs: list[tuple[int, int, int]],
        training: bool,
    ) -> Iterator[None]:
        routing = self.base.routing
        routing.route(
            {m: (stacks[f"{m}.lora_A"], stacks[f"{m}.lora_B"]) for m in states[0].shapes},
            runs,
            [s.lora.scale for s in states],
            dropout=states[0].lora.dropout,
            training=training,
        )
        try:
            yield
        finally:
            routing.clear()

    def optim_step(
        self,
        adapter_id: str,
        lr: float,
        *,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        max_grad_norm: float | None = None,
        step_id: str | None = None,
    ) -> StepMetrics:
        """Apply the accumulated gradient (averaged over its units) with AdamW; clear it.

        The gradient of `reduction="call"` losses is already a mean and is applied undivided.
        Skips (no change at all) when no rows were accumulated or `step_id` is the last step
        applied. Raises `NonFiniteError` on a NaN/inf gradient: weights, master, moments and
        step count stay as they were and the poisoned gradient sums are discarded.
        """
        st = self.store.get(adapter_id)
        if (step_id is not None and step_id == st.last_step_id) or st.grad_rows <= 0:
            return StepMetrics(adapter_id, st.step, 0.0, st.grad_units, st.grad_rows, lr, True)
        units, rows = st.grad_units, st.grad_rows
        dev = self.store.swap_in(st, OPTIMIZER_GROUPS)  # flat (P,) buffers on the device
        grads = [dev["grad"]]
        if units > 0:
            torch._foreach_mul_(grads, 1.0 / units)
        norm = global_grad_norm(grads)
        if not torch.isfinite(norm):
            self.zero_grad(adapter_id)
            raise NonFiniteError(f"adapter {adapter_id!r}: gradient norm is {float(norm)}")
        if max_grad_norm is not None:
            clip_grads_(grads, norm, max_grad_norm)
        hp = AdamWParams(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        adamw_step_([dev["master"]], grads, [dev["exp_avg"]], [dev["exp_avg_sq"]], st.step + 1, hp)
        dev["weights"] = dev["master"].to(self.dtype, copy=True)
        del dev["grad"]
        self.store.swap_out(st, dev)
        self.zero_grad(adapter_id)
        st.step += 1
        st.last_step_id = step_id
        return StepMetrics(adapter_id, st.step, float(norm), units, rows, lr)

    def zero_grad(self, adapter_id: str) -> None:
        """Discard the adapter's accumulated gradient sums."""
        st = self.store.get(adapter_id)
        st.flat["grad"].zero_()
        st.grad_units, st.grad_rows = 0.0, 0

    @torch.no_grad()
    def sample_logprobs(self, adapter_id: str | None, batch: Batch) -> list[list[float]]:
        """Per-token logprobs of each row (aligned with input_ids, entry 0 is 0.0).

        `adapter_id=None` scores with the base model alone.
        """
        rows = Batch(input_ids=batch.input_ids, loss_mask=[[0.0] * len(r) for r in batch.input_ids])
        rows.validate()
        items = [(adapter_id or "", rows)]
        out: list[list[float]] = [[] for _ in rows.input_ids]
        for plan in plan_passes(items, lambda a: 0, self.max_tokens_per_pass, 0):
            t = collate_pass(plan, items, [None], self.base.pad_token_id, self.device)
            states = [self.store.get(adapter_id)] if adapter_id else []
            group = "weights" if adapter_id else None
            logp = self._logprobs(states, t, group, every_position=True).cpu()
            for k, (_, r) in enumerate(plan.rows):
                out[r] = logp[k, : len(rows.input_ids[r])].tolist()
        return out

    # ---- files ----------------------------------------------------------------------------
    def save_adapter(self, adapter_id: str, out_dir: Path) -> None:
        """Write the adapter's working weights as a PEFT adapter directory into `out_dir`."""
        st = self.store.get(adapter_id)
        write_peft_adapter(Path(out_dir), st.weights, st.lora, self.base.name_or_path)

    def save_for_sampler(self, adapter_id: str, publisher: AdapterPublisher) -> str:
        """Publish the adapter's current weights through the registry; returns the version."""
        return publisher.publish(adapter_id, lambda d: self.save_adapter(adapter_id, d))

    def save_state(self, adapter_id: str, directory: Path) -> Path:
        """Checkpoint weights, master, moments, step count and gradient sums atomically."""
        return save_state(self.store.get(adapter_id), Path(directory), self.base.describe())

    def load_state(self, adapter_id: str, directory: Path) -> AdapterState:
        """Restore (or create) an adapter from a `save_state` checkpoint, replacing its state."""
        meta, groups = read_state(Path(directory))
        if meta["base"] != self.base.describe():
            raise AdapterMismatchError(
                f"checkpoint {directory} was made on base {meta['base']}, "
                f"this engine runs {self.base.describe()}"
            )
        lora = lora_from_meta(meta)
        shapes = self.base.target_shapes(lora)
        check_adapter_fits(groups["master"], shapes, lora.rank, f"checkpoint {directory}")
        if self.has_adapter(adapter_id):
            self.drop_adapter(adapter_id)
        st = self.store.create(adapter_id, lora, shapes, groups["master"], groups["reference"])
        for group in ("weights", "exp_avg", "exp_avg_sq", "grad"):
            for name, t in groups[group].items():
                st.group(group)[name].copy_(t)
        st.step, st.grad_units = int(meta["step"]), float(meta["grad_units"])
        st.grad_rows, st.last_step_id = int(meta["grad_rows"]), meta["last_step_id"]
        self.base.ensure_wrapped(lora)
        return st
