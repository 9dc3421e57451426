"""Chat completions: route to the tenant's adapter on the shared engine, answer, log."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from app.adapters.service import Route
from app.core import jsonio
from app.core.errors import CloraError, EngineUnavailable, InvalidRequest
from app.core.logging import bind
from app.sampler.pool import TRANSPORT_ERRORS, EngineReplica, EngineResponse
from app.serving import metrics
from app.serving.limits import Slot
from app.serving.protocol import ServedRequest
from app.serving.state import GatewayState
from app.serving.stream_log import Accumulator, StreamAccumulator
from app.tenants.service import ApiPrincipal

log = logging.getLogger(__name__)


class ChatCompletionHandler:
    """One request's path through the gateway."""

    #: The engine endpoint this handler forwards to, and the prefix of the ids it answers with.
    engine_endpoint = "/v1/chat/completions"
    id_prefix = "chatcmpl-"

    def __init__(
        self,
        state: GatewayState,
        principal: ApiPrincipal,
        route: Route,
        arrived: float | None = None,
    ) -> None:
        """``arrived`` is when the request reached the gateway (``perf_counter``, set by the
        outermost middleware), so the overhead and latency include auth and routing."""
        self.state = state
        self.principal = principal
        self.route = route
        self.interaction_id = uuid.uuid4()
        bind(interaction_id=self.public_id)
        self.started = time.perf_counter() if arrived is None else arrived
        self.created_at = datetime.now(UTC)
        self.upstream_s = 0.0
        self.engine_name, self.engine_path = state.engine_target(route)

    @property
    def public_id(self) -> str:
        """The id the caller receives for this interaction."""
        return f"{self.id_prefix}{self.interaction_id.hex}"

    def _json(self, body: dict[str, Any]) -> Response:
        """A whole answer whose overhead header is taken after the body is encoded, so it
        covers everything the gateway does before the bytes go out."""
        response = Response(jsonio.dumps(body), media_type="application/json")
        response.headers.update(self._headers())
        return response

    def _headers(self) -> dict[str, str]:
        overhead_ms = (time.perf_counter() - self.started - self.upstream_s) * 1000
        metrics.OVERHEAD.observe(overhead_ms / 1000)
        return {
            "x-clora-adapter-version": self.route.version_label,
            "x-clora-overhead-ms": f"{overhead_ms:.3f}",
            "x-clora-interaction-id": self.public_id,
        }

    async def _send(self, body: dict[str, Any], stream: bool) -> EngineResponse:
        """POST to a replica holding the adapter; reload once if the engine forgot it."""
        for attempt in (1, 2):
            replica = self.state.pool.pick(self.engine_name)
            if self.engine_name not in replica.loaded:
                await self.state.pool.load(replica, self.engine_name, self.engine_path)
            resp = await self._post(replica, body, stream)
            if resp.status_code == 404 and attempt == 1:
                await resp.aread()
                replica.loaded.discard(self.engine_name)
                continue
            if resp.status_code != 200:
                await resp.aread()
                await resp.aclose()
                raise _engine_error(resp)
            return resp
        raise EngineUnavailable("engine does not know the adapter after reloading it")

    async def _post(
        self, replica: EngineReplica, body: dict[str, Any], stream: bool
    ) -> EngineResponse:
        t0 = time.perf_counter()
        try:
            return await self.state.pool.post(f"{replica.url}{self.engine_endpoint}", body, stream)
        finally:
            self.upstream_s += time.perf_counter() - t0

    async def complete(self, request: ServedRequest) -> Response:
        data = await self.engine_answer(request)
        return self._json(self._public(data, request))

    async def engine_answer(self, request: ServedRequest) -> dict[str, Any]:
        """The engine's whole answer, logged (a failure is logged too, then raised)."""
        self.state.in_flight[self.engine_name] += 1
        try:
            resp = await self._send(
                request.engine_body(self.engine_name, self.route.default_max_tokens), stream=False
            )
            data: dict[str, Any] = resp.json()
        except CloraError as exc:
            self._record(request, None, error=exc)
            raise
        finally:
            self.state.in_flight[self.engine_name] -= 1
        self._record(request, data)
        return data

    async def stream(self, request: ServedRequest, slot: Slot) -> StreamingResponse:
        """Relay the engine's stream; the tenant's concurrency slot is held until the stream
        ends or the client goes away (the caller releases it if this raises)."""
        self.state.in_flight[self.engine_name] += 1
        try:
            resp = await self._send(
                request.engine_body(self.engine_name, self.route.default_max_tokens), stream=True
            )
        except CloraError as exc:
            self.state.in_flight[self.engine_name] -= 1
            self._record(request, None, error=exc)
            raise
        headers = self._headers()
        want_usage = bool(request.stream_options and request.stream_options.include_usage)
        return SlotStreamingResponse(
            self._relay(resp, request, want_usage, slot),
            slot,
            media_type="text/event-stream",
            headers=headers,
        )

    def _accumulator(self) -> Accumulator:
        return StreamAccumulator()

    async def _relay(
        self, resp: EngineResponse, request: Any, want_usage: bool, slot: Slot
    ) -> AsyncIterator[bytes]:
        acc = self._accumulator()
        error: CloraError | None = None
        recorded = False
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line[6:]
                if payload == "[DONE]":
                    # Logged before the client sees the end: a stream it saw finish is never lost.
                    self._record(request, acc.as_response(), error=None)
                    recorded = True
                    # Released before the client sees the end, so its next request fits.
                    slot.release()
                    yield b"data: [DONE]\n\n"
                    break
                chunk = jsonio.loads(payload)
                acc.add(chunk)
                public = self._public_chunk(chunk, request, want_usage)
                if public is not None:
                    yield b"data: " + jsonio.dumps(public) + b"\n\n"
        except TRANSPORT_ERRORS:
            error = EngineUnavailable("engine stream broke off")
            body = {"error": {"message": error.message, "type": error.type}}
            yield b"data: " + jsonio.dumps(body) + b"\n\n"
        finally:
            await resp.aclose()
            self.state.in_flight[self.engine_name] -= 1
            slot.release()
            if not recorded:
                self._record(request, acc.as_response(), error=error)

    def _public(self, data: dict[str, Any], request: Any) -> dict[str, Any]:
        data = dict(data)
        data["id"] = self.public_id
        data["model"] = request.model
        data["system_fingerprint"] = self.route.version_label
        data.pop("prompt_token_ids", None)
        data.pop("prompt_logprobs", None)
        data.pop("kv_transfer_params", None)
        for choice in data.get("choices", []):
            choice.pop("token_ids", None)
            choice.pop("stop_reason", None)
            if request.legacy_functions:
                _as_function_call(choice)
            if not request.logprobs:
                choice["logprobs"] = None
            elif not request.top_logprobs and choice.get("logprobs"):
                for item in choice["logprobs"].get("content") or []:
                    item["top_logprobs"] = []
        return data

    def _public_chunk(
        self, chunk: dict[str, Any], request: Any, want_usage: bool
    ) -> dict[str, Any] | None:
        if not chunk.get("choices") and chunk.get("usage") is not None and not want_usage:
            return None
        public = self._public(chunk, request)
        if not want_usage:
            public.pop("usage", None)
        return public

    def _sampled_logprobs(self, choice: dict[str, Any]) -> list[float] | None:
        """The logprob of each sampled token of one engine choice."""
        content = ((choice.get("logprobs") or {}).get("content")) or []
        return [item["logprob"] for item in content] or None

    def _output(self, data: dict[str, Any]) -> dict[str, Any]:
        return _output(data)

    def _record(
        self,
        request: Any,
        data: dict[str, Any] | None,
        *,
        error: CloraError | None = None,
    ) -> dict[str, Any]:
        """Append the interaction to the write-behind log (never raises)."""
        choice = (data or {}).get("choices", [{}])[0] if data and data.get("choices") else {}
        usage = (data or {}).get("usage")
        latency_ms = (time.perf_counter() - self.started) * 1000
        record: dict[str, Any] = {
            "id": self.interaction_id,
            "tenant_id": self.principal.tenant_id,
            "agent_id": self.route.agent_id,
            "adapter_version_id": self.route.version_id,
            "api_key_id": self.principal.api_key_id,
            "request": request.logged_request(),
            "output": self._output(data) if data else None,
            "prompt_token_ids": (data or {}).get("prompt_token_ids"),
            "completion_token_ids": choice.get("token_ids"),
            "completion_logprobs": self._sampled_logprobs(choice),
            "usage": usage,
            "finish_reason": choice.get("finish_reason"),
            "latency_ms": latency_ms,
            "error": {"type": error.type, "message": error.message} if error else None,
            "stream": request.stream,
            "created_at": self.created_at,
            "completed_at": datetime.now(UTC),
        }
        status = "error" if error else "ok"
        tenant = self.principal.tenant_slug
        metrics.REQUESTS.labels(tenant, self.route.agent_name, status).inc()
        metrics.LATENCY.labels(tenant, self.route.agent_name).observe(record["latency_ms"] / 1000)
        if usage:
            for kind in ("prompt_tokens", "completion_tokens"):
                metrics.TOKENS.labels(tenant, self.route.agent_name, kind).inc(usage.get(kind, 0))
        try:
            self.state.buffer.append(record)
        except Exception:  # noqa: BLE001 - the answer already went out; keep it in memory
            self.state.pending.append(record)
            log.warning("interaction buffer unavailable; holding %s in memory", record["id"])
        return record


