"""The one narrow door from app/ to the trainer.

Everything trains on the trainer service (`app.training`), the one process that loads the
base model for training: `train_adapter` puts a learning cycle's durable job on its Postgres
queue and follows the job's step rows; `RemoteTrainer` sends RL experiment steps to an ``rl``
job and waits on a Redis reply list. Rollouts never load weights: `play_tokens` samples
token-level episodes through the engine with the base model's tokenizer only.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.config import get_settings
from app.core.logging import context as log_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraShape:
    rank: int
    alpha: int
    target_modules: tuple[str, ...]


LEARNED_MARGIN = 1.0
"""A cycle stops training once every SFT row's target is the greedy choice by at least this
many nats at every token (`trainer.losses.greedy_margin`): the corrections are learned, and
more steps would only move the adapter further from its parent. The margin leaves room for
the serving engine's numerics, which differ slightly from the trainer's."""


@dataclass(frozen=True)
class TrainStep:
    step: int
    losses: dict[str, float]
    learned: bool = False
    """The job stopped after this step: every SFT row was greedy by `stop_margin`."""
    tokens: int = 0
    """Padded tokens the step trained on."""


@dataclass(frozen=True)
class EnvironmentResult:
    """Greedy episodes of an environment's tasks on one adapter, graded."""

    n: int
    """Episodes played."""
    reward: float
    """Mean reward (for the calculator: the share answered correctly)."""
    turns: list[dict[str, list[int]]]
    """Every assistant turn as the engine tokenised it: prompt and completion token ids."""
    task_prompts: list[str] = field(default_factory=list)
    """The task prompt each of ``turns`` answers, in the same order."""


def environment_names() -> list[str]:
    """Names of the registered RL environments."""
    from trainer.envs import ENVIRONMENTS

    return sorted(ENVIRONMENTS)


def get_environment(name: str) -> Any:
    """The registered RL environment ``name`` (KeyError when there is none)."""
    from trainer.envs import get_environment as lookup

    return lookup(name)


def grade_first_steps(
    environment: str,
    prompts: Sequence[Mapping[str, Any]],
    pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
) -> list[tuple[bool, bool] | None]:
    """For each prompt (``{"messages", "tools"}``) that poses one of ``environment``'s tasks
    with the environment's tools offered: whether the first and the second answer of its pair
    (the parent's and the candidate's) are right first steps (`Environment.grade_first_step`).
    None where either cannot be graded, and for any prompt whose grading fails: an odd prompt
    leaves its answers ungraded, it never fails the cycle."""
    from trainer.envs import get_environment as lookup

    env = lookup(environment)
    tools = env.tool_names()
    out: list[tuple[bool, bool] | None] = []
    for prompt, (before, after) in zip(prompts, pairs, strict=True):
        grade: tuple[bool, bool] | None = None
        try:
            offered = {t["function"]["name"] for t in prompt.get("tools") or []}
            task = env.task_of(prompt["messages"]) if tools <= offered else None
            if task is not None:
                parent, candidate = (
                    env.grade_first_step(task, before),
                    env.grade_first_step(task, after),
                )
                if parent is not None and candidate is not None:
                    grade = (parent, candidate)
        except Exception:  # noqa: BLE001 - an odd prompt stays ungraded
            log.warning("could not grade a held-back prompt", exc_info=True)
        out.append(grade)
    return out


def file_task(index: int, prompt: str, answer: str) -> Any:
    """An environment task made from a line of a file: its prompt and the answer to reward."""
    from trainer.envs.base import Task

    return Task(id=f"line-{index}", prompt=prompt, answer=answer, template="file", difficulty=0)


def chat_tokens(base_model_path: Path) -> Any:
    """The chat template's token framing for the base model's tokenizer (one per process
    and path; loads the tokenizer only, never the weights)."""
    return _chat_tokens(str(base_model_path))


@functools.lru_cache(maxsize=4)
def _chat_tokens(path: str) -> Any:
    from transformers import AutoTokenizer

    from app.sampler.formats import engine_formats
    from trainer.envs.tokens import ChatTokens

    settings = get_settings()
    # Sampled turns are read with the tool format the engine reads them with.
    tool_format = engine_formats(Path(path), tool_parser=settings.engine_tool_parser).tool_parser
    return ChatTokens(AutoTokenizer.from_pretrained(path, local_files_only=True), tool_format)


