"""Legacy text completions: the chat path (routing, limits, logging) on vLLM's completions."""

from __future__ import annotations

from typing import Any

from app.serving.handler import ChatCompletionHandler
from app.serving.protocol import CompletionRequest
from app.serving.stream_log import Accumulator, TextStreamAccumulator


class CompletionHandler(ChatCompletionHandler):
    """One ``/v1/completions`` request: forwarded to the engine's completions endpoint and
    logged like a chat, with ``prompt`` in place of ``messages`` and the text as output."""

    engine_endpoint = "/v1/completions"
    id_prefix = "cmpl-"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The choices whose prompt was already echoed (a stream echoes it once per choice).
        self._echoed: set[int] = set()

    def _accumulator(self) -> Accumulator:
        return TextStreamAccumulator()

    def _sampled_logprobs(self, choice: dict[str, Any]) -> list[float] | None:
        values = (choice.get("logprobs") or {}).get("token_logprobs") or []
        return [float(v) for v in values if v is not None] or None

    def _output(self, data: dict[str, Any]) -> dict[str, Any]:
        """Choice 0's text; with ``n > 1`` also every choice with its own tokens and logprobs."""
        choices = data.get("choices", [])
        first: dict[str, Any] = {"text": choices[0].get("text", "")} if choices else {}
        if len(choices) > 1:
            first["choices"] = [
                {
                    "index": choice.get("index", number),
                    "text": choice.get("text", ""),
                    "finish_reason": choice.get("finish_reason"),
                    "completion_token_ids": choice.get("token_ids"),
                    "completion_logprobs": self._sampled_logprobs(choice),
                }
                for number, choice in enumerate(choices)
            ]
        return first

    def _record(self, request: Any, data: dict[str, Any] | None, **kwargs: Any) -> dict[str, Any]:
        if data and data.get("prompt_token_ids") is None:
            # vLLM puts the prompt's token ids on each choice of a completion.
            first = (data.get("choices") or [{}])[0]
            data = {**data, "prompt_token_ids": first.get("prompt_token_ids")}
        return super()._record(request, data, **kwargs)

    def _public(self, data: dict[str, Any], request: Any) -> dict[str, Any]:
        assert isinstance(request, CompletionRequest)
        data = dict(data)
        data["id"] = self.public_id
        data["model"] = request.model
        data["system_fingerprint"] = self.route.version_label
        for key in ("prompt_token_ids", "prompt_logprobs", "kv_transfer_params", "metrics"):
            data.pop(key, None)
        echo = request.echo and isinstance(request.single_prompt, str)
        for choice in data.get("choices", []):
            for key in ("token_ids", "prompt_token_ids", "prompt_logprobs", "stop_reason"):
                choice.pop(key, None)
            choice.pop("routed_experts", None)
            if request.logprobs is None:
                choice["logprobs"] = None
            if echo and choice.get("index", 0) not in self._echoed:
                self._echoed.add(choice.get("index", 0))
                choice["text"] = f"{request.single_prompt}{choice.get('text') or ''}"
        return data
