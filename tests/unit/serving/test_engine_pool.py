"""The engine pool survives the engine closing a pooled connection just as it is reused."""

from __future__ import annotations

import asyncio

import pytest

from app.core.errors import EngineUnavailable
from app.sampler.pool import EnginePool

BODY = b'{"ok": true}'
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


async def _server(drop_first: int) -> tuple[asyncio.Server, list[int]]:
    """A server that reads each request and, for the first `drop_first` connections, closes
    without answering (what a keep-alive timeout racing a reused connection looks like)."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(len(seen) + 1)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        if len(seen) > drop_first:
            writer.write(OK)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


@pytest.mark.parametrize("drops", [1, 2])
def test_a_connection_closed_before_the_answer_is_tried_once_more(drops: int) -> None:
    async def run() -> tuple[int | Exception, list[int]]:
        server, seen = await _server(drop_first=drops)
        port = server.sockets[0].getsockname()[1]
        pool = EnginePool([f"http://127.0.0.1:{port}"])
        try:
            resp = await pool.post(f"http://127.0.0.1:{port}/v1/chat/completions", {"a": 1})
            return resp.status_code, seen
        except EngineUnavailable as exc:
            return exc, seen
        finally:
            await pool.close()
            server.close()

    result, seen = asyncio.run(run())
    if drops == 1:  # the retry, on a fresh connection, gets the answer
        assert result == 200 and seen == [1, 2]
    else:  # tried twice, then a clear 503 for the client
        assert isinstance(result, EngineUnavailable) and seen == [1, 2]
        assert "ServerDisconnectedError" in str(result)
