"""The Responses API, served as a chat completion: the request becomes chat messages and tools
(so routing, limits and the interaction log are the chat path's) and the answer becomes
Responses output items."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from app.core.errors import InvalidRequest
from app.serving.protocol import ChatCompletionRequest
from app.serving.stream_log import reasoning_of

#: Responses parameters the gateway accepts and does not act on (docs/SERVING.md says why).
IGNORED_RESPONSES_PARAMETERS = frozenset(
    {
        "background",
        "include",
        "metadata",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream_options",
        "text",
        "top_logprobs",
        "truncation",
    }
)


class ResponsesRequest(BaseModel):
    """OpenAI's Responses request (``client.responses.create``, openai SDK 3.57), the part a
    chat model can serve: text input, function tools, chaining by ``previous_response_id``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = Field(default=None, max_length=100_000)
    previous_response_id: str | None = Field(default=None, max_length=256)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_output_tokens: int | None = Field(default=None, ge=1, le=32_768)
    stream: bool | None = False
    user: str | None = Field(default=None, max_length=256)
    # Accepted and ignored (IGNORED_RESPONSES_PARAMETERS).
    background: Literal[False] | None = None
    include: list[str] | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    prompt_cache_key: str | None = Field(default=None, max_length=1024)
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    reasoning: dict[str, Any] | None = None
    safety_identifier: str | None = Field(default=None, max_length=256)
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    store: bool | None = None
    stream_options: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    truncation: Literal["auto", "disabled"] | None = None

    @field_validator("tools")
    @classmethod
    def _function_tools(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for tool in value or []:
            if tool.get("type") != "function" or not isinstance(tool.get("name"), str):
                raise ValueError(
                    "only function tools {type: function, name, parameters} are served"
                )
        return value

    @field_validator("tool_choice")
    @classmethod
    def _named_function(cls, value: Any) -> Any:
        if isinstance(value, dict) and (
            value.get("type") != "function" or not isinstance(value.get("name"), str)
        ):
            raise ValueError('a named tool choice is {"type": "function", "name": ...}')
        return value

    @property
    def end_user(self) -> str | None:
        return self.user or self.safety_identifier

    def as_chat(self, history: list[dict[str, Any]]) -> ResponsesChatRequest:
        """The chat completion this request asks for, after the ``history`` it continues."""
        messages = list(history)
        if self.instructions:
            messages.insert(0, {"role": "system", "content": self.instructions})
        messages.extend(input_messages(self.input))
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": self.stream,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_output_tokens,
            "parallel_tool_calls": self.parallel_tool_calls,
            "user": self.end_user,
        }
        if self.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        k: tool[k]
                        for k in ("name", "description", "parameters", "strict")
                        if k in tool
                    },
                }
                for tool in self.tools
            ]
        if isinstance(self.tool_choice, dict):
            body["tool_choice"] = {
                "type": "function",
                "function": {"name": self.tool_choice["name"]},
            }
        elif self.tool_choice is not None:
            body["tool_choice"] = self.tool_choice
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        try:
            chat = ResponsesChatRequest.model_validate(
                {k: v for k, v in body.items() if v is not None}
            )
        except ValueError as exc:
            raise InvalidRequest(
                f"input cannot be served as a chat: {exc}"[:2000], param="input"
            ) from None
        chat._responses = self.model_dump(
            exclude_none=True,
            include={"instructions", "previous_response_id", "metadata", "store", "include"},
        )
        return chat


class ResponsesChatRequest(ChatCompletionRequest):
    """The chat completion a Responses request became; logged with ``api: responses`` and
    the Responses-only fields, so a later request can chain from it."""

    _responses: dict[str, Any] = PrivateAttr(default_factory=dict)

    def logged_request(self) -> dict[str, Any]:
        record = super().logged_request()
        record["api"] = "responses"
        record.update(self._responses)
        return record


