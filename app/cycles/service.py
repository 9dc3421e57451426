"""Learning cycles: schedules, triggering (manual, cron, every K feedback items), reaping."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.adapters.labels import Labels
from app.adapters.signals import Signals
from app.agents.service import get_agent
from app.core.jobs import enqueue
from app.cycles.repository import CycleRepository
from app.cycles.schemas import CycleRunOut, PromotionRule, ScheduleUpdate
from app.feedback.repository import FeedbackRepository
from app.interactions.repository import InteractionRepository
from app.models import CycleRun, LearningSchedule
from app.models.enums import RunStatus, ScheduleMode
from app.training import queue as training_queue

HEARTBEAT_STALE_S = 120
LISTED_RUNS = 200
"""The most runs the API lists, newest first."""


CHOSEN_FIELDS = (
    "loss_mixture",
    "steps",
    "learning_rate",
    "replay_share",
    "kl_coef",
    "copy_guard",
)
"""Schedule settings stored only when an admin chose a value other than the default."""


def get_schedule(session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> LearningSchedule:
    """The agent's schedule row, created (manual, every setting the default) on first use."""
    repo = CycleRepository(session)
    schedule = repo.schedule(tenant_id, agent_id)
    if schedule is None:
        schedule = LearningSchedule(
            tenant_id=tenant_id, agent_id=agent_id, mode=ScheduleMode.manual, promotion_rule={}
        )
        repo.add(schedule)
    return schedule


def effective_schedule(schedule: LearningSchedule) -> ScheduleUpdate:
    """The schedule as a cycle applies it: what the admin chose, the defaults elsewhere."""
    chosen = {f: getattr(schedule, f) for f in CHOSEN_FIELDS if getattr(schedule, f) is not None}
    return ScheduleUpdate(
        mode=schedule.mode.value,
        cron=schedule.cron,
        every_k=schedule.every_k,
        promotion_rule=PromotionRule(**(schedule.promotion_rule or {})),
        **chosen,
    )


