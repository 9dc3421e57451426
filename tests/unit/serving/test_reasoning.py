"""A thinking model's reasoning (vLLM's reasoning parser puts it in `reasoning_content`, newer
releases in `reasoning`) reaches the client and the log: a streamed chat's log keeps it, and
Responses carries it as a reasoning item, whole and streamed, in the shapes the `openai`
client parses."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from openai.types.responses import Response, ResponseReasoningItem

from app.serving.responses import output_items, response_object
from app.serving.responses_handler import ResponseEvents
from app.serving.stream_log import StreamAccumulator

REQUEST = {"model": "bot", "input": "What is 12 times 5?", "stream": True}


def chunks(field: str) -> list[dict[str, Any]]:
    """A stream as vLLM sends it: reasoning deltas, then the answer."""
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", field: "12 times 5 "},
        {field: "is 60."},
        {"content": "60"},
    ]
    out = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    out[-1]["choices"][0]["finish_reason"] = "stop"
    out.append(
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}}
    )
    return out


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_streamed_chats_log_keeps_its_reasoning(field: str) -> None:
    acc = StreamAccumulator()
    for chunk in chunks(field):
        acc.add(chunk)
    message = acc.as_response()["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "60",
        "reasoning_content": "12 times 5 is 60.",
    }


def test_a_plain_streamed_answer_has_no_reasoning_field() -> None:
    acc = StreamAccumulator()
    acc.add({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]})
    assert "reasoning_content" not in acc.as_response()["choices"][0]["message"]


def test_responses_carry_the_reasoning_as_a_reasoning_item() -> None:
    interaction = uuid.uuid4()
    message = {"role": "assistant", "content": "60", "reasoning_content": "12 times 5 is 60."}
    items = output_items(interaction, message)
    assert [i["type"] for i in items] == ["reasoning", "message"]
    parsed = Response.model_validate(
        response_object(
            interaction,
            {**REQUEST, "stream": False},
            created_at=datetime.now(UTC).timestamp(),
            output=items,
            usage=None,
            finish_reason="stop",
        )
    )
    reasoning = parsed.output[0]
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.content is not None and reasoning.content[0].text == "12 times 5 is 60."
    assert parsed.output_text == "60"
    assert [i["type"] for i in output_items(interaction, {"content": "60"})] == ["message"]


def test_a_streamed_response_sends_the_reasoning_before_the_answer() -> None:
    events = ResponseEvents(uuid.uuid4(), REQUEST, datetime.now(UTC))
    raw = events.start()
    for chunk in chunks("reasoning_content"):
        raw.extend(events.add(chunk))
    raw.extend(events.finish())
    sent = [json.loads(line.split(b"data: ", 1)[1]) for line in raw]
    kinds = [e["type"] for e in sent]
    print(kinds)  # shown on failure
    reasoning_done = kinds.index("response.reasoning_text.done")
    assert kinds.count("response.reasoning_text.delta") == 2
    assert "".join(e["delta"] for e in sent if e["type"] == "response.reasoning_text.delta") == (
        "12 times 5 is 60."
    )
    assert sent[reasoning_done]["text"] == "12 times 5 is 60."
    assert reasoning_done < kinds.index("response.output_text.delta")
    final = Response.model_validate(sent[-1]["response"])
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output_text == "60"