def is_engine_failure(exc: BaseException) -> bool:
    """Whether ``exc`` from rollouts or evaluation is the engine going away (dead, restarting,
    or restarted without the adapter: a 404), not a fault of the caller."""
    import asyncio

    import aiohttp

    from app.core.errors import EngineUnavailable
    from trainer.envs.tokens import EngineRequestError

    if isinstance(exc, EngineRequestError):
        return exc.status == 404 or exc.status >= 500
    return isinstance(exc, EngineUnavailable | aiohttp.ClientError | asyncio.TimeoutError | OSError)


def token_sampler(engine_url: str) -> Any:
    """A token-in, token-out client of the engine (`trainer.envs.tokens.CompletionsEngine`)."""
    from trainer.envs.tokens import CompletionsEngine

    return CompletionsEngine(engine_url)


async def play_tokens(
    sampler: Any, codec: Any, model: str, env: Any, tasks: Sequence[Any], **kw: Any
) -> Any:
    """Play ``tasks`` of ``env`` on ``model`` as token-level episodes (see
    `trainer.envs.tokens.play` for the options)."""
    from trainer.envs.tokens import play

    return await play(sampler, codec, model, env, list(tasks), **kw)


def rl_batch(episodes: list[Any], group_size: int, advantage: str) -> tuple[Any, int, int]:
    """Rows weighted by their episode's group-relative advantage: one row per episode when
    it was played token-level (its whole trajectory, tool results masked out of the loss),
    otherwise one row per assistant turn.

    Groups whose samples all scored the same carry no signal and are left out."""
    from trainer.batch import Batch
    from trainer.losses import group_advantages

    advantages = group_advantages([e.reward for e in episodes], group_size, advantage).tolist()  # type: ignore[arg-type]
    ids: list[list[int]] = []
    masks: list[list[float]] = []
    logps: list[list[float]] = []
    advs: list[float] = []
    used, tokens = 0, 0
    for g in range(0, len(episodes), group_size):
        group = episodes[g : g + group_size]
        if len({e.reward for e in group}) == 1:
            continue
        used += 1
        for episode, adv in zip(group, advantages[g : g + group_size], strict=True):
            if episode.trajectory is not None:
                path = episode.trajectory
                ids.append(list(path.token_ids))
                masks.append(list(path.loss_mask))
                logps.append(list(path.logprobs))
                advs.append(float(adv))
                tokens += int(sum(path.loss_mask))
                continue
            for turn in episode.assistant_turns:
                if not (turn.prompt_token_ids and turn.completion_token_ids and turn.logprobs):
                    continue
                if len(turn.logprobs) != len(turn.completion_token_ids):
                    continue
                prompt, completion = turn.prompt_token_ids, turn.completion_token_ids
                ids.append([*prompt, *completion])
                masks.append([0.0] * len(prompt) + [1.0] * len(completion))
                logps.append([0.0] * len(prompt) + list(turn.logprobs))
                advs.append(float(adv))
                tokens += len(completion)
    if not ids:
        return None, used, tokens
    return (
        Batch(input_ids=ids, loss_mask=masks, advantages=advs, sampling_logprobs=logps),
        used,
        tokens,
    )


def play_environment(
    engine_url: str, model: str, environment: str, split: str, n: int, *, seed: int = 0
) -> EnvironmentResult:
    """Play ``n`` tasks of ``split`` greedily on ``model``, token-level through the engine
    (the tokenizer is the configured base model's)."""
    import asyncio

    from trainer.envs import get_environment

    env = get_environment(environment)
    tasks = env.tasks(split, n, seed=seed)  # type: ignore[arg-type]
    codec = chat_tokens(get_settings().base_model_path)

    async def play() -> list[Any]:
        sampler = token_sampler(engine_url)
        try:
            return await play_tokens(sampler, codec, model, env, tasks, temperature=0.0)  # type: ignore[no-any-return]
        finally:
            await sampler.close()

    episodes = asyncio.run(play())
    played = [
        (e.task.prompt, t)
        for e in episodes
        for t in e.assistant_turns
        if t.prompt_token_ids and t.completion_token_ids
    ]
    turns = [
        {"prompt_token_ids": t.prompt_token_ids, "completion_token_ids": t.completion_token_ids}
        for _, t in played
    ]
    reward = sum(e.reward for e in episodes) / len(episodes) if episodes else 0.0
    return EnvironmentResult(len(episodes), reward, turns, [prompt for prompt, _ in played])


