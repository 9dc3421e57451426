"""Turn one feedback item into training examples with provenance.

Rules (documented in docs/FEEDBACK.md):
- correction: an SFT target (the prompt followed by the corrected assistant message) and a
  preference pair (corrected over original). Every fifth correction of an agent, counted in
  arrival order, is held out as evaluation data and never trained on. When an interaction is
  corrected again, the latest correction wins: earlier corrections' examples are superseded.
- preference: a DPO pair (chosen over rejected) on the interaction's prompt.
- rating: a reward on the logged completion tokens, with the logged sampling logprobs, for
  the off-policy policy-gradient loss.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.feedback.repository import ExampleRepository, FeedbackRepository
from app.models import Feedback, Interaction, TrainingExample
from app.models.enums import ExampleKind, ExampleSplit, FeedbackKind

EVAL_EVERY = 5


class FeedbackGone(Exception):
    """The feedback row no longer exists (deleted with its tenant); nothing to compile."""


def _prompt(interaction: Interaction) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    request = interaction.request or {}
    return list(request.get("messages", [])), request.get("tools")


def assistant_message(message: dict[str, Any]) -> dict[str, Any]:
    """An assistant message as examples store it: its text and tool calls, nothing else."""
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    return out


def _chosen(
    interaction: Interaction, index: int
) -> tuple[dict[str, Any], list[int] | None, list[float] | None]:
    """The message, token ids and sampling logprobs of one choice (0: the columns)."""
    if index == 0:
        output = interaction.output or {}
        return output, interaction.completion_token_ids, interaction.completion_logprobs
    choice = (interaction.output or {})["choices"][index]
    return choice["message"], choice["completion_token_ids"], choice["completion_logprobs"]


def _correction_split(session: Session, feedback: Feedback, agent_id: uuid.UUID) -> ExampleSplit:
    """Deterministic hold-out: the agent's 5th, 10th, ... correction goes to evaluation."""
    earlier = session.scalar(
        select(func.count())
        .select_from(Feedback)
        .join(Interaction, Interaction.id == Feedback.interaction_id)
        .where(
            Feedback.tenant_id == feedback.tenant_id,
            Interaction.agent_id == agent_id,
            Feedback.kind == FeedbackKind.correction,
            Feedback.created_at < feedback.created_at,
        )
    )
    position = int(earlier or 0) + 1
    return ExampleSplit.eval if position % EVAL_EVERY == 0 else ExampleSplit.train


def compile_feedback(session: Session, tenant_id: uuid.UUID, feedback_id: uuid.UUID) -> int:
    """Write the examples of one feedback item; re-running it writes nothing new."""
    feedback_repo = FeedbackRepository(session)
    examples = ExampleRepository(session)
    feedback = feedback_repo.get(tenant_id, feedback_id)
    if feedback is None:
        raise FeedbackGone(str(feedback_id))
    interaction = feedback_repo.interaction(tenant_id, feedback.interaction_id)
    if interaction is None:
        raise FeedbackGone(f"interaction of {feedback_id}")
    messages, tools = _prompt(interaction)
    output, token_ids, logprobs = _chosen(interaction, feedback.payload.get("choice_index", 0))
    original = assistant_message(output)
    provenance = dict(
        tenant_id=tenant_id,
        agent_id=interaction.agent_id,
        feedback_id=feedback.id,
        interaction_id=interaction.id,
        adapter_version_id=feedback.adapter_version_id,
        author_user_id=feedback.author_user_id,
    )
    rows: list[TrainingExample] = []
    if feedback.kind == FeedbackKind.correction:
        corrected = assistant_message(feedback.payload["correction"])
        split = _correction_split(session, feedback, interaction.agent_id)
        rows.append(
            TrainingExample(
                kind=ExampleKind.sft,
                split=split,
                payload={"messages": [*messages, corrected], "tools": tools},
                **provenance,
            )
        )
        rows.append(
            TrainingExample(
                kind=ExampleKind.preference,
                split=split,
                payload={
                    "messages": messages,
                    "tools": tools,
                    "chosen": corrected,
                    "rejected": original,
                },
                **provenance,
            )
        )
    elif feedback.kind == FeedbackKind.preference:
        pref = feedback.payload["preference"]
        if pref.get("rejected_interaction_id"):
            other = feedback_repo.interaction(tenant_id, uuid.UUID(pref["rejected_interaction_id"]))
            if other is None:
                raise FeedbackGone("rejected interaction")
            chosen, rejected = original, assistant_message(other.output or {})
        else:
            chosen, rejected = (
                assistant_message(pref["chosen"]),
                assistant_message(pref["rejected"]),
            )
        rows.append(
            TrainingExample(
                kind=ExampleKind.preference,
                payload={
                    "messages": messages,
                    "tools": tools,
                    "chosen": chosen,
                    "rejected": rejected,
                },
                **provenance,
            )
        )
    else:
        rating = feedback.payload["rating"]
        reward = (
            1.0
            if rating.get("thumbs") == "up"
            else -1.0
            if rating.get("thumbs")
            else float(rating["score"])
        )
        rows.append(
            TrainingExample(
                kind=ExampleKind.reward,
                payload={
                    "messages": messages,
                    "tools": tools,
                    "output": original,
                    "prompt_token_ids": interaction.prompt_token_ids,
                    "completion_token_ids": token_ids,
                    "sampling_logprobs": logprobs,
                    "reward": reward,
                },
                **provenance,
            )
        )
    written = 0
    for row in rows:
        row.id = uuid.uuid4()
        row.created_at = datetime.now(UTC)
        row.superseded_at = None
        written += int(examples.insert_once(row))
    if feedback.kind == FeedbackKind.correction:
        examples.supersede_corrections(tenant_id, feedback)
    feedback_repo.mark_compiled(tenant_id, feedback.id)
    return written
