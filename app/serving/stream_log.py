"""Rebuild a whole chat or text completion from its stream chunks, for the interaction log."""

from __future__ import annotations

from typing import Any, Protocol


class Accumulator(Protocol):
    """Rebuilds an engine response from its stream chunks."""

    def add(self, chunk: dict[str, Any]) -> None: ...

    def as_response(self) -> dict[str, Any]: ...


REASONING_FIELDS = ("reasoning_content", "reasoning")
"""Where vLLM's reasoning parser puts a thinking model's reasoning, in a message or a delta
(the older name and the newer)."""


def reasoning_of(message: dict[str, Any]) -> str | None:
    """A message's (or delta's) reasoning text, under either name."""
    for name in REASONING_FIELDS:
        if message.get(name):
            return str(message[name])
    return None


class StreamAccumulator:
    """Collects deltas, reasoning, tool-call fragments, token ids, logprobs and usage of a
    stream."""

    def __init__(self) -> None:
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.prompt_token_ids: list[int] | None = None

    def _choice(self, index: int) -> dict[str, Any]:
        return self.choices.setdefault(
            index,
            {
                "content": [],
                "reasoning": [],
                "tool_calls": {},
                "token_ids": [],
                "logprobs": [],
                "finish": None,
            },
        )

    def add(self, chunk: dict[str, Any]) -> None:
        if chunk.get("prompt_token_ids"):
            self.prompt_token_ids = chunk["prompt_token_ids"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            acc = self._choice(choice.get("index", 0))
            delta = choice.get("delta") or {}
            if delta.get("content"):
                acc["content"].append(delta["content"])
            if (reasoning := reasoning_of(delta)) is not None:
                acc["reasoning"].append(reasoning)
            for call in delta.get("tool_calls") or []:
                slot = acc["tool_calls"].setdefault(
                    call.get("index", 0), {"id": None, "name": "", "arguments": []}
                )
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"].append(function.get("arguments") or "")
            acc["token_ids"].extend(choice.get("token_ids") or [])
            acc["logprobs"].extend(((choice.get("logprobs") or {}).get("content")) or [])
            if choice.get("finish_reason"):
                acc["finish"] = choice["finish_reason"]

    def as_response(self) -> dict[str, Any]:
        """The non-streaming response shape with the same information."""
        choices = []
        for index in sorted(self.choices):
            acc = self.choices[index]
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(acc["content"]) or None,
            }
            if acc["reasoning"]:
                message["reasoning_content"] = "".join(acc["reasoning"])
            if acc["tool_calls"]:
                message["tool_calls"] = [
                    {
                        "id": slot["id"],
                        "type": "function",
                        "function": {"name": slot["name"], "arguments": "".join(slot["arguments"])},
                    }
                    for _, slot in sorted(acc["tool_calls"].items())
                ]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": acc["finish"],
                    "token_ids": acc["token_ids"] or None,
                    "logprobs": {"content": acc["logprobs"]},
                }
            )
        return {"choices": choices, "usage": self.usage, "prompt_token_ids": self.prompt_token_ids}


class TextStreamAccumulator:
    """Rebuilds a whole text completion from its stream chunks, for the interaction log."""

    def __init__(self) -> None:
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.prompt_token_ids: list[int] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("prompt_token_ids"):
                self.prompt_token_ids = choice["prompt_token_ids"]
            acc = self.choices.setdefault(
                choice.get("index", 0),
                {"text": [], "token_ids": [], "logprobs": [], "finish": None},
            )
            acc["text"].append(choice.get("text") or "")
            acc["token_ids"].extend(choice.get("token_ids") or [])
            acc["logprobs"].extend((choice.get("logprobs") or {}).get("token_logprobs") or [])
            if choice.get("finish_reason"):
                acc["finish"] = choice["finish_reason"]

    def as_response(self) -> dict[str, Any]:
        """The non-streaming response shape with the same information."""
        choices = [
            {
                "index": index,
                "text": "".join(acc["text"]),
                "finish_reason": acc["finish"],
                "token_ids": acc["token_ids"] or None,
                "logprobs": {"token_logprobs": acc["logprobs"]},
            }
            for index, acc in sorted(self.choices.items())
        ]
        return {"choices": choices, "usage": self.usage, "prompt_token_ids": self.prompt_token_ids}
