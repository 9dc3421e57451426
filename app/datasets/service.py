"""Datasets as JSONL: OpenAI chat fine-tuning format (SFT) and preference format (DPO)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from app.core.errors import InvalidRequest
from app.feedback.repository import ExampleRepository
from app.models import TrainingExample
from app.models.enums import ExampleKind, ExampleSplit
from app.serving.protocol import ChatMessage, ToolDefinition

MAX_LINES = 50_000


class ChatLine(BaseModel):
    """`{"messages": [...], "tools": [...]}`: the last message is the assistant's target."""

    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(min_length=2, max_length=200)
    tools: list[ToolDefinition] | None = None


class PreferenceInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    tools: list[ToolDefinition] | None = None


class PreferenceLine(BaseModel):
    """OpenAI's preference format: input, preferred_output, non_preferred_output."""

    model_config = ConfigDict(extra="forbid")
    input: PreferenceInput
    preferred_output: list[ChatMessage] = Field(min_length=1, max_length=1)
    non_preferred_output: list[ChatMessage] = Field(min_length=1, max_length=1)


def _dump(messages: Iterable[ChatMessage]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in messages]


def parse_lines(lines: Iterable[str]) -> list[tuple[ExampleKind, dict[str, Any]]]:
    """Validate every line before anything is written; errors name the line."""
    parsed: list[tuple[ExampleKind, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(parsed) >= MAX_LINES:
            raise InvalidRequest(f"at most {MAX_LINES} lines per import", param="file")
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"line {number}: not JSON ({exc.msg})", param=f"line {number}"
            ) from exc
        try:
            if isinstance(data, dict) and "preferred_output" in data:
                pref = PreferenceLine.model_validate(data)
                tools = [t.model_dump() for t in pref.input.tools] if pref.input.tools else None
                payload: dict[str, Any] = {
                    "messages": _dump(pref.input.messages),
                    "tools": tools,
                    "chosen": _dump(pref.preferred_output)[0],
                    "rejected": _dump(pref.non_preferred_output)[0],
                }
                if (
                    payload["chosen"]["role"] != "assistant"
                    or payload["rejected"]["role"] != "assistant"
                ):
                    raise InvalidRequest(
                        f"line {number}: outputs must be assistant messages", param=f"line {number}"
                    )
                parsed.append((ExampleKind.preference, payload))
            else:
                chat = ChatLine.model_validate(data)
                if chat.messages[-1].role != "assistant":
                    raise InvalidRequest(
                        f"line {number}: the last message must be the assistant's",
                        param=f"line {number}",
                    )
                tools = [t.model_dump() for t in chat.tools] if chat.tools else None
                parsed.append((ExampleKind.sft, {"messages": _dump(chat.messages), "tools": tools}))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidRequest(
                f"line {number}: {where}: {first['msg']}", param=f"line {number}"
            ) from exc
    if not parsed:
        raise InvalidRequest("the file holds no examples", param="file")
    return parsed


def import_examples(
    session: Session,
    tenant_id: uuid.UUID,
    agent_id: uuid.UUID,
    lines: Iterable[str],
    split: ExampleSplit,
) -> int:
    """Validate the whole file, then add its examples (golden examples when split is eval)."""
    parsed = parse_lines(lines)
    repo = ExampleRepository(session)
    now = datetime.now(UTC)
    for kind, payload in parsed:
        repo.insert_once(
            TrainingExample(
                id=uuid.uuid4(),
                created_at=now,
                tenant_id=tenant_id,
                agent_id=agent_id,
                kind=kind,
                split=split,
                payload=payload,
                superseded_at=None,
            )
        )
    return len(parsed)


def export_examples(
    session: Session, tenant_id: uuid.UUID, agent_id: uuid.UUID, split: ExampleSplit | None
) -> Iterator[str]:
    """SFT examples as chat lines, preference examples in the preference format."""
    for example in ExampleRepository(session).for_agent(tenant_id, agent_id, split=split):
        p = example.payload
        if example.kind == ExampleKind.sft:
            line: dict[str, Any] = {"messages": p["messages"]}
        elif example.kind == ExampleKind.preference:
            line = {
                "input": {"messages": p["messages"]},
                "preferred_output": [p["chosen"]],
                "non_preferred_output": [p["rejected"]],
            }
        else:
            continue
        if p.get("tools"):
            line.get("input", line)["tools"] = p["tools"]
        yield json.dumps(line) + "\n"
