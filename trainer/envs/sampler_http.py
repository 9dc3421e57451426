"""The one HTTP connection policy for talking to a vLLM server (the sampler).

The gateway (`app.sampler.pool.EnginePool`) and the token-level rollouts
(`trainer.envs.tokens.CompletionsEngine`) both call vLLM's OpenAI server over pooled
keep-alive connections, and both follow these two rules:

- **Drop idle connections before the server does.** vLLM's uvicorn closes a connection that
  has been idle for `VLLM_HTTP_TIMEOUT_KEEP_ALIVE` (5 s). A pooled connection reused just as
  the server closes it fails the request that was written into it. The pool therefore drops
  its own idle connections a second earlier (`IDLE_DROP_S`).
- **Try once more a request the server never answered.** The race above can still happen
  (a slow event loop, a server with a shorter timeout): the server closes the connection
  without writing a byte of an answer. The request is sent once more on a fresh connection.
  A connection that breaks after the answer began is not retried: the request ran.

No torch here: the gateway imports this module.
"""

from __future__ import annotations

import asyncio
import errno
import logging

import aiohttp

SERVER_KEEP_ALIVE_S = 5.0
"""How long vLLM's server keeps an idle connection open (`VLLM_HTTP_TIMEOUT_KEEP_ALIVE`)."""

IDLE_DROP_S = 4.0
"""How long the client keeps an idle pooled connection: under `SERVER_KEEP_ALIVE_S`."""

JSON_HEADERS = {"Content-Type": "application/json"}

TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)
"""What a broken or unreachable server raises, before or during an answer."""

_RESET = {errno.ECONNRESET, errno.EPIPE}

log = logging.getLogger(__name__)


def open_session(
    timeout: aiohttp.ClientTimeout, *, idle_drop_s: float = IDLE_DROP_S, limit: int = 512
) -> aiohttp.ClientSession:
    """A client session whose pool drops connections idle for ``idle_drop_s``.

    Call it inside the event loop that will use the session."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=idle_drop_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


def never_answered(exc: BaseException) -> bool:
    """Whether ``exc`` says the server closed the connection before a byte of its answer:
    the request was written into a connection the server had already given up."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    return (
        isinstance(exc, aiohttp.ClientOSError)
        and not isinstance(exc, aiohttp.ClientConnectorError)  # never connected: no retry
        and exc.errno in _RESET
    )


async def post(session: aiohttp.ClientSession, url: str, data: bytes) -> aiohttp.ClientResponse:
    """POST a JSON body; the response comes back once its status and headers have arrived.

    A request the server closed without answering is sent once more, on a fresh connection;
    a second such close raises. The caller reads (or streams) the body and releases it."""
    for attempt in (1, 2):
        try:
            return await session.post(url, data=data, headers=JSON_HEADERS)
        except TRANSPORT_ERRORS as exc:
            if attempt == 2 or not never_answered(exc):
                raise
            log.info("the sampler closed a connection before answering; trying once more")
    raise AssertionError("unreachable")
