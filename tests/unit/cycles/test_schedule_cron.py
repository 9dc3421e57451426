"""The server takes the same cron expressions as the UI: 5 fields of standard syntax."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.cycles.schemas import ScheduleUpdate

VALID = ["*/15 * * * *", "0 3 * * 1-5", "0 2 * jan-mar mon,fri", "0 0 1 * 7"]
INVALID = ["61 * * * *", "* * *", "0 0 * * * *", "@daily", "0 0 L * *", "0 0 * * 1#2", "0 0 ? * *"]


@pytest.mark.parametrize("cron", VALID)
def test_standard_expressions_are_taken(cron: str) -> None:
    assert ScheduleUpdate(mode="cron", cron=cron).cron == cron


@pytest.mark.parametrize("cron", INVALID)
def test_what_the_ui_refuses_the_server_refuses(cron: str) -> None:
    with pytest.raises(ValidationError, match="5-field cron expression"):
        ScheduleUpdate(mode="cron", cron=cron)