def read_schedule(session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> ScheduleUpdate:
    return effective_schedule(get_schedule(session, tenant_id, agent_id))


def update_schedule(
    session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID, body: ScheduleUpdate
) -> ScheduleUpdate:
    """Store the schedule; a setting equal to the current default is stored as "the default"
    (NULL, or an absent rule key), so it follows the defaults of later releases."""
    schedule = get_schedule(session, tenant_id, agent_id)
    defaults = ScheduleUpdate()
    schedule.mode = ScheduleMode(body.mode)
    schedule.cron = body.cron
    schedule.every_k = body.every_k
    for name in CHOSEN_FIELDS:
        value = getattr(body, name)
        setattr(schedule, name, None if value == getattr(defaults, name) else value)
    rule_defaults = PromotionRule().model_dump()
    schedule.promotion_rule = {
        k: v for k, v in body.promotion_rule.model_dump().items() if rule_defaults[k] != v
    }
    schedule.last_fired_at = schedule.last_fired_at or datetime.now(UTC)
    session.flush()
    return effective_schedule(schedule)


def start_cycle(
    session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID, trigger: str = "manual"
) -> tuple[CycleRun, bool]:
    """Queue a cycle unless one is queued or running for the agent (then return that one)."""
    repo = CycleRepository(session)
    active = repo.active_run(tenant_id, agent_id)
    if active is not None:
        return active, False
    run = CycleRun(id=uuid.uuid4(), tenant_id=tenant_id, agent_id=agent_id, trigger=trigger)
    try:
        with session.begin_nested():
            repo.add(run)
    except IntegrityError:
        # Another trigger queued one between our check and insert: the unique index decides.
        active = repo.active_run(tenant_id, agent_id)
        if active is None:
            raise
        return active, False
    enqueue(session, "cycle.run", str(tenant_id), str(run.id))
    return run, True


def get_run(session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID) -> CycleRun:
    """The tenant's run with this id, else NotFound."""
    return CycleRepository(session).get_or_404(tenant_id, run_id, what="cycle run", param="run_id")


def runs_out(session: Session, tenant_id: uuid.UUID, runs: Sequence[CycleRun]) -> list[CycleRunOut]:
    """The API view of the tenant's runs: agent names and candidate numbers in one query each."""
    labels = Labels.load(
        session, tenant_id, [r.agent_id for r in runs], [r.candidate_version_id for r in runs]
    )
    return [
        CycleRunOut(
            id=str(run.id),
            agent=labels.agent(run.agent_id),
            status=run.status,
            trigger=run.trigger,
            progress=run.progress,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            candidate_version=labels.version(run.candidate_version_id),
            metrics=run.metrics or {},
            signals=Signals.read(run.metrics),
            error=run.error,
        )
        for run in runs
    ]


def run_out(session: Session, run: CycleRun) -> CycleRunOut:
    """The API view of one run."""
    return runs_out(session, run.tenant_id, [run])[0]


def list_runs(
    session: Session, tenant_id: uuid.UUID, agent_name: str | None = None
) -> list[CycleRunOut]:
    """The tenant's newest runs (or one agent's), at most ``LISTED_RUNS`` of them."""
    agent_id = get_agent(session, tenant_id, agent_name).id if agent_name else None
    runs = CycleRepository(session).runs(tenant_id, agent_id, limit=LISTED_RUNS)
    return runs_out(session, tenant_id, runs)


def maybe_trigger_after_feedback(
    session: Session, tenant_id: uuid.UUID, feedback_id: uuid.UUID
) -> CycleRun | None:
    """For an every-K schedule: start a cycle once K feedback items arrived since the last."""
    feedback = FeedbackRepository(session).get(tenant_id, feedback_id)
    if feedback is None:
        return None
    interaction = InteractionRepository(session).get(tenant_id, feedback.interaction_id)
    if interaction is None:
        return None
    repo = CycleRepository(session)
    schedule = repo.schedule(tenant_id, interaction.agent_id)
    if schedule is None or schedule.mode != ScheduleMode.every_k or not schedule.every_k:
        return None
    # Lock the schedule row: concurrent compiles count and fire one at a time.
    session.refresh(schedule, with_for_update=True)
    count = FeedbackRepository(session).count_for_agent_since(
        tenant_id, interaction.agent_id, schedule.last_fired_at
    )
    if count < schedule.every_k:
        return None
    schedule.last_fired_at = datetime.now(UTC)
    run, _ = start_cycle(session, tenant_id, interaction.agent_id, trigger="every_k")
    return run


def tick(session: Session, now: datetime | None = None) -> int:
    """Start the cycles whose cron time has come; returns how many were started."""
    from croniter import croniter

    now = now or datetime.now(UTC)
    started = 0
    for schedule in CycleRepository(session).cron_schedules():
        if not schedule.cron:
            continue
        since = schedule.last_fired_at or schedule.created_at
        due = croniter(schedule.cron, since).get_next(datetime)
        if due <= now:
            schedule.last_fired_at = now
            _, created = start_cycle(session, schedule.tenant_id, schedule.agent_id, trigger="cron")
            started += int(created)
    return started


def reap(
    session: Session,
    now: datetime | None = None,
    *,
    stale_after_s: float = HEARTBEAT_STALE_S,
    max_resumes: int = 3,
    queue: str | None = None,
    lost_after_s: float = 600.0,
) -> int:
    """Resume running cycles whose worker died (no heartbeat); fail them after a few tries;
    send again the task of a cycle queued for ``lost_after_s`` without being claimed. Returns
    how many running cycles were resumed or failed.

    A cycle is never left running forever: it is handed to another worker (whose claim takes
    it over because the heartbeat is stale) or, after ``max_resumes``, marked failed."""
    now = now or datetime.now(UTC)
    overdue = fail_overdue(session, now)
    stale = CycleRepository(session).stale_runs(now - timedelta(seconds=stale_after_s))
    for run in stale:
        resumed = int((run.metrics or {}).get("resumed", 0))
        if resumed >= max_resumes:
            run.status = RunStatus.failed
            run.finished_at = now
            run.error = f"the worker stopped {resumed + 1} times; marked failed"
            continue
        run.metrics = {**(run.metrics or {}), "resumed": resumed + 1}
        run.status = RunStatus.queued  # claimable again, and not resumed twice
        run.heartbeat_at = now  # sent now: not "lost" before lost_after_s has passed again
        options = {"queue": queue} if queue else {}
        enqueue(session, "cycle.run", str(run.tenant_id), str(run.id), **options)
    # A queued cycle whose task never arrives (the broker lost it) would block its agent for
    # good: send it again. A duplicate delivery is harmless: the run's status guard lets only
    # one worker claim it.
    for run in CycleRepository(session).lost_runs(now - timedelta(seconds=lost_after_s)):
        run.heartbeat_at = now
        run.metrics = {
            **(run.metrics or {}),
            "resent": int((run.metrics or {}).get("resent", 0)) + 1,
        }
        options = {"queue": queue} if queue else {}
        enqueue(session, "cycle.run", str(run.tenant_id), str(run.id), **options)
    return len(stale) + overdue


def fail_overdue(session: Session, now: datetime) -> int:
    """Fail running cycles past their deadline, whatever their heartbeat (a runner that hangs
    keeps beating from its thread), and stop their training job: the agent is free for the
    next cycle. A runner that comes back later finds the run no longer its own and stops."""
    overdue = CycleRepository(session).overdue_runs(now)
    for run in overdue:
        allowed = (run.metrics or {}).get("deadline_s")
        run.status = RunStatus.failed
        run.finished_at = now
        run.error = (
            f"the cycle passed its deadline ({allowed} s from its training steps and the "
            "answers its evaluation asks for) and was stopped; the agent is free for the next "
            "cycle (CLORA_CYCLE_DEADLINE_*)"
        )
        training_queue.supersede(session, f"cycle-{run.id}")
    return len(overdue)
