"""The OpenAI Agents SDK as a user sets it up: a calculator agent and a talker without tools."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CalculatorAgents:
    """``agent`` must call ``calculator`` (which answers "5") and stops on its output;
    ``talker`` is the same agent answering in words. ``calls`` holds each expression."""

    agent: Any
    talker: Any
    calls: list[str] = field(default_factory=list)

    async def tool_run(self) -> Any:
        """One run that calls the tool and ends with its output; returns the result."""
        from agents import Runner, ToolCallItem, ToolCallOutputItem

        first = await Runner.run(self.agent, "What is 2 plus 3?", max_turns=3)
        kinds = {type(item) for item in first.new_items}
        assert {ToolCallItem, ToolCallOutputItem} <= kinds and self.calls
        assert first.final_output == "5"
        return first


def calculator_agents(model: Any) -> CalculatorAgents:
    """The agents on ``model`` (a chat-completions or Responses model of the SDK)."""
    from agents import Agent, ModelSettings, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # the tracer would export to api.openai.com
    calls: list[str] = []

    @function_tool
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression."""
        calls.append(expression)
        return "5"

    agent = Agent(
        name="calc",
        instructions="Use the calculator.",
        tools=[calculator],
        model=model,
        model_settings=ModelSettings(temperature=0, max_tokens=64, tool_choice="required"),
        tool_use_behavior="stop_on_first_tool",
    )
    talker = agent.clone(
        model_settings=ModelSettings(temperature=0, max_tokens=16, tool_choice="none"),
        tool_use_behavior="run_llm_again",
    )
    return CalculatorAgents(agent, talker, calls)
