"""Structured logs: every line carries the ids bound for the work in hand."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from app.core.logging import CHATTY, bound, configure, context


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    chatty = {name: logging.getLogger(name).level for name in CHATTY}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in chatty.items():
        logging.getLogger(name).setLevel(was)
    structlog.reset_defaults()


def test_json_lines_carry_the_bound_ids(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(json_logs=True, level="INFO")
    with bound(request_id="r-1", job_id="j-2"):
        logging.getLogger("clora.test").info("job %s claimed", "j-2")
    logging.getLogger("clora.test").info("after the block")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["event"] == "job j-2 claimed" and first["level"] == "info"
    assert first["request_id"] == "r-1" and first["job_id"] == "j-2"
    assert first["logger"] == "clora.test" and "timestamp" in first
    assert "request_id" not in second and "job_id" not in second


def test_console_lines_are_readable_and_below_the_level_is_dropped(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(json_logs=False, level="WARNING")
    with bound(cycle_id="c-3"):
        logging.getLogger("clora.test").info("not shown")
        logging.getLogger("clora.test").warning("cycle refused")
    [line] = capsys.readouterr().err.splitlines()
    assert "cycle refused" in line and "cycle_id=c-3" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_context_hands_on_only_the_known_ids() -> None:
    with bound(cycle_id="c-4", secret="no"):
        assert context() == {"cycle_id": "c-4"}
    assert context() == {}


def test_http_clients_log_each_request_only_at_debug(restore_logging: None) -> None:
    configure(json_logs=True, level="INFO")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    configure(json_logs=True, level="DEBUG")
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
