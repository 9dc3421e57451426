"""A rollback goes through the promotion gate: to a version that never passed it, only with
force, and the force is recorded like a forced promotion."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.adapters import service as registry
from app.core.errors import Conflict
from app.models import AdapterVersion
from app.models.enums import AdapterStatus
from tests.helpers import factories


def _version(db: Session, owner, bot, number: int, verdict: str | None, status: AdapterStatus):  # type: ignore[no-untyped-def]
    metrics = {"gate": {"verdict": verdict, "reason": f"{verdict} by test"}} if verdict else {}
    row = AdapterVersion(
        tenant_id=owner.id,
        agent_id=bot.id,
        number=number,
        path=f"/nowhere/v{number}",
        checksum="0" * 64,
        status=status,
        source="cycle",
        metrics=metrics,
    )
    db.add(row)
    db.flush()
    return row


def test_rolling_back_to_a_version_that_never_passed_needs_force_and_is_recorded(
    db: Session,
) -> None:
    owner = factories.tenant(db)
    bot = factories.agent(db, owner)
    passed = _version(db, owner, bot, 1, "passed", AdapterStatus.candidate)
    refused = _version(db, owner, bot, 2, "failed", AdapterStatus.rejected)
    unevaluated = _version(db, owner, bot, 3, "needs_evaluation", AdapterStatus.candidate)
    registry.promote(db, owner.id, passed.id)
    # A newer candidate the gate refused is not a rollback target without force.
    with pytest.raises(
        Conflict,
        match="did not pass the promotion gate .failed: failed by test.; roll back with force",
    ) as refusal:
        registry.rollback(db, owner.id, bot.id, 2)
    assert refusal.value.param == "force"
    db.refresh(bot)
    assert bot.live_version_id == passed.id and refused.status == AdapterStatus.rejected
    with pytest.raises(Conflict, match="needs_evaluation"):
        registry.rollback(db, owner.id, bot.id, 3, force=False)
    # With force it goes live, and the force is recorded with who did it and how.
    registry.rollback(db, owner.id, bot.id, 2, force=True, by="admin@example.com")
    db.refresh(bot)
    assert bot.live_version_id == refused.id
    forced = refused.metrics["forced"]
    assert (forced["by"], forced["verdict"], forced["action"]) == (
        "admin@example.com",
        "failed",
        "roll back",
    )
    # Back to the version that passed: no force needed, nothing recorded on it.
    registry.rollback(db, owner.id, bot.id, 1)
    db.refresh(bot)
    assert bot.live_version_id == passed.id and "forced" not in passed.metrics
    assert unevaluated.status == AdapterStatus.candidate


def test_the_cli_lists_a_forced_rollback() -> None:
    from app.cli.remote import forced_note

    note = forced_note({"by": "cli", "at": "2026-12-07T10:00:00+00:00", "action": "roll back"})
    assert note == "  forced by cli (roll back) at 2026-12-07T10:00"
    assert forced_note(None) == ""
