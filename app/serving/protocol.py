"""OpenAI-compatible request and response models (the fields clora accepts and checks)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.core.messages import ToolCall


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    live_version: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = Field(default=None, max_length=4000)
    parameters: dict[str, Any] | None = None


class ToolDefinition(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(BaseModel):
    """``{"type": "function", "function": {"name": ...}}``: force one tool."""

    type: Literal["function"] = "function"
    function: NamedFunction


class StreamOptions(BaseModel):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


#: OpenAI parameters the gateway accepts and does not act on (docs/SERVING.md says why).
IGNORED_PARAMETERS = frozenset(
    {
        "audio",
        "metadata",
        "modalities",
        "moderation",
        "prediction",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning_effort",
        "safety_identifier",
        "service_tier",
        "store",
        "verbosity",
        "web_search_options",
    }
)


class SamplingRequest(BaseModel):
    """What chat and text completion requests share: the model, sampling, streaming, the end
    user, and vLLM's sampling extras. Unknown names are refused, so a typo is a 400 rather
    than silently ignored."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=1, ge=1, le=8)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    stop: str | list[str] | None = None
    seed: int | None = None
    logit_bias: dict[str, int] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    # The caller's end user: logged with the interaction, not sent to the engine.
    user: str | None = Field(default=None, max_length=256)
    # vLLM sampling extras (sent by OpenAI SDKs through ``extra_body``).
    top_k: int | None = Field(default=None, ge=-1, le=1000)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    min_tokens: int | None = Field(default=None, ge=0, le=32_768)
    ignore_eos: bool | None = None

    @field_validator("stop")
    @classmethod
    def _bounded_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _token_biases(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        for token, bias in (value or {}).items():
            if not token.isdigit():
                raise ValueError(f"keys must be token ids, got {token!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"bias must be between -100 and 100, got {bias}")
        return value


class ChatCompletionRequest(SamplingRequest):
    """Every parameter of OpenAI's chat completion request (openai SDK 3.57) plus vLLM's
    sampling extras; the OpenAI names the engine cannot act on are accepted and ignored."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    tools: list[ToolDefinition] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # Legacy function calling, mapped onto tools / tool_choice.
    functions: list[FunctionDefinition] | None = Field(default=None, min_length=1, max_length=128)
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32_768)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    # Accepted and ignored (IGNORED_PARAMETERS).
    audio: dict[str, Any] | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    modalities: list[Literal["text", "audio"]] | None = None
    moderation: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    prompt_cache_key: str | None = Field(default=None, max_length=1024)
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    reasoning_effort: str | None = Field(default=None, max_length=32)
    safety_identifier: str | None = Field(default=None, max_length=256)
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    store: bool | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    web_search_options: dict[str, Any] | None = None

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        kind = value.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise ValueError("type must be one of text, json_object, json_schema")
        if kind == "json_schema" and not isinstance(value.get("json_schema"), dict):
            raise ValueError("json_schema must be an object with the schema")
        return value

    @field_validator("functions")
    @classmethod
    def _not_with_tools(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("tools") is not None:
            raise ValueError("functions cannot be combined with tools; use tools")
        return value

    @field_validator("function_call")
    @classmethod
    def _not_with_tool_choice(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("tool_choice") is not None:
            raise ValueError("function_call cannot be combined with tool_choice; use tool_choice")
        return value

    @property
    def legacy_functions(self) -> bool:
        """The caller speaks the deprecated ``functions`` API and expects ``function_call``."""
        return self.functions is not None

    @property
    def end_user(self) -> str | None:
        return self.user or self.safety_identifier

    def _legacy_as_tools(self) -> dict[str, Any]:
        """``functions`` / ``function_call`` as the ``tools`` / ``tool_choice`` they mean."""
        mapped: dict[str, Any] = {}
        if self.functions is not None:
            mapped["tools"] = [
                {"type": "function", "function": f.model_dump(exclude_none=True)}
                for f in self.functions
            ]
        if isinstance(self.function_call, NamedFunction):
            name = self.function_call.name
            mapped["tool_choice"] = {"type": "function", "function": {"name": name}}
        elif self.function_call is not None:
            mapped["tool_choice"] = self.function_call
        return mapped

    def logged_request(self) -> dict[str, Any]:
        """The request as the interaction log keeps it: legacy functions also as tools and
        tool turns (what training reads), and the caller's end user under ``end_user``."""
        record = self.model_dump(exclude_none=True)
        record.update(self._legacy_as_tools())
        record["messages"] = _legacy_messages(record["messages"])
        if self.end_user:
            record["end_user"] = self.end_user
        return record

    def engine_body(
        self, engine_model: str, default_max_tokens: int | None = None
    ) -> dict[str, Any]:
        """The body sent to vLLM: always with logprobs and token ids, which the log needs, and
        the agent's default cap on the completion when the request sets none."""
        skip = {"model", "user", "functions", "function_call", *IGNORED_PARAMETERS}
        body = self.model_dump(exclude_none=True, exclude=skip)
        body["model"] = engine_model
        body["messages"] = _legacy_messages(body["messages"])
        body.update(self._legacy_as_tools())
        if default_max_tokens and "max_tokens" not in body and "max_completion_tokens" not in body:
            body["max_tokens"] = default_max_tokens
        body["logprobs"] = True
        body["return_token_ids"] = True
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream_options", None)
        return body


def _legacy_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewrite ``function_call`` / ``role: function`` turns as tool calls and tool results."""
    out: list[dict[str, Any]] = []
    last_call_id = None
    for number, message in enumerate(messages):
        message = dict(message)
        call = message.pop("function_call", None)
        if message["role"] == "assistant" and call:
            last_call_id = f"call_{number}"
            message["tool_calls"] = [{"id": last_call_id, "type": "function", "function": call}]
        elif message["role"] == "function":
            message["role"] = "tool"
            message["tool_call_id"] = last_call_id or f"call_{number}"
        out.append(message)
    return out


class CompletionRequest(SamplingRequest):
    """OpenAI's legacy text completion request (``client.completions.create``, openai SDK
    3.57) plus vLLM's sampling extras."""

    # One prompt: text or token ids. A list holding exactly one prompt is that prompt; a batch
    # of several is refused (each would be its own interaction; send them one by one).
    prompt: str | list[int] | list[str] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = False
    # Accepted and ignored: vLLM cannot sample several candidates and keep the best, and
    # insertion (``suffix``) needs a fill-in-the-middle model.
    best_of: int | None = Field(default=None, ge=1, le=1)
    suffix: str | None = Field(default=None, max_length=0)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(
        cls, value: str | list[int] | list[str] | list[list[int]]
    ) -> str | list[int] | list[str] | list[list[int]]:
        if not value:
            raise ValueError("the prompt is empty")
        if isinstance(value, list) and isinstance(value[0], (str, list)) and len(value) != 1:
            raise ValueError("send one prompt per request (a batch of prompts is not served)")
        return value

    @field_validator("echo")
    @classmethod
    def _echo_needs_text(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        prompt = info.data.get("prompt")
        text = isinstance(prompt, str) or (isinstance(prompt, list) and isinstance(prompt[0], str))
        if value and prompt is not None and not text:
            raise ValueError("echo needs a text prompt (the gateway echoes the text given)")
        return value

    @property
    def single_prompt(self) -> str | list[int]:
        """The one prompt, unwrapped from a one-element list."""
        prompt = self.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            return prompt[0]  # type: ignore[return-value]
        return prompt  # type: ignore[return-value]

    @property
    def end_user(self) -> str | None:
        return self.user

    def logged_request(self) -> dict[str, Any]:
        """The request as given (``prompt``, no ``messages``), the end user under ``end_user``."""
        record = self.model_dump(exclude_none=True)
        if self.end_user:
            record["end_user"] = self.end_user
        return record

    def engine_body(
        self, engine_model: str, default_max_tokens: int | None = None
    ) -> dict[str, Any]:
        """The body sent to vLLM's completions endpoint: always with the sampled tokens' ids
        and logprobs (the log needs them). ``echo`` is done by the gateway, so the engine's
        text, tokens and logprobs are the completion's only."""
        skip = {"model", "user", "echo", "best_of", "suffix", "prompt"}
        body = self.model_dump(exclude_none=True, exclude=skip)
        body["model"] = engine_model
        body["prompt"] = self.single_prompt
        body["max_tokens"] = self.max_tokens or default_max_tokens or 16
        body["logprobs"] = self.logprobs or 0
        body["return_token_ids"] = True
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream_options", None)
        return body


#: A request the serving handlers forward to the engine.
ServedRequest = ChatCompletionRequest | CompletionRequest
