"""Serve a Responses request through the chat path and answer in the Responses shape: a
``response`` object, or its event stream translated from the chat stream."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response

from app.core.db import get_sessionmaker
from app.core.errors import NotFound
from app.interactions.repository import InteractionRepository
from app.sampler.pool import EngineResponse
from app.serving.handler import ChatCompletionHandler
from app.serving.limits import Slot
from app.serving.protocol import ServedRequest
from app.serving.responses import (
    event,
    message_item,
    output_items,
    reasoning_item,
    response_object,
)
from app.serving.stream_log import reasoning_of

#: How long a lookup waits for a just-answered interaction to reach Postgres (the log is
#: written behind the answer, so a chained request can arrive before its predecessor's row).
LOOKUP_WAIT_S = 3.0


@dataclass(frozen=True)
class StoredResponse:
    """What the interaction log keeps of one Responses answer."""

    interaction_id: uuid.UUID
    request: dict[str, Any]
    output: dict[str, Any] | None
    usage: dict[str, Any] | None
    finish_reason: str | None
    created_at: float

    def as_response(self) -> dict[str, Any]:
        return response_object(
            self.interaction_id,
            self.request,
            created_at=self.created_at,
            output=output_items(self.interaction_id, self.output or {}),
            usage=self.usage,
            finish_reason=self.finish_reason,
        )


def parse_response_id(value: str) -> uuid.UUID | None:
    if not value.startswith("resp_"):
        return None
    try:
        return uuid.UUID(hex=value.removeprefix("resp_"))
    except ValueError:
        return None


def _load(tenant_id: uuid.UUID, interaction_id: uuid.UUID) -> StoredResponse | None:
    with get_sessionmaker()() as session:
        row = InteractionRepository(session).get(tenant_id, interaction_id)
        if row is None or row.request.get("api") != "responses":
            return None
        return StoredResponse(
            row.id,
            row.request,
            row.output,
            row.usage,
            row.finish_reason,
            row.created_at.timestamp(),
        )


async def find_response(tenant_id: uuid.UUID, response_id: str, param: str) -> StoredResponse:
    """The tenant's logged response with this id; another tenant's or an unknown one is 404."""
    interaction_id = parse_response_id(response_id)
    deadline = time.monotonic() + LOOKUP_WAIT_S
    while interaction_id is not None:
        found = await asyncio.to_thread(_load, tenant_id, interaction_id)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    raise NotFound(f"Response with id '{response_id}' not found.", param=param)


class ResponsesHandler(ChatCompletionHandler):
    """One ``/v1/responses`` request: a chat completion answered as a Responses object."""

    id_prefix = "resp_"

    async def complete(self, request: ServedRequest) -> Response:
        data = await self.engine_answer(request)
        choice = (data.get("choices") or [{}])[0]
        body = response_object(
            self.interaction_id,
            request.logged_request(),
            created_at=self.created_at.timestamp(),
            output=output_items(self.interaction_id, choice.get("message") or {}),
            usage=data.get("usage"),
            finish_reason=choice.get("finish_reason"),
        )
        return self._json(body)

    async def _relay(
        self, resp: EngineResponse, request: Any, want_usage: bool, slot: Slot
    ) -> AsyncIterator[bytes]:
        """The chat stream (logged by the chat relay) as the Responses event sequence."""
        events = ResponseEvents(self.interaction_id, request.logged_request(), self.created_at)
        for item in events.start():
            yield item
        async for raw in super()._relay(resp, request, want_usage, slot):
            payload = raw.decode().removeprefix("data: ").strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                yield events.emit("error", message=chunk["error"]["message"], code=None, param=None)
                return
            for item in events.add(chunk):
                yield item
        for item in events.finish():
            yield item


class ResponseEvents:
    """Turns chat completion chunks into Responses stream events, in order."""

    def __init__(self, interaction_id: uuid.UUID, request: dict[str, Any], created: Any) -> None:
        self.id = interaction_id
        self.request = request
        self.created_at = created.timestamp()
        self.sequence = itertools.count()
        self.items: list[dict[str, Any]] = []
        self.text: list[str] | None = None  # the open message's text, while one is open
        self.reasoning: list[str] | None = None  # the open reasoning item's text
        self.calls: dict[int, int] = {}  # tool-call index -> output index
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None

    def emit(self, kind: str, **fields: Any) -> bytes:
        return event(kind, next(self.sequence), **fields)

    def _response(self, status: str) -> dict[str, Any]:
        return response_object(
            self.id,
            self.request,
            created_at=self.created_at,
            output=self.items if status != "in_progress" else [],
            usage=self.usage,
            finish_reason=self.finish_reason,
            status=status,
        )

    def start(self) -> list[bytes]:
        return [
            self.emit("response.created", response=self._response("in_progress")),
            self.emit("response.in_progress", response=self._response("in_progress")),
        ]

    def add(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        self.usage = chunk.get("usage") or self.usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if (reasoning := reasoning_of(delta)) is not None:
                out.extend(self._reasoning_delta(reasoning))
            if delta.get("content"):
                out.extend(self._close_reasoning())
                out.extend(self._text_delta(delta["content"]))
            for call in delta.get("tool_calls") or []:
                out.extend(self._call_delta(call))
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return out

    def _reasoning_delta(self, text: str) -> list[bytes]:
        """A thinking model's reasoning (vLLM's reasoning parser), as OpenAI streams a
        reasoning item: added, its text in deltas, done before the answer starts."""
        out = []
        if self.reasoning is None:
            self.reasoning = []
            self.items.append({**reasoning_item(self.id, ""), "status": "in_progress"})
            out.append(
                self.emit(
                    "response.output_item.added",
                    output_index=len(self.items) - 1,
                    item=self.items[-1],
                )
            )
        index = next(i for i, item in enumerate(self.items) if item["type"] == "reasoning")
        self.reasoning.append(text)
        out.append(
            self.emit(
                "response.reasoning_text.delta",
                item_id=self.items[index]["id"],
                output_index=index,
                content_index=0,
                delta=text,
            )
        )
        return out

    def _close_reasoning(self) -> list[bytes]:
        if self.reasoning is None:
            return []
        index = next(i for i, item in enumerate(self.items) if item["type"] == "reasoning")
        item = reasoning_item(self.id, "".join(self.reasoning))
        self.items[index] = item
        self.reasoning = None
        return [
            self.emit(
                "response.reasoning_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=item["content"][0]["text"],
            ),
            self.emit("response.output_item.done", output_index=index, item=item),
        ]

    def _text_delta(self, text: str) -> list[bytes]:
        out = []
        index = len(self.items) - 1
        if self.text is None:
            self.text = []
            self.items.append(message_item(self.id, "", status="in_progress"))
            index = len(self.items) - 1
            out.append(
                self.emit("response.output_item.added", output_index=index, item=self.items[index])
            )
            out.append(
                self.emit(
                    "response.content_part.added",
                    item_id=self.items[index]["id"],
                    output_index=index,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
            )
        self.text.append(text)
        out.append(
            self.emit(
                "response.output_text.delta",
                item_id=self.items[index]["id"],
                output_index=index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return out

    def _close_text(self) -> list[bytes]:
        if self.text is None:
            return []
        index = next(i for i, item in enumerate(self.items) if item["type"] == "message")
        item = message_item(self.id, "".join(self.text))
        self.items[index] = item
        self.text = None
        part = item["content"][0]
        return [
            self.emit(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=part["text"],
                logprobs=[],
            ),
            self.emit(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            ),
            self.emit("response.output_item.done", output_index=index, item=item),
        ]

    def _call_delta(self, call: dict[str, Any]) -> list[bytes]:
        out = []
        function = call.get("function") or {}
        number = call.get("index", 0)
        if number not in self.calls:
            out.extend(self._close_reasoning())
            out.extend(self._close_text())
            self.items.append(
                {
                    "type": "function_call",
                    "id": f"fc_{self.id.hex}_{number}",
                    "call_id": call.get("id") or f"call_{number}",
                    "name": function.get("name") or "",
                    "arguments": "",
                    "status": "in_progress",
                }
            )
            self.calls[number] = len(self.items) - 1
            index = self.calls[number]
            out.append(
                self.emit("response.output_item.added", output_index=index, item=self.items[index])
            )
        index = self.calls[number]
        item = self.items[index]
        if function.get("name") and not item["name"]:
            item["name"] = function["name"]
        if function.get("arguments"):
            item["arguments"] += function["arguments"]
            out.append(
                self.emit(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=function["arguments"],
                )
            )
        return out

    def finish(self) -> list[bytes]:
        out = self._close_reasoning() + self._close_text()
        for index in self.calls.values():
            item = self.items[index]
            item["status"] = "completed"
            out.append(
                self.emit(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
            out.append(self.emit("response.output_item.done", output_index=index, item=item))
        final = self._response("completed")
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        out.append(self.emit(kind, response=final))
        return out