class TrainingFailed(Exception):
    """A training job ended without a trained adapter (its error says why)."""


Payload = dict[str, Any]
"""One training example as stored and as the trainer reads it: a JSON document (a chat, a
preference pair, a rated token row, or a KL prompt's token ids)."""


@dataclass(frozen=True)
class Examples:
    """A training job's rows by loss: corrections (``sft``), preferences (``dpo``), rated
    rows (``pg``), and two guards: the untouched prompts the KL term keeps (``kl``) and the
    pairs that train prompts near a correction away from its answer verbatim (``away``, a
    DPO loss of its own weight)."""

    sft: Sequence[Payload] = ()
    dpo: Sequence[Payload] = ()
    pg: Sequence[Payload] = ()
    kl: Sequence[Payload] = ()
    away: Sequence[Payload] = ()

    def by_loss(self) -> dict[str, list[Payload]]:
        return {
            "sft": list(self.sft),
            "dpo": list(self.dpo),
            "pg": list(self.pg),
            "kl": list(self.kl),
            "away": list(self.away),
        }


GUARDS = ("kl", "away")
"""Loss kinds that keep the parent's behaviour rather than teach: rows of them alone are
nothing to train."""


@dataclass(frozen=True)
class TrainingRequest:
    """What one training job trains: a fresh copy of ``parent_dir`` (or a new adapter of
    ``lora``'s shape) on ``examples``.

    Each step runs one forward/backward per loss with a non-zero weight (``mixture``, and
    ``kl_coef`` for ``kl``, ``away`` in the mixture for the pairs away from a copy), then one
    optimiser step (`trainer.objective`). ``weight`` is the
    job's fair share of the trainer under contention (`share`). With ``stop_margin`` the job
    stops before ``steps`` once every SFT row is answered greedily by that margin
    (`LEARNED_MARGIN`). With ``batch_size`` each step trains on that many rows of each kind,
    epoch by epoch in an order fixed by ``seed`` (`trainer.objective.step_examples`); without
    it, on all of them. ``dpo_beta`` is the DPO loss's beta."""

    lora: LoraShape
    parent_dir: Path | None
    examples: Examples
    mixture: dict[str, float]
    steps: int
    lr: float
    kl_coef: float = 0.0
    weight: float = 1.0
    stop_margin: float | None = None
    batch_size: int | None = None
    dpo_beta: float = 0.1
    seed: int = 0

    def weighted(self) -> dict[str, int]:
        """How many rows of each loss there are to learn from (the guards' rows keep, they
        teach nothing)."""
        return {k: len(v) for k, v in self.examples.by_loss().items() if v and k not in GUARDS}

    def nothing_to_train(self) -> str | None:
        """Why this request would train nothing, or None: no rows of any loss, or every row
        of a loss whose weight in the mixture is zero."""
        rows = self.weighted()
        if not rows:
            return "no new training examples"
        if all(float(self.mixture.get(k, 0.0)) <= 0 for k in rows):
            return (
                "nothing to train: every new example has zero weight in the loss mixture ("
                + ", ".join(
                    f"{n} {k} at {float(self.mixture.get(k, 0.0)):g}" for k, n in rows.items()
                )
                + "); give that loss a weight in the schedule's loss_mixture"
            )
        return None


