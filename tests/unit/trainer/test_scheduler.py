"""The scheduler serves agents fairly, groups compatible steps, and changes no result."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from tests.helpers.tiny import SMALL_LORA, EngineFactory, random_batch
from trainer.batch import Batch
from trainer.errors import NonFiniteError
from trainer.losses import LossSpec
from trainer.metrics import RowMetrics, StepMetrics
from trainer.scheduler import FairScheduler, StepRequest

SFT = LossSpec("sft")


class RecordingBackend:
    """Stands in for the engine where only the order of work matters (no model needed)."""

    max_tokens_per_pass = 4096

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.fail_steps: set[str] = set()
        self.zeroed: list[str] = []

    def forward_backward(
        self, items: Sequence[tuple[str, Batch]], loss: LossSpec
    ) -> list[list[RowMetrics]]:
        self.groups.append([a for a, _ in items])
        return [[] for _ in items]

    def optim_step(
        self,
        adapter_id: str,
        lr: float,
        *,
        weight_decay: float = 0.0,
        max_grad_norm: float | None = None,
        step_id: str | None = None,
    ) -> StepMetrics:
        if adapter_id in self.fail_steps:
            raise NonFiniteError(adapter_id)
        return StepMetrics(adapter_id, 1, 0.0, 1.0, 1, lr)

    def zero_grad(self, adapter_id: str) -> None:
        self.zeroed.append(adapter_id)


def _req(agent: str, seed: int = 0, rows: int = 2, loss: LossSpec = SFT) -> StepRequest:
    return StepRequest(agent, random_batch(seed, rows=rows, length=10), loss, lr=1e-2)


def test_a_light_agent_is_not_starved_by_a_heavy_one() -> None:
    backend = RecordingBackend()
    sched = FairScheduler(backend, multiplex=False)
    for i in range(20):
        sched.submit(_req("heavy", i, rows=8))
    sched.run_once()
    sched.run_once()
    sched.submit(_req("light", 0))
    sched.submit(_req("light", 1))
    sched.run_until_idle()
    order = [g[0] for g in backend.groups]
    # The light agent arrives after two heavy steps and is served within the next few groups.
    assert order.index("light") <= 3
    assert max(i for i, a in enumerate(order) if a == "light") < 10


def test_weights_split_tokens_proportionally() -> None:
    backend = RecordingBackend()
    sched = FairScheduler(backend, weights={"gold": 3.0, "free": 1.0}, multiplex=False)
    for i in range(40):
        sched.submit(_req("gold", i))
        sched.submit(_req("free", i))
    for _ in range(40):
        sched.run_once()
    served = Counter(g[0] for g in backend.groups)
    assert served["gold"] == 30 and served["free"] == 10


def test_compatible_steps_share_a_group_within_the_token_budget() -> None:
    backend = RecordingBackend()
    sched = FairScheduler(backend, max_tokens_per_group=60)  # each request: 2 rows x 10 tokens
    for agent in ("a", "b", "c", "d"):
        sched.submit(_req(agent))
    sched.submit(_req("e", loss=LossSpec("sft", kl_coef=0.0, dpo_beta=0.2)))  # other spec
    sched.run_until_idle()
    assert backend.groups == [["a", "b", "c"], ["d"], ["e"]]


def test_a_refused_step_does_not_stop_the_group() -> None:
    backend = RecordingBackend()
    backend.fail_steps = {"b"}
    sched = FairScheduler(backend)
    for agent in ("a", "b", "c"):
        sched.submit(_req(agent))
    results = sched.run_once()
    assert [r.error is None for r in results] == [True, False, True]
    assert isinstance(results[1].error, NonFiniteError)


def test_scheduled_training_equals_sequential_training(make_engine: EngineFactory) -> None:
    grouped, alone = make_engine(), make_engine(multiplex=False)
    agents = ("a", "b", "c")
    for engine in (grouped, alone):
        for i, a in enumerate(agents):
            engine.create_adapter(a, SMALL_LORA, seed=i)
    sched = FairScheduler(
        grouped,
        signature=lambda a: grouped.store.get(a).pass_signature,
        max_tokens_per_group=4096,
    )
    for step in range(2):
        for i, a in enumerate(agents):
            sched.submit(StepRequest(a, random_batch(10 * step + i), SFT, 1e-2, f"{a}/{step}"))
    results = sched.run_until_idle()
    assert all(r.error is None and r.step is not None for r in results)
    for step in range(2):
        for i, a in enumerate(agents):
            alone.forward_backward([(a, random_batch(10 * step + i))], SFT)
            alone.optim_step(a, 1e-2, step_id=f"{a}/{step}")
    for a in agents:
        for name, t in grouped.store.get(a).master.items():
            torch.testing.assert_close(t, alone.store.get(a).master[name], rtol=1e-4, atol=2e-5)


def test_an_idle_agent_banks_no_credit() -> None:
    backend = RecordingBackend()
    sched = FairScheduler(backend, multiplex=False)
    for i in range(10):  # "busy" works alone for a while
        sched.submit(_req("busy", i))
    for _ in range(10):
        sched.run_once()
    for i in range(6):
        sched.submit(_req("busy", 100 + i))
        sched.submit(_req("late", i))
    sched.run_until_idle()
    # The late agent alternates with the busy one instead of catching up on 10 missed steps.
    order = [g[0] for g in backend.groups[10:]]
    assert order[:4].count("late") == 2


def test_submit_from_another_thread_while_groups_are_taken_loses_nothing() -> None:
    """submit() runs on the event loop while run_once() runs in a worker thread: thousands of
    submissions racing the dequeues neither raise nor lose or repeat a request."""
    import threading

    class Idle:
        max_tokens_per_pass = 10**9

    sched = FairScheduler(Idle())  # type: ignore[arg-type]
    spec = LossSpec(kind="sft")
    batch = Batch(input_ids=[[1, 2, 3]], loss_mask=[[0.0, 1.0, 1.0]])
    taken: list[StepRequest] = []
    done = threading.Event()

    def take() -> None:
        while not done.is_set() or sched.pending():
            taken.extend(sched.next_group())

    worker = threading.Thread(target=take)
    worker.start()
    sent = [StepRequest(f"a{i}", batch, spec, 1e-3, step_id=str(i)) for i in range(5000)]
    for request in sent:
        sched.submit(request)
    done.set()
    worker.join(timeout=60)
    assert sorted(int(r.step_id) for r in taken) == list(range(5000))  # type: ignore[arg-type]
