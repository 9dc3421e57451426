"""The gateway's engine pool and the rollout client share one connection policy
(`trainer.envs.sampler_http`): both survive a server that closes idle keep-alive connections,
as vLLM's does after 5 s, and a connection closed just as a request was written into it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from app.core.errors import EngineUnavailable
from app.sampler.pool import EnginePool
from trainer.envs.tokens import CompletionsEngine

ANSWER = json.dumps(
    {
        "choices": [
            {
                "index": 0,
                "token_ids": [7, 8],
                "logprobs": {"token_logprobs": [-0.5, -0.25]},
                "finish_reason": "stop",
            }
        ]
    }
).encode()
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)


@dataclass
class KeepAliveServer:
    """An HTTP/1.1 server that keeps connections alive until they idle for ``idle_close_s``
    (uvicorn's rule), and closes without answering the requests numbered in ``unanswered``
    (1-based): what the server's keep-alive timeout firing as a request arrives looks like."""

    idle_close_s: float
    unanswered: set[int] = field(default_factory=set)
    requests: list[int] = field(default_factory=list)
    """The connection (1-based) each request arrived on, in order."""
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close_s)
                except (TimeoutError, asyncio.IncompleteReadError):
                    return
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                self.requests.append(connection)
                if len(self.requests) in self.unanswered:
                    return
                writer.write(OK)
                await writer.drain()
        finally:
            writer.close()


Client = Callable[
    [str, float], tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]
]


def gateway_pool(
    url: str, idle_drop_s: float
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]:
    pool = EnginePool([url], idle_drop_s=idle_drop_s)

    async def call() -> object:
        resp = await pool.post(f"{url}/v1/chat/completions", {"model": "m"})
        return resp.status_code

    return call, pool.close


def rollout_client(
    url: str, idle_drop_s: float
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]:
    engine = CompletionsEngine(url, idle_drop_s=idle_drop_s)

    async def call() -> object:
        out = await engine.sample("m", [[1, 2]], n=1, temperature=0.0, max_tokens=2, seed=None)
        return out[0][0].token_ids

    return call, engine.close


CLIENTS = {"gateway": gateway_pool, "rollouts": rollout_client}
EXPECTED = {"gateway": 200, "rollouts": [7, 8]}


async def _serve(server: KeepAliveServer) -> tuple[asyncio.Server, str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    return listener, f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_a_request_the_server_closed_unanswered_on_a_reused_connection_is_sent_again(
    client: str,
) -> None:
    """Request 2 reuses request 1's connection, and the server closes it unanswered (its
    keep-alive timeout fired as the request arrived): the client sends it again on a new
    connection and gets the answer."""

    async def run() -> tuple[list[object], list[int]]:
        server = KeepAliveServer(idle_close_s=30.0, unanswered={2})
        listener, url = await _serve(server)
        call, close = CLIENTS[client](url, 30.0)
        try:
            return [await call(), await call()], server.requests
        finally:
            await close()
            listener.close()

    answers, requests = asyncio.run(run())
    assert requests == [1, 1, 2]  # reused, closed unanswered, sent again on a new connection
    assert answers == [EXPECTED[client]] * 2


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_a_request_closed_unanswered_twice_fails_clearly(client: str) -> None:
    async def run() -> tuple[BaseException | None, list[int]]:
        server = KeepAliveServer(idle_close_s=30.0, unanswered={1, 2})
        listener, url = await _serve(server)
        call, close = CLIENTS[client](url, 30.0)
        try:
            await call()
            return None, server.requests
        except (EngineUnavailable, aiohttp.ClientError) as exc:
            return exc, server.requests
        finally:
            await close()
            listener.close()

    error, requests = asyncio.run(run())
    assert requests == [1, 2]  # tried twice, never a third time
    assert error is not None and "ServerDisconnected" in f"{type(error).__name__} {error}"


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("idle_drop_s", [0.2, 30.0])
def test_idle_connections_are_dropped_before_the_server_drops_them(
    client: str, idle_drop_s: float
) -> None:
    """The server closes connections idle for 5 s; the client waits 0.6 s between two
    requests. With a 0.2 s idle drop the second request goes on a connection of its own;
    with 30 s it reuses the first (the knob has an effect either way)."""

    async def run() -> list[int]:
        server = KeepAliveServer(idle_close_s=5.0)
        listener, url = await _serve(server)
        call, close = CLIENTS[client](url, idle_drop_s)
        try:
            await call()
            await asyncio.sleep(0.6)
            await call()
            return server.requests
        finally:
            await close()
            listener.close()

    requests = asyncio.run(run())
    assert requests == ([1, 2] if idle_drop_s < 0.6 else [1, 1])