def train_adapter(
    adapter_id: str,
    request: TrainingRequest,
    *,
    tenant_id: uuid.UUID,
    agent_id: uuid.UUID | None,
    write_to: Path,
    on_step: Callable[[TrainStep], None] | None = None,
    on_wait: Callable[[], None] | None = None,
    poll_s: float = 0.25,
) -> list[TrainStep]:
    """Train ``request`` on the trainer service.

    Enqueues a durable ``train`` job, wakes the trainer, follows its step rows (``on_step``
    for each) and returns once the adapter is written to ``write_to``. Raises
    `TrainingFailed` when the job fails, is cancelled, or no live trainer claims it within
    ``trainer_wait_s``. ``on_wait`` is called every few seconds while the job is queued or
    running (the caller's own heartbeat)."""
    from app.core.db import unit_of_work
    from app.core.redis import get_redis
    from app.models import TrainingJob
    from app.models.enums import RunStatus
    from app.training import queue

    settings = get_settings()
    lora = request.lora
    payload = {
        "adapter_id": adapter_id,
        "lora": {
            "rank": lora.rank,
            "alpha": lora.alpha,
            "target_modules": list(lora.target_modules),
        },
        "parent_dir": str(request.parent_dir) if request.parent_dir else None,
        "examples": request.examples.by_loss(),
        "mixture": dict(request.mixture),
        "steps": request.steps,
        "lr": request.lr,
        "kl_coef": request.kl_coef,
        "stop_margin": request.stop_margin,
        "batch_size": request.batch_size,
        "dpo_beta": request.dpo_beta,
        "seed": request.seed,
        "write_to": str(write_to),
        "tenant": str(tenant_id),
        "weight": request.weight,
        "log_context": log_context(),  # the trainer's lines about this job carry our ids
    }
    with unit_of_work() as session:
        queue.supersede(session, adapter_id)
        job_id = queue.enqueue(session, tenant_id, agent_id, "train", payload, request.steps).id
    redis = get_redis()
    redis.lpush(queue.WAKE_KEY, str(job_id))
    history: list[TrainStep] = []
    waited_since = last_wait_call = time.monotonic()
    while True:
        if on_wait is not None and time.monotonic() - last_wait_call > 5.0:
            on_wait()
            last_wait_call = time.monotonic()
        with unit_of_work() as session:
            for row in queue.steps_after(session, job_id, len(history)):
                record = TrainStep(
                    row.step,
                    dict(row.metrics.get("losses", {})),
                    bool(row.metrics.get("learned")),
                    int(row.metrics.get("tokens", 0)),
                )
                history.append(record)
                if on_step is not None:
                    on_step(record)
            job = session.get(TrainingJob, job_id)
            assert job is not None
            status, error = job.status, job.error
            if status == RunStatus.queued and redis.get(queue.ALIVE_KEY) is None:
                if time.monotonic() - waited_since > settings.trainer_wait_s:
                    queue.finish(session, job_id, RunStatus.cancelled, error="no live trainer")
                    raise TrainingFailed(
                        f"no trainer service claimed job {job_id} within "
                        f"{settings.trainer_wait_s:.0f} s: is `clora trainer` running?"
                    )
            else:
                waited_since = time.monotonic()
        if status == RunStatus.succeeded:
            return history
        if status in (RunStatus.failed, RunStatus.cancelled):
            raise TrainingFailed(error or f"training job {job_id} {status}")
        time.sleep(poll_s)


def share(tenant_slug: str, agent_settings: dict[str, Any] | None) -> float:
    """A training job's fair-share weight: the tenant's (`CLORA_TRAINER_TENANT_WEIGHTS`,
    default 1) times the agent's own `train_weight` (default 1)."""
    tenant = float(get_settings().trainer_tenant_weights.get(tenant_slug, 1.0))
    return tenant * float((agent_settings or {}).get("train_weight", 1.0))


@dataclass(frozen=True)
class RLStepResult:
    """One RL optimiser step's outcome: its mean loss, or the error that stopped it."""

    loss: float | None
    error: Exception | None = None


