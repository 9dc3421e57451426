"""Prometheus metrics of the gateway.

Labels are bounded: tenant and agent, never the adapter version (which grows with every
cycle). ``/metrics`` asks for ``CLORA_METRICS_TOKEN`` when set, and otherwise answers only
callers on the gateway's own host."""

from __future__ import annotations

import hmac

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "clora_requests_total", "Chat completion requests", ["tenant", "agent", "status"]
)
LATENCY = Histogram(
    "clora_request_seconds",
    "Chat completion latency, end to end",
    ["tenant", "agent"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
OVERHEAD = Histogram(
    "clora_gateway_overhead_seconds",
    "Time the gateway adds on top of the engine",
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1),
)
TOKENS = Counter("clora_tokens_total", "Tokens served", ["tenant", "agent", "kind"])
BUFFER_DEPTH = Gauge("clora_interaction_buffer_depth", "Interactions waiting for Postgres")
DEAD_LETTERS = Gauge(
    "clora_interaction_dead_letters",
    "Interactions the database or the encoder refused for good, set aside for an operator",
)


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def may_scrape(
    client_host: str | None, authorization: str, token: str | None, forwarded: bool = False
) -> bool:
    """Whether a caller may read /metrics: the bearer token when one is set, else a caller on
    this host that came straight in. A request that carries proxy headers (``forwarded``) came
    through a proxy or says it did: the address uvicorn took from them is the caller's word,
    so with ``FORWARDED_ALLOW_IPS=*`` a header naming 127.0.0.1 would open it to anyone."""
    if token:
        scheme, _, given = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)
    return client_host in LOOPBACK and not forwarded
