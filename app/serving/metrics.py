"""Prometheus metrics of the gateway."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "clora_requests_total", "Chat completion requests", ["tenant", "adapter", "status"]
)
LATENCY = Histogram(
    "clora_request_seconds",
    "Chat completion latency, end to end",
    ["tenant", "adapter"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
OVERHEAD = Histogram(
    "clora_gateway_overhead_seconds",
    "Time the gateway adds on top of the engine",
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1),
)
TOKENS = Counter("clora_tokens_total", "Tokens served", ["tenant", "adapter", "kind"])
BUFFER_DEPTH = Gauge("clora_interaction_buffer_depth", "Interactions waiting for Postgres")
