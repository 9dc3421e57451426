"""Enumerations stored as checked strings."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Enum


class Role(StrEnum):
    operator = "operator"
    admin = "admin"
    platform_admin = "platform_admin"


class AdapterStatus(StrEnum):
    candidate = "candidate"
    live = "live"
    retired = "retired"
    rejected = "rejected"


class FeedbackKind(StrEnum):
    rating = "rating"
    correction = "correction"
    preference = "preference"


class ExampleKind(StrEnum):
    sft = "sft"
    preference = "preference"
    reward = "reward"


class ExampleSplit(StrEnum):
    train = "train"
    eval = "eval"


class ScheduleMode(StrEnum):
    manual = "manual"
    cron = "cron"
    every_k = "every_k"


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    rejected = "rejected"
    failed = "failed"
    cancelled = "cancelled"
    needs_evaluation = "needs_evaluation"
    """A cycle whose candidate had nothing to be compared on; it stays a candidate."""


ACTIVE_RUN_STATUSES = (RunStatus.queued, RunStatus.running)


def checked(enum_cls: type[StrEnum]) -> Enum:
    """A VARCHAR column with a CHECK constraint listing the enum's values."""
    return Enum(
        enum_cls,
        native_enum=False,
        create_constraint=True,
        length=24,
        name=enum_cls.__name__.lower(),
        values_callable=lambda e: [m.value for m in e],
    )
