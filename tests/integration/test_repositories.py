"""Repositories on the real Postgres: tenant scoping, key hashing and revocation, constraints."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.agents.repository import AgentRepository
from app.agents.schemas import AgentIn
from app.core.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from app.datasets.service import export_examples, import_examples
from app.feedback.repository import ExampleRepository
from app.models import AdapterVersion, ApiKey, CycleRun
from app.models.enums import ExampleSplit, RunStatus
from app.tenants import service as tenants
from app.tenants.repository import ApiKeyRepository
from tests.helpers import factories


def test_agent_queries_never_cross_tenants(db: Session) -> None:
    a, b = factories.tenant(db), factories.tenant(db)
    agent_a = factories.agent(db, a, "shared-name")
    agent_b = factories.agent(db, b, "shared-name")
    repo = AgentRepository(db)
    assert repo.get_by_name(a.id, "shared-name").id == agent_a.id  # type: ignore[union-attr]
    assert repo.get_by_name(b.id, "shared-name").id == agent_b.id  # type: ignore[union-attr]
    assert repo.get(a.id, agent_b.id) is None
    assert [x.id for x in repo.list(a.id)] == [agent_a.id]


def test_api_key_keys_list_is_tenant_scoped(db: Session) -> None:
    a, b = factories.tenant(db), factories.tenant(db)
    factories.api_key(db, a)
    factories.api_key(db, b)
    repo = ApiKeyRepository(db)
    assert {k.tenant_id for k in repo.list(a.id)} == {a.id}


def test_api_key_is_stored_hashed_and_authenticates(db: Session) -> None:
    owner = factories.tenant(db)
    key, plaintext = tenants.create_api_key(db, owner.id, "k")
    stored = db.get(ApiKey, key.id)
    assert stored is not None
    assert plaintext not in stored.key_hash and stored.key_hash.startswith("$argon2")
    assert plaintext.startswith(stored.prefix + "_")
    principal = tenants.authenticate(db, plaintext)
    assert principal.tenant_id == owner.id and principal.api_key_id == key.id


@pytest.mark.parametrize("bad", [None, "", "nope", "clora_000000000000_x", "clora_" + "a" * 300])
def test_unknown_or_malformed_keys_are_refused(db: Session, bad: str | None) -> None:
    with pytest.raises(Unauthenticated):
        tenants.authenticate(db, bad)


def test_right_prefix_wrong_secret_is_refused(db: Session) -> None:
    owner = factories.tenant(db)
    _, plaintext = tenants.create_api_key(db, owner.id, "k")
    with pytest.raises(Unauthenticated):
        tenants.authenticate(db, plaintext[:-3] + "xyz")


def test_revoked_key_is_refused_at_once(db: Session) -> None:
    owner = factories.tenant(db)
    key, plaintext = tenants.create_api_key(db, owner.id, "k")
    tenants.authenticate(db, plaintext)  # cached as verified
    tenants.revoke_api_key(db, owner.id, key.id)
    with pytest.raises(Unauthenticated):
        tenants.authenticate(db, plaintext)


def test_revoke_is_tenant_scoped(db: Session) -> None:
    a, b = factories.tenant(db), factories.tenant(db)
    key, plaintext = tenants.create_api_key(db, a.id, "k")
    with pytest.raises(NotFound):
        tenants.revoke_api_key(db, b.id, key.id)
    assert tenants.authenticate(db, plaintext).tenant_id == a.id


def test_duplicate_tenant_and_agent_names_conflict(db: Session) -> None:
    owner = factories.tenant(db, "dup-tenant")
    with pytest.raises(Conflict):
        tenants.create_tenant(db, "dup-tenant")
    factories.agent(db, owner, "bot")
    with pytest.raises(Conflict):
        factories.agent(db, owner, "bot")


@pytest.mark.parametrize("name", ["../etc", "Bot", "a/b", "x@v1", "", "-lead"])
def test_unsafe_names_are_refused(db: Session, name: str) -> None:
    owner = factories.tenant(db)
    with pytest.raises(InvalidRequest):
        factories.agent(db, owner, name)


def test_an_overlong_agent_name_is_refused_before_the_service() -> None:
    with pytest.raises(ValidationError, match="at most 63 characters"):
        AgentIn(name="a" * 64)
    assert AgentIn(name="a" * 63).name == "a" * 63


def test_adapter_version_numbers_are_unique_per_agent(db: Session) -> None:
    owner = factories.tenant(db)
    bot = factories.agent(db, owner)
    row = dict(tenant_id=owner.id, agent_id=bot.id, number=1, path="p", checksum="c")
    db.add(AdapterVersion(**row))
    db.flush()
    db.add(AdapterVersion(**row))
    with pytest.raises(IntegrityError):
        db.flush()


def test_one_active_cycle_per_agent(db: Session) -> None:
    owner = factories.tenant(db)
    bot = factories.agent(db, owner)
    db.add(CycleRun(tenant_id=owner.id, agent_id=bot.id, status=RunStatus.succeeded))
    db.add(CycleRun(tenant_id=owner.id, agent_id=bot.id, status=RunStatus.queued))
    db.flush()
    db.add(CycleRun(tenant_id=owner.id, agent_id=bot.id, status=RunStatus.running))
    with pytest.raises(IntegrityError):
        db.flush()


def test_untouched_interactions_are_answered_ones_no_feedback_touches(db: Session) -> None:
    """What a cycle keeps: answered interactions with token ids, never one that was rated,
    corrected or named as the rejected side of a preference; never another tenant's."""
    from datetime import UTC, datetime

    from app.interactions.repository import InteractionRepository
    from app.models import Feedback
    from app.models.enums import FeedbackKind

    owner, other = factories.tenant(db), factories.tenant(db)
    bot, foreign = factories.agent(db, owner), factories.agent(db, other)

    def answered(tenant, agent, text):  # type: ignore[no-untyped-def]
        row = factories.interaction(db, tenant, agent, text)
        row.prompt_token_ids, row.completion_token_ids = [1, 2, 3], [4, 5]
        row.completed_at, row.error = datetime.now(UTC), None  # a success: JSON null error
        db.flush()
        return row

    plain, rated, rejected = (answered(owner, bot, t) for t in ("plain", "rated", "rejected"))
    chosen = answered(owner, bot, "chosen")
    answered(other, foreign, "foreign")
    factories.interaction(db, owner, bot, "failed, no tokens")
    db.add(
        Feedback(
            tenant_id=owner.id,
            interaction_id=rated.id,
            kind=FeedbackKind.rating,
            payload={"rating": {"thumbs": "up"}},
        )
    )
    db.add(
        Feedback(
            tenant_id=owner.id,
            interaction_id=chosen.id,
            kind=FeedbackKind.preference,
            payload={"preference": {"rejected_interaction_id": str(rejected.id)}},
        )
    )
    db.flush()
    rows = InteractionRepository(db).untouched(owner.id, bot.id, limit=10)
    assert [r.id for r in rows] == [plain.id]


def test_an_imported_file_exports_in_its_own_order(db: Session) -> None:
    """Examples imported in one call list in the file's order (CI once exported a two-line
    file swapped: every line had had the same timestamp)."""
    owner = factories.tenant(db)
    agent = factories.agent(db, owner, "ordered")
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"q{i}"},
                    {"role": "assistant", "content": f"a{i}"},
                ]
            }
        )
        for i in range(120)
    ]
    import_examples(db, owner.id, agent.id, lines, ExampleSplit.eval)
    exported = [
        json.loads(line)["messages"][0]["content"]
        for line in export_examples(db, owner.id, agent.id, ExampleSplit.eval)
    ]
    assert exported == [f"q{i}" for i in range(120)]
    # The order may not rest on where Postgres happened to put the rows: a busy table fills
    # earlier pages' free space first, and ties then come back in any order.
    stamps = [e.created_at for e in ExampleRepository(db).for_agent(owner.id, agent.id)]
    assert all(a < b for a, b in pairwise(stamps))
