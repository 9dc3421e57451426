"""Fair scheduling of many agents' queued training steps, grouped into multiplexed passes.

Fairness is start-time fair queueing over padded tokens: each agent has a virtual time that
advances by (tokens served / weight); the backlogged agent with the smallest virtual time leads
the next group, and an agent that becomes backlogged starts at the virtual clock (the start time
of the latest step served), so it can neither starve nor bank credit while idle. Other agents
join the leader's group (one step each) while their loss and adapter shape match and the group
stays within `max_tokens_per_group` (one pass); the engine then decides which of them share a
pass (docs/TRAINER.md).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from trainer.batch import Batch
from trainer.errors import TrainerError
from trainer.losses import LossSpec
from trainer.metrics import RowMetrics, StepMetrics


@dataclass
class StepRequest:
    """One optimiser step of one agent's adapter: its batch, loss and optimiser settings."""

    adapter_id: str
    batch: Batch
    loss: LossSpec
    lr: float
    step_id: str | None = None
    """Unique id of the step; a step whose id was the last applied is skipped (replays)."""
    weight_decay: float = 0.0
    max_grad_norm: float | None = None

    @property
    def tokens(self) -> int:
        """Padded tokens the step puts through the model."""
        longest = max(self.batch.row_length(i) for i in range(len(self.batch)))
        return len(self.batch) * self.batch.sequences_per_row() * longest


@dataclass
class StepResult:
    """What one request produced: row metrics and step metrics, or the error that refused it."""

    request: StepRequest
    rows: list[RowMetrics] = field(default_factory=list)
    step: StepMetrics | None = None
    error: TrainerError | None = None


class TrainingBackend(Protocol):
    """The part of `TrainingEngine` the scheduler drives."""

    max_tokens_per_pass: int

    def forward_backward(
        self, items: Sequence[tuple[str, Batch]], loss: LossSpec
    ) -> list[list[RowMetrics]]: ...

    def optim_step(
        self,
        adapter_id: str,
        lr: float,
        *,
        weight_decay: float = 0.0,
        max_grad_norm: float | None = None,
        step_id: str | None = None,
    ) -> StepMetrics: ...

    def zero_grad(self, adapter_id: str) -> None: ...


class FairScheduler:
    """Queues step requests per agent and runs them fairly, several agents per pass."""

    def __init__(
        self,
        backend: TrainingBackend,
        *,
        signature: Callable[[str], Hashable] = lambda adapter_id: 0,
        weights: Mapping[str, float] | None = None,
        max_tokens_per_group: int | None = None,
        multiplex: bool = True,
    ) -> None:
        self.backend = backend
        self.signature = signature
        # Group only as far as one pass goes: bigger groups cost more per token on CPU.
        self.max_tokens_per_group = max_tokens_per_group or backend.max_tokens_per_pass
        self.multiplex = multiplex
        self._weights: dict[str, float] = dict(weights or {})
        self._queues: dict[str, deque[StepRequest]] = {}
        self._vtime: dict[str, float] = {}
        self._clock = 0.0  # start tag of the latest step served (SFQ's system virtual time)
        # submit() runs on an event loop while run_once() runs in a worker thread: every
        # touch of the queues and clocks holds this lock (training itself runs outside it).
        self._lock = threading.Lock()

    def set_weight(self, adapter_id: str, weight: float) -> None:
        """Share of training tokens this agent gets relative to others (default 1)."""
        if weight <= 0:
            raise ValueError("scheduler weights must be positive")
        with self._lock:
            self._weights[adapter_id] = weight

    def submit(self, request: StepRequest) -> None:
        """Queue one step behind the agent's earlier steps (validated now, not when run)."""
        request.batch.validate()
        with self._lock:
            queue = self._queues.setdefault(request.adapter_id, deque())
            if not queue:
                # Newly backlogged: start at the virtual clock, never behind it (no banked
                # credit).
                own = self._vtime.get(request.adapter_id, 0.0)
                self._vtime[request.adapter_id] = max(own, self._clock)
            queue.append(request)

    def pending(self) -> int:
        """Requests queued and not yet run."""
        with self._lock:
            return sum(len(q) for q in list(self._queues.values()))

    def _backlogged(self) -> list[str]:
        return [a for a, q in self._queues.items() if q]

    def next_group(self) -> list[StepRequest]:
        """Dequeue the next requests to run together: the fairest agent first, then joiners."""
        with self._lock:
            return self._next_group()

    def _next_group(self) -> list[StepRequest]:
        agents = sorted(self._backlogged(), key=lambda a: self._vtime[a])
        if not agents:
            return []
        lead = self._queues[agents[0]][0]
        group, tokens = [lead], lead.tokens
        if self.multiplex:
            for agent in agents[1:]:
                head = self._queues[agent][0]
                if head.loss != lead.loss or self.signature(agent) != self.signature(
                    lead.adapter_id
                ):
                    continue
                if tokens + head.tokens > self.max_tokens_per_group:
                    continue
                group.append(head)
                tokens += head.tokens
        for req in group:
            self._queues[req.adapter_id].popleft()
            self._clock = max(self._clock, self._vtime[req.adapter_id])
            self._vtime[req.adapter_id] += req.tokens / self._weights.get(req.adapter_id, 1.0)
        return group

    def run_once(self) -> list[StepResult]:
        """Run one group: one multiplexed forward/backward, then one optimiser step per agent."""
        group = self.next_group()
        if not group:
            return []
        results = [StepResult(req) for req in group]
        try:
            rows = self.backend.forward_backward(
                [(r.adapter_id, r.batch) for r in group], group[0].loss
            )
        except TrainerError as exc:
            for res in results:  # a pass may have accumulated before the failure: discard it
                self.backend.zero_grad(res.request.adapter_id)
                res.error = exc
            return results
        for res, row_metrics in zip(results, rows, strict=True):
            req = res.request
            res.rows = row_metrics
            try:
                res.step = self.backend.optim_step(
                    req.adapter_id,
                    req.lr,
                    weight_decay=req.weight_decay,
                    max_grad_norm=req.max_grad_norm,
                    step_id=req.step_id,
                )
            except TrainerError as exc:
                res.error = exc
        return results

    def run_until_idle(self) -> list[StepResult]:
        """Run groups until every queue is empty; results in the order they ran."""
        out: list[StepResult] = []
        while self.pending():
            out.extend(self.run_once())
        return out