def _text(content: Any, param: str) -> str:
    """A message's text: a string, or its ``input_text`` / ``output_text`` parts joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of text parts", param=param)
    texts = []
    for number, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text"):
            raise InvalidRequest(
                "only input_text and output_text parts are served", param=f"{param}.{number}.type"
            )
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def input_messages(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses input items as chat messages; function calls join the assistant turn."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    for number, item in enumerate(value):
        kind = item.get("type", "message")
        param = f"input.{number}"
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequest(
                    "role must be user, assistant, system or developer", param=param
                )
            text = _text(item.get("content"), f"{param}.content")
            messages.append({"role": "system" if role == "developer" else role, "content": text})
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id") or item.get("id") or f"call_{number}"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" not in last:
                last["tool_calls"] = [call]
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _text(output, f"{param}.output")
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        else:
            raise InvalidRequest(
                "only message, function_call and function_call_output items are served",
                param=f"{param}.type",
            )
    return messages


def history_of(request: dict[str, Any], output: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The conversation a logged interaction ended with: its messages (less the earlier
    request's instructions, which OpenAI does not carry over) and its answer."""
    messages = [dict(m) for m in request.get("messages") or []]
    instructions = request.get("instructions")
    if instructions and messages and messages[0].get("content") == instructions:
        messages = messages[1:]
    if output:
        answer = {"role": "assistant", "content": output.get("content")}
        if output.get("tool_calls"):
            answer["tool_calls"] = output["tool_calls"]
        messages.append(answer)
    return messages


def output_items(interaction_id: uuid.UUID, message: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat answer as Responses output items: a thinking model's reasoning, the text
    message, then one item per call."""
    items: list[dict[str, Any]] = []
    if (reasoning := reasoning_of(message)) is not None:
        items.append(reasoning_item(interaction_id, reasoning))
    if message.get("content"):
        items.append(message_item(interaction_id, message["content"]))
    for number, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{interaction_id.hex}_{number}",
                "call_id": call.get("id") or f"call_{number}",
                "name": function.get("name", ""),
                "arguments": function.get("arguments") or "",
                "status": "completed",
            }
        )
    return items


def reasoning_item(interaction_id: uuid.UUID, text: str) -> dict[str, Any]:
    """The reasoning a thinking model gave before its answer (vLLM's reasoning parser), as
    OpenAI's reasoning output item carries it."""
    return {
        "type": "reasoning",
        "id": f"rs_{interaction_id.hex}",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
        "status": "completed",
    }


def message_item(interaction_id: uuid.UUID, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{interaction_id.hex}",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def response_object(
    interaction_id: uuid.UUID,
    request: dict[str, Any],
    *,
    created_at: float,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    finish_reason: str | None,
    status: str = "completed",
) -> dict[str, Any]:
    """The Responses ``response`` object for one interaction (answered, or in progress)."""
    incomplete = status == "completed" and finish_reason == "length"
    tools = [
        {"type": "function", "strict": None, **t["function"]} for t in request.get("tools") or []
    ]
    choice = request.get("tool_choice", "auto")
    if isinstance(choice, dict):
        choice = {"type": "function", "name": choice["function"]["name"]}
    return {
        "id": f"resp_{interaction_id.hex}",
        "object": "response",
        "created_at": created_at,
        "status": "incomplete" if incomplete else status,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "error": None,
        "model": request.get("model"),
        "instructions": request.get("instructions"),
        "previous_response_id": request.get("previous_response_id"),
        "metadata": request.get("metadata") or {},
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "max_output_tokens": request.get("max_tokens"),
        "tool_choice": choice,
        "tools": tools,
        "user": request.get("end_user"),
        "usage": _usage(usage),
        "store": True,
        "completed_at": time.time() if status == "completed" else None,
    }


def _usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    return {
        "input_tokens": usage.get("prompt_tokens", 0),
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.get("total_tokens", 0),
    }


def event(kind: str, sequence: int, **fields: Any) -> bytes:
    """One server-sent Responses event."""
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': sequence, **fields})}\n\n".encode()
