"""Datasets as JSONL: OpenAI's chat (SFT), preference (DPO) and reinforcement formats."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
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


class ReinforcementLine(BaseModel):
    """OpenAI's reinforcement format: the conversation up to the turn to sample (its last
    message the user's or a tool's), and any other fields, which graders read as
    ``{{item.<field>}}``."""

    model_config = ConfigDict(extra="allow")
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    tools: list[ToolDefinition] | None = None


FILE_FORMATS = ("chat", "preference", "reinforcement")
"""What one line of a fine-tuning file can be; a file holds lines of one format."""


def _line_format(data: Any) -> str:
    """The format a line claims to be; validation then names what it lacks."""
    if not isinstance(data, dict):
        return "chat"
    if "preferred_output" in data or "non_preferred_output" in data or "input" in data:
        return "preference"
    messages = data.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") in ("user", "tool"):
        return "reinforcement"
    return "chat"


def _parse_line(number: int, line: str) -> tuple[str, dict[str, Any]]:
    """(format, payload) of one JSONL line; InvalidRequest naming the line and the field."""
    try:
        data = json.loads(line)
    except RecursionError as exc:
        raise InvalidRequest(f"line {number}: nested too deeply", param=f"line {number}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"line {number}: not JSON ({exc.msg})", param=f"line {number}"
        ) from exc
    kind = _line_format(data)
    try:
        if kind == "preference":
            pref = PreferenceLine.model_validate(data)
            tools = [t.model_dump() for t in pref.input.tools] if pref.input.tools else None
            payload: dict[str, Any] = {
                "messages": _dump(pref.input.messages),
                "tools": tools,
                "chosen": _dump(pref.preferred_output)[0],
                "rejected": _dump(pref.non_preferred_output)[0],
            }
            for field in ("chosen", "rejected"):
                if payload[field]["role"] != "assistant":
                    output = "preferred_output" if field == "chosen" else "non_preferred_output"
                    raise InvalidRequest(
                        f"line {number}: {output}.0.role: outputs must be assistant messages",
                        param=f"line {number}",
                    )
            return kind, payload
        if kind == "reinforcement":
            rl = ReinforcementLine.model_validate(data)
            tools = [t.model_dump() for t in rl.tools] if rl.tools else None
            item = {k: v for k, v in data.items() if k not in ("messages", "tools")}
            return kind, {"messages": _dump(rl.messages), "tools": tools, "item": item}
        chat = ChatLine.model_validate(data)
        if chat.messages[-1].role != "assistant":
            raise InvalidRequest(
                f"line {number}: messages: the last message must be the assistant's",
                param=f"line {number}",
            )
        if (chat.messages[-1].model_extra or {}).get("weight") == 0:
            raise InvalidRequest(
                f"line {number}: messages.{len(chat.messages) - 1}.weight: only the last "
                "assistant message is trained (earlier ones are context); weight 0 on it "
                "leaves the line nothing to train",
                param=f"line {number}",
            )
        tools = [t.model_dump() for t in chat.tools] if chat.tools else None
        return kind, {"messages": _dump(chat.messages), "tools": tools}
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(
            f"line {number}: {where}: {first['msg']}", param=f"line {number}"
        ) from exc


def _lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        count += 1
        if count > MAX_LINES:
            raise InvalidRequest(f"at most {MAX_LINES} lines per file", param="file")
        yield number, line


def parse_lines(lines: Iterable[str]) -> list[tuple[ExampleKind, dict[str, Any]]]:
    """Validate every line of a dataset import (chat and preference lines) before anything
    is written; errors name the line."""
    parsed: list[tuple[ExampleKind, dict[str, Any]]] = []
    for number, line in _lines(lines):
        kind, payload = _parse_line(number, line)
        if kind == "reinforcement":
            raise InvalidRequest(
                f"line {number}: messages: the last message must be the assistant's",
                param=f"line {number}",
            )
        parsed.append(
            (ExampleKind.preference if kind == "preference" else ExampleKind.sft, payload)
        )
    if not parsed:
        raise InvalidRequest("the file holds no examples", param="file")
    return parsed


def read_file(content: bytes) -> tuple[str, list[dict[str, Any]]]:
    """(format, payloads) of a fine-tuning file: every line valid and of one format (see
    `FILE_FORMATS`); InvalidRequest naming the first bad line and field otherwise."""
    try:
        text = content.decode("utf-8-sig")  # a byte-order mark is not part of line 1
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"the file is not UTF-8 text (byte {exc.start})", param="file"
        ) from exc
    fmt: str | None = None
    first = 0
    payloads: list[dict[str, Any]] = []
    # JSONL lines end at "\n" only: U+2028 and friends may sit inside a JSON string.
    for number, line in _lines(text.split("\n")):
        kind, payload = _parse_line(number, line)
        if fmt is not None and kind != fmt:
            raise InvalidRequest(
                f"line {number}: a {kind} line in a file of {fmt} lines (line {first} set "
                "the format); one file holds one format",
                param=f"line {number}",
            )
        if fmt is None:
            fmt, first = kind, number
        payloads.append(payload)
    if fmt is None:
        raise InvalidRequest("the file holds no examples", param="file")
    return fmt, payloads


def import_examples(
    session: Session,
    tenant_id: uuid.UUID,
    agent_id: uuid.UUID,
    lines: Iterable[str],
    split: ExampleSplit,
) -> int:
    """Validate the whole file, then add its examples (golden examples when split is eval).

    Each line is stamped a microsecond after the one before, so examples list (and export) in
    the file's order: with one timestamp for all, Postgres returned them in any order."""
    parsed = parse_lines(lines)
    repo = ExampleRepository(session)
    now = datetime.now(UTC)
    for line, (kind, payload) in enumerate(parsed):
        repo.insert_once(
            TrainingExample(
                id=uuid.uuid4(),
                created_at=now + timedelta(microseconds=line),
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
