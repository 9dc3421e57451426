"""Feedback: validate against the tenant's interactions, store once, compile after commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import Conflict, InvalidRequest, NotFound
from app.core.jobs import enqueue
from app.core.public_ids import completion_id, parse_completion_id
from app.feedback.repository import FeedbackRepository
from app.feedback.schemas import FeedbackCreate, FeedbackOut
from app.models import Feedback, Interaction
from app.models.enums import FeedbackKind


@dataclass(frozen=True)
class Author:
    """Who gives feedback: an agent's API key or a signed-in user, always within a tenant."""

    tenant_id: uuid.UUID
    api_key_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None


def _interaction(
    repo: FeedbackRepository, tenant_id: uuid.UUID, value: str, param: str
) -> Interaction:
    interaction_id = parse_completion_id(value)
    row = repo.interaction(tenant_id, interaction_id) if interaction_id else None
    if row is None:
        raise NotFound(f"no interaction {value!r} for this tenant", param=param)
    return row


def to_out(feedback: Feedback) -> FeedbackOut:
    return FeedbackOut(
        id=f"fb-{feedback.id.hex}",
        interaction_id=completion_id(feedback.interaction_id),
        kind=feedback.kind,
        payload=feedback.payload,
        adapter_version_id=str(feedback.adapter_version_id)
        if feedback.adapter_version_id
        else None,
        created_at=feedback.created_at,
    )


def create_feedback(
    session: Session, author: Author, body: FeedbackCreate
) -> tuple[Feedback, bool]:
    """Store one feedback item; a retry with the same idempotency key returns the first one.

    Returns the item and whether it was created now."""
    body.check_kind()
    repo = FeedbackRepository(session)
    if body.idempotency_key:
        existing = repo.by_idempotency_key(author.tenant_id, body.idempotency_key)
        if existing is not None:
            return _same_or_conflict(existing, body), False
    interaction = _interaction(repo, author.tenant_id, body.interaction_id, "interaction_id")
    choices = len((interaction.output or {}).get("choices") or []) or 1
    if body.choice_index >= choices:
        raise InvalidRequest(
            f"the interaction has {choices} choice(s); choice_index {body.choice_index} is not one",
            param="choice_index",
        )
    payload = body.payload()
    if body.kind == "preference" and body.preference and body.preference.rejected_interaction_id:
        rejected = _interaction(
            repo,
            author.tenant_id,
            body.preference.rejected_interaction_id,
            "preference.rejected_interaction_id",
        )
        if rejected.agent_id != interaction.agent_id or rejected.id == interaction.id:
            raise Conflict(
                "a preference compares two different outputs of the same agent",
                param="preference.rejected_interaction_id",
            )
        if _prompt(rejected) != _prompt(interaction):
            raise InvalidRequest(
                "a preference compares two answers to the same prompt; these two interactions "
                "were asked different conversations",
                param="preference.rejected_interaction_id",
            )
        payload["preference"]["rejected_interaction_id"] = str(rejected.id)
    feedback = Feedback(
        id=uuid.uuid4(),
        created_at=datetime.now(UTC),
        tenant_id=author.tenant_id,
        interaction_id=interaction.id,
        kind=FeedbackKind(body.kind),
        payload=payload,
        adapter_version_id=interaction.adapter_version_id,
        author_user_id=author.user_id,
        author_api_key_id=author.api_key_id,
        idempotency_key=body.idempotency_key,
    )
    if not repo.insert_once(feedback):
        # A concurrent retry with the same key won the insert.
        assert body.idempotency_key is not None
        existing = repo.by_idempotency_key(author.tenant_id, body.idempotency_key)
        assert existing is not None
        return _same_or_conflict(existing, body), False
    enqueue(session, "feedback.compile", str(author.tenant_id), str(feedback.id))
    return feedback, True


def _prompt(interaction: Any) -> tuple[Any, Any]:
    """What an interaction was asked: its conversation and tools."""
    request = interaction.request or {}
    return request.get("messages"), request.get("tools")


def _same_or_conflict(existing: Feedback, body: FeedbackCreate) -> Feedback:
    """The stored item when a retry sends exactly the same feedback again; a 409 naming the
    key when the key comes back with anything different (as payment APIs do)."""
    payload = body.payload()
    rejected = (payload.get("preference") or {}).get("rejected_interaction_id")
    if rejected:  # stored normalised to the interaction's UUID
        parsed = parse_completion_id(rejected)
        payload["preference"]["rejected_interaction_id"] = str(parsed) if parsed else rejected
    same = (
        existing.kind == body.kind
        and existing.interaction_id == parse_completion_id(body.interaction_id)
        and existing.payload == payload
    )
    if not same:
        raise Conflict(
            f"idempotency_key {body.idempotency_key!r} was already used for different "
            "feedback; send a new key for new feedback",
            param="idempotency_key",
        )
    return existing


def get_feedback(session: Session, tenant_id: uuid.UUID, value: str) -> Feedback:
    try:
        feedback_id = uuid.UUID(hex=value.removeprefix("fb-"))
    except ValueError:
        feedback_id = None
    found = FeedbackRepository(session).get(tenant_id, feedback_id) if feedback_id else None
    if found is None:
        raise NotFound(f"no feedback {value!r}", param="feedback_id")
    return found
