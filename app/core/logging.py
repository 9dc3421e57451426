"""Structured logs: one line per event, carrying the ids of the work it belongs to.

`configure()` routes the standard library's logging (every `logging.getLogger(__name__)` in
clora, uvicorn, Celery) through structlog's formatter: JSON lines in deployment, readable
key=value lines in the console (`CLORA_LOG_JSON` decides, default JSON outside development).
`bound(...)` binds ids for the work in hand (a context variable, so concurrent requests and
tasks never mix): the gateway binds `request_id` and `interaction_id`, the worker `cycle_id`,
`experiment_id`, `feedback_id`, the trainer `job_id` plus the ids of the work that queued the
job (`context()` travels in the job's payload).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

IDS = ("request_id", "interaction_id", "cycle_id", "job_id", "experiment_id", "feedback_id")
"""The ids a log line may carry, bound by the work in hand."""

CHATTY = ("httpx", "httpcore")
"""Libraries that log every request at INFO."""


def configure(*, json_logs: bool | None = None, level: str | None = None) -> None:
    """Send every log record through one structlog formatter on stderr (idempotent)."""
    if json_logs is None or level is None:
        from app.core.config import get_settings

        settings = get_settings()
        if json_logs is None:
            json_logs = (
                settings.log_json
                if settings.log_json is not None
                else settings.environment != "development"
            )
        level = level or settings.log_level
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if json_logs
        else [structlog.dev.ConsoleRenderer(colors=False)]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per engine call is noise, and CPU the engine needs on a shared host: the HTTP
    # clients speak at INFO only when everything is asked for (DEBUG).
    for chatty in CHATTY:
        logging.getLogger(chatty).setLevel(
            logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
        )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Bind ids (as strings) to every log line written inside the block."""
    values = {k: str(v) for k, v in ids.items() if v is not None}
    with structlog.contextvars.bound_contextvars(**values):
        yield


def bind(**ids: Any) -> None:
    """Bind ids for the rest of the current context (a request's task, say)."""
    structlog.contextvars.bind_contextvars(**{k: str(v) for k, v in ids.items() if v is not None})


def context() -> dict[str, str]:
    """The ids bound now, to hand to work done elsewhere (a trainer job)."""
    return {k: str(v) for k, v in structlog.contextvars.get_contextvars().items() if k in IDS}