class SlotStreamingResponse(StreamingResponse):
    """A stream that gives its concurrency slot back however it ends, even when the client
    leaves before the first chunk (then the relay generator never runs)."""

    def __init__(self, content: AsyncIterator[bytes], slot: Slot, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


def _as_function_call(choice: dict[str, Any]) -> None:
    """Answer a legacy ``functions`` caller in its own shape: the first tool call becomes
    ``function_call`` (whole message or stream delta)."""
    for key in ("message", "delta"):
        message = choice.get(key)
        if not message:
            continue
        calls = message.pop("tool_calls", None) or []
        # The legacy API has one call per message; a parallel call's fragments are dropped.
        first = next((call for call in calls if call.get("index", 0) == 0), None)
        if first is not None:
            function = first.get("function") or {}
            message["function_call"] = {k: v for k, v in function.items() if v is not None}
    if choice.get("finish_reason") == "tool_calls":
        choice["finish_reason"] = "function_call"


def _output(data: dict[str, Any]) -> dict[str, Any]:
    """Choice 0's message; with ``n > 1`` also the other messages and, per choice, its own
    sampled tokens and logprobs (the columns hold choice 0's), so feedback can address any."""
    choices = data.get("choices", [])
    messages = [c.get("message") or {} for c in choices]
    first = dict(messages[0]) if messages else {}
    if len(messages) > 1:
        first["alternatives"] = messages[1:]
        first["choices"] = [
            {
                "index": choice.get("index", number),
                "message": messages[number],
                "finish_reason": choice.get("finish_reason"),
                "completion_token_ids": choice.get("token_ids"),
                "completion_logprobs": [
                    item["logprob"]
                    for item in ((choice.get("logprobs") or {}).get("content") or [])
                ]
                or None,
            }
            for number, choice in enumerate(choices)
        ]
    return first


def _engine_error(resp: EngineResponse) -> CloraError:
    try:
        message = resp.json().get("error", {}).get("message") or resp.text
    except ValueError:
        message = resp.text
    if 400 <= resp.status_code < 500:
        return InvalidRequest(f"the engine refused the request: {message}"[:2000])
    return EngineUnavailable(f"engine error {resp.status_code}")