class RemoteTrainer:
    """RL experiment steps on the trainer service, the one process that trains.

    Each experiment adapter is one durable ``rl`` job; each step's batch goes to the job's
    Redis inbox (`queue.RL_INBOX`) and the trainer wakes at once (`queue.WAKE_KEY`). The step
    shares rounds with every other job, and its result comes back on a list this loop blocks
    on (`queue.RL_REPLY`), so a step waits for the trainer, never for a poll. A request the
    trainer lost in a crash is sent again once the job is reclaimed; the trainer answers a
    step it already applied from its record."""

    def __init__(self) -> None:
        self._jobs: dict[str, uuid.UUID] = {}
        self.busy_s = 0.0

    def ensure_adapter(
        self,
        adapter_id: str,
        lora: LoraShape,
        parent_dir: Path | None,
        seed: int,
        *,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID | None,
        weight: float = 1.0,
        steps: int = 0,
    ) -> None:
        """Queue the adapter's ``rl`` job (a fresh copy of ``parent_dir``, or a new adapter)."""
        from app.core.db import unit_of_work
        from app.core.redis import get_redis
        from app.training import queue

        payload = {
            "adapter_id": adapter_id,
            "lora": {
                "rank": lora.rank,
                "alpha": lora.alpha,
                "target_modules": list(lora.target_modules),
            },
            "parent_dir": str(parent_dir) if parent_dir else None,
            "seed": seed,
            "tenant": str(tenant_id),
            "weight": weight,
            "log_context": log_context(),
        }
        with unit_of_work() as session:
            queue.supersede(session, adapter_id)
            job = queue.enqueue(session, tenant_id, agent_id, "rl", payload, steps)
            self._jobs[adapter_id] = job.id
        get_redis().lpush(queue.WAKE_KEY, str(self._jobs[adapter_id]))

    async def step(
        self, adapter_id: str, batch: Any, advantage: str, lr: float, step_id: str, save_to: Path
    ) -> RLStepResult:
        """Send one step (its number is the last part of ``step_id`` plus one) and wait for
        it; the trainer writes the adapter to ``save_to``. ``advantage`` is unused: RL
        batches carry their advantages."""
        import asyncio

        started = time.perf_counter()
        step = int(step_id.rsplit(":", 1)[1]) + 1
        try:
            return await asyncio.to_thread(self._step, adapter_id, batch, lr, step, save_to)
        finally:
            self.busy_s += time.perf_counter() - started

    async def save(self, adapter_id: str, step_id: str, save_to: Path) -> None:
        """Have the trainer write the adapter as it is to ``save_to`` (a step that trained
        nothing still publishes a version)."""
        import asyncio

        step = int(step_id.rsplit(":", 1)[1]) + 1
        result = await asyncio.to_thread(self._step, adapter_id, None, 0.0, step, save_to)
        if result.error is not None:
            raise result.error

    def _step(
        self, adapter_id: str, batch: Any | None, lr: float, step: int, save_to: Path
    ) -> RLStepResult:
        import dataclasses
        import json

        from app.core.db import unit_of_work
        from app.core.redis import get_redis
        from app.models import TrainingJob
        from app.models.enums import RunStatus
        from app.training import queue

        job_id, redis = self._jobs[adapter_id], get_redis()
        body = dataclasses.asdict(batch) if batch is not None else None
        request = json.dumps({"step": step, "lr": lr, "save_to": str(save_to), "batch": body})
        inbox, reply = (
            queue.RL_INBOX.format(job=job_id),
            queue.RL_REPLY.format(job=job_id, step=step),
        )
        redis.rpush(inbox, request)
        redis.lpush(queue.WAKE_KEY, str(job_id))
        claims: int | None = None
        waited_since = time.monotonic()
        while True:
            got = redis.blpop([reply], timeout=2)
            if got is not None:
                answer = json.loads(got[1])
                if answer.get("error"):
                    return RLStepResult(None, TrainingFailed(answer["error"]))
                return RLStepResult(float(answer.get("losses", {}).get("pg", 0.0)))
            with unit_of_work() as session:
                job = session.get(TrainingJob, job_id)
                assert job is not None
                status, error, attempts = job.status, job.error, job.attempts
            if status in (RunStatus.failed, RunStatus.cancelled, RunStatus.succeeded):
                raise TrainingFailed(error or f"training job {job_id} {status}")
            if status == RunStatus.queued and redis.get(queue.ALIVE_KEY) is None:
                if time.monotonic() - waited_since > get_settings().trainer_wait_s:
                    raise TrainingFailed("no trainer service is running: start `clora trainer`")
            else:
                waited_since = time.monotonic()
            if claims is not None and attempts > claims:  # reclaimed: our request may be lost
                redis.rpush(inbox, request)
                redis.lpush(queue.WAKE_KEY, str(job_id))
            claims = attempts

    def drop(self, adapter_id: str) -> None:
        """End the adapter's job (its versions are published already)."""
        import json

        from app.core.redis import get_redis
        from app.training import queue

        job_id = self._jobs.pop(adapter_id, None)
        if job_id is not None:
            get_redis().rpush(queue.RL_INBOX.format(job=job_id), json.dumps({"done": True}))
            get_redis().lpush(queue.WAKE_KEY, str(job_id))
