"""Parts of OpenAI chat messages that more than one domain checks: serving (requests) and
feedback (an operator's corrected answer)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class FunctionCall(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(max_length=100_000)


class ToolCall(BaseModel):
    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall
