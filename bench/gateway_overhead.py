"""Benchmark: what the gateway adds over calling the same vLLM server directly.

One run, side by side, repeated (default 3 times; mean and sd over repeats): for concurrency
1, 16 and 64 and for 1 and 8 adapters mixed, the same requests go three ways:

- ``plain``: straight to the engine, as the client asked (no logprobs, no token ids);
- ``same``: straight to the engine with the options the gateway adds for its log
  (``logprobs``, ``return_token_ids``): the baseline the gateway is judged against;
- ``gateway``: through the gateway (auth, rate limit, routing, write-behind log).

Redis is a private one started as `clora up` starts it (append-only file, clora's default
fsync policy, ``everysec``), unless ``CLORA_BENCH_REDIS`` names another. The paired measurement
with one adapter is also made under ``appendfsync always``, switched with ``CONFIG SET`` in the
same run, to show what one fsync per write costs the gateway.

Reports the gateway's added p50/p99 and throughput lost against ``same``, what the logging
options cost in the engine (``same`` against ``plain``), the gateway's own
x-clora-overhead-ms (from arrival, before auth), and the CPU the gateway process used per
request and in cores (on a shared host, what it takes from the engine; it does not drift with
the engine's speed as the latency comparison does). Writes
bench/results/gateway_overhead.{json,md,png}.

Each point sends max(--requests, 8 x concurrency) requests per path (a point at 64 in flight
is then eight full batches, not one); the order of the three paths rotates from repeat to
repeat, so a drift of the engine's speed during a run does not land on one path.

On a 2-core host the engine's speed drifts by more than the gateway adds between one path's
block and the next, so a paired measurement follows, per repeat and adapter mix:

- latency at concurrency 1: --pairs pairs of requests, a gateway request and a direct one with
  the same options back to back (which goes first alternates); the median of the per-pair
  differences is the added p50, and engine drift slower than one pair cancels. Measured for
  each completion length in --pair-max-tokens (1 and 16): the engine's jitter grows with the
  length while the gateway's work hardly does, so 1 token gives the most precise figure;
- throughput at 64 in flight: --blocks pairs of adjacent blocks of 2 x 64 requests, gateway
  and direct (order alternating); the median of the per-pair throughput ratios is the loss.

    python -m bench.gateway_overhead [--requests 64] [--repeats 3] [--pairs 200] [--blocks 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import httpx

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(
    url: str, bodies: list[tuple[dict[str, str], dict[str, Any]]], concurrency: int
) -> dict[str, Any]:
    """Send every body with at most ``concurrency`` in flight; latency and throughput."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    overheads: list[float] = []
    tokens = 0
    errors = 0
    async with httpx.AsyncClient(
        timeout=300, limits=httpx.Limits(max_connections=concurrency + 8)
    ) as client:

        async def one(headers: dict[str, str], body: dict[str, Any]) -> None:
            nonlocal tokens, errors
            async with gate:
                t0 = time.perf_counter()
                resp = await client.post(url, json=body, headers=headers)
                latencies.append((time.perf_counter() - t0) * 1000)
                if resp.status_code != 200:
                    errors += 1
                    return
                tokens += resp.json()["usage"]["completion_tokens"]
                if "x-clora-overhead-ms" in resp.headers:
                    overheads.append(float(resp.headers["x-clora-overhead-ms"]))

        start = time.perf_counter()
        await asyncio.gather(*(one(h, b) for h, b in bodies))
        wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "p50_ms": _pct(latencies, 0.5),
        "p99_ms": _pct(latencies, 0.99),
        "rps": len(bodies) / wall,
        "tokens_per_s": tokens / wall,
        "errors": errors,
        "overhead_p50_ms": _pct(overheads, 0.5) if overheads else None,
        "overhead_p99_ms": _pct(overheads, 0.99) if overheads else None,
    }


def _setup(n_agents: int, data_dir: Path) -> list[tuple[str, str, str]]:
    """n tenants, each with one agent whose live version is a real rank-8 LoRA (B = 0)."""
    import uuid

    from app.adapters import service as registry
    from app.adapters.storage import copy_from
    from app.agents.service import create_agent
    from app.core.config import get_settings
    from app.core.db import unit_of_work
    from app.tenants.service import create_api_key, create_tenant
    from trainer.config import LoraSettings
    from trainer.engine import TrainingEngine

    trainer = TrainingEngine(get_settings().base_model_path)
    out = []
    for i in range(n_agents):
        staging = data_dir / f"src-{i}"
        trainer.create_adapter(f"b{i}", LoraSettings(rank=8, alpha=16), seed=i)
        trainer.save_adapter(f"b{i}", staging)
        with unit_of_work() as session:
            tenant = create_tenant(session, f"gw-{i}-{uuid.uuid4().hex[:6]}")
            create_agent(session, tenant.id, "bot", lora_rank=8, lora_alpha=16)
            _, key = create_api_key(session, tenant.id, "bench")
            from app.agents.repository import AgentRepository

            agent = AgentRepository(session).get_by_name(tenant.id, "bot")
            assert agent is not None
            version = registry.publish(
                session, get_settings(), tenant, agent.id, copy_from(staging)
            )
            registry.promote(session, tenant.id, version.id)
            name = registry.adapter_name(tenant.slug, "bot", version.number)
            path = version.path
        registry.load_into_engines(get_settings(), name, path)
        out.append((key, name, path))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=64,
        help="requests per path at concurrency 1; at concurrency c, max(this, 8 c)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=200, help="paired requests, concurrency 1")
    parser.add_argument(
        "--pair-max-tokens",
        default="1,16",
        help="completion lengths of the paired latency measurement (comma-separated): the"
        " engine's time, and its jitter, grow with the length while the gateway's work hardly"
        " does, so 1 token measures what the gateway adds most precisely",
    )
    parser.add_argument("--blocks", type=int, default=8, help="paired blocks at 64 in flight")
    parser.add_argument(
        "--only-paired", action="store_true", help="skip the three-path table (paired only)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from app.core.config import REPO_ROOT, get_settings
    from app.core.db import get_engine, get_sessionmaker
    from app.sampler.launcher import EngineProcess, LoraSlots, free_port
    from bench.stack import bench_database

    data_dir = Path(os.environ.get("CLORA_BENCH_DATA", "/tmp/clora-bench")) / "gateway"
    data_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    paired: list[dict[str, Any]] = []
    # Redis as `clora up` runs it (append-only file, clora's fsync policy), unless one is named.
    redis_server = None
    redis_url = os.environ.get("CLORA_BENCH_REDIS")
    if redis_url is None:
        from app.core.config import Settings
        from app.runtime.embedded import EmbeddedRedis

        default_fsync = Settings.model_fields["redis_appendfsync"].default
        redis_server = EmbeddedRedis(data_dir, free_port(), default_fsync)
        redis_url = redis_server.start()
    with bench_database() as db_url:
        engine = EngineProcess(
            REPO_ROOT / "weights" / "clora-tiny",
            loras=LoraSlots(max_loras=9, max_lora_rank=16, max_cpu_loras=16),
            log_path=data_dir / "engine.log",
        )
        engine.start()
        gateway: subprocess.Popen[bytes] | None = None
        try:
            engine.wait_ready(300)
            env = {
                **os.environ,
                "CLORA_DATABASE_URL": db_url,
                "CLORA_ENGINE_URLS": json.dumps([engine.url]),
                "CLORA_DATA_DIR": str(data_dir),
                "CLORA_REDIS_URL": redis_url,
                "CLORA_TENANT_RATE_LIMIT_PER_MINUTE": "10000000",
                "CLORA_TENANT_MAX_CONCURRENCY": "100000",
            }
            os.environ.update(env)
            # A fresh bench database: entries an earlier run left in the stream name rows
            # that are not there, so start the stream empty too.
            import redis

            redis.Redis.from_url(env["CLORA_REDIS_URL"]).flushdb()
            for cached in (get_settings, get_engine, get_sessionmaker):
                cached.cache_clear()
            agents = _setup(8, data_dir)
            port = free_port()
            gateway = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app.main:app",
                    "--port",
                    str(port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                env=env,
            )
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            gw_url, direct_url = (
                f"http://127.0.0.1:{port}/v1/chat/completions",
                f"{engine.url}/v1/chat/completions",
            )
            message = [{"role": "user", "content": "Count from one to ten, slowly."}]
            common = {
                "messages": message,
                "max_tokens": args.max_tokens,
                "temperature": 0,
                "ignore_eos": True,
            }
            logging_options = {"logprobs": True, "return_token_ids": True}
            for repeat in range(args.repeats if not args.only_paired else 0):
                for mixed in (1, 8):
                    for concurrency in (1, 16, 64):
                        count = max(args.requests, 8 * concurrency)
                        picks = [agents[i % mixed] for i in range(count)]
                        plain = [({}, {**common, "model": name}) for _, name, _ in picks]
                        same = [({}, {**body, **logging_options}) for _, body in plain]
                        via = [
                            ({"Authorization": f"Bearer {key}"}, {**common, "model": "bot"})
                            for key, _, _ in picks
                        ]
                        asyncio.run(_load(gw_url, via[:8], 4))  # warm every path
                        asyncio.run(_load(direct_url, same[:8], 4))
                        paths = {"plain": (direct_url, plain), "same": (direct_url, same)}
                        paths["gateway"] = (gw_url, via)
                        order = list(paths)[repeat % 3 :] + list(paths)[: repeat % 3]
                        measured = {}
                        for name in order:
                            before = _cpu_s(gateway.pid)
                            measured[name] = asyncio.run(_load(*paths[name], concurrency))
                            if name == "gateway":  # what the gateway takes from the engine
                                used = _cpu_s(gateway.pid) - before
                                measured[name]["cpu_ms_per_request"] = 1000 * used / count
                                measured[name]["cpu_cores"] = used / measured[name]["wall_s"]
                        row = {"repeat": repeat, "adapters": mixed, "concurrency": concurrency}
                        row.update(measured)
                        row.update(_compare(measured))
                        rows.append(row)
                        print(
                            f"repeat {repeat} adapters {mixed} concurrency {concurrency}: "
                            f"+{row['added_p50_ms']:.2f} ms p50 vs same options, own "
                            f"{measured['gateway']['overhead_p50_ms']:.2f} ms, throughput lost "
                            f"{row['throughput_lost']:.1%}, logging options cost "
                            f"{row['options_p50_ms']:.2f} ms",
                            flush=True,
                        )
            import redis as redis_lib

            redis_client = redis_lib.Redis.from_url(redis_url)
            default_policy = str(redis_client.config_get("appendfsync")["appendfsync"])
            # The fsync policy's cost: with one adapter, also paired under `always`.
            mixes = [(1, default_policy), (8, default_policy)]
            if default_policy != "always":
                mixes.append((1, "always"))
            for repeat in range(args.repeats):
                for mixed, fsync in mixes:
                    redis_client.config_set("appendfsync", fsync)
                    picks = [agents[i % mixed] for i in range(max(args.pairs, 128))]
                    same = [
                        ({}, {**common, **logging_options, "model": name}) for _, name, _ in picks
                    ]
                    via = [
                        ({"Authorization": f"Bearer {key}"}, {**common, "model": "bot"})
                        for key, _, _ in picks
                    ]
                    asyncio.run(_load(gw_url, via[:8], 4))
                    asyncio.run(_load(direct_url, same[:8], 4))
                    row = {"repeat": repeat, "adapters": mixed, "appendfsync": fsync}
                    paths = Paths(gw_url, direct_url, via, same)
                    row["latency"] = {}
                    for tokens in (int(t) for t in args.pair_max_tokens.split(",")):
                        row["latency"][str(tokens)] = asyncio.run(
                            _paired_latency(_with_max_tokens(paths, tokens), args)
                        )
                    row.update(_paired_throughput(paths, args))
                    paired.append(row)
                    redis_client.config_set("appendfsync", default_policy)
                    added = ", ".join(
                        f"{m['paired_added_p50_ms']:.2f} ms at {t} token(s)"
                        for t, m in row["latency"].items()
                    )
                    print(
                        f"paired, repeat {repeat} adapters {mixed} appendfsync {fsync}: added p50 "
                        f"{added} (medians of {args.pairs} pairs), throughput lost at 64 "
                        f"{row['paired_throughput_lost']:.1%} (median of {args.blocks} block "
                        f"pairs), errors {_paired_errors(row)}",
                        flush=True,
                    )
        finally:
            if gateway is not None:
                gateway.terminate()
                gateway.wait(20)
            engine.stop()
            if redis_server is not None:
                redis_server.stop()
    config = {
        "requests_at_concurrency_1": args.requests,
        "requests": "max(requests_at_concurrency_1, 8 x concurrency) per path",
        "max_tokens": args.max_tokens,
        "repeats": args.repeats,
        "pairs": args.pairs,
        "blocks": args.blocks,
        "pair_max_tokens": [int(t) for t in args.pair_max_tokens.split(",")],
        "redis": "embedded, as clora up runs it" if redis_server else "CLORA_BENCH_REDIS",
    }
    if args.only_paired:  # keep the three-path table of the last full run
        previous = json.loads((args.out / "gateway_overhead.json").read_text())
        rows, config = previous["rows"], {**previous["config"], **config}
    report = {"config": config, "rows": rows, "summary": summarise(rows)}
    report["paired"] = paired
    report["paired_summary"] = summarise_paired(paired)
    write_report(report, args.out)


class Paths(NamedTuple):
    """The two paths a paired measurement compares, with the requests each sends."""

    gw_url: str
    direct_url: str
    via: list[tuple[dict[str, str], dict[str, Any]]]  # through the gateway
    same: list[tuple[dict[str, str], dict[str, Any]]]  # direct, with the same options


def _with_max_tokens(paths: Paths, tokens: int) -> Paths:
    """The same requests, each asking for ``tokens`` completion tokens."""

    def capped(
        requests: list[tuple[dict[str, str], dict[str, Any]]],
    ) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [(headers, {**body, "max_tokens": tokens}) for headers, body in requests]

    return paths._replace(via=capped(paths.via), same=capped(paths.same))


def _paired_errors(row: dict[str, Any]) -> int:
    return (
        sum(len(m["paired_errors"]) for m in row["latency"].values()) + row["paired_block_errors"]
    )


async def _paired_latency(paths: Paths, args: argparse.Namespace) -> dict[str, Any]:
    """Gateway and direct requests back to back, one at a time; per-pair differences."""
    gw_url, direct_url, via, same = paths
    diffs: list[float] = []
    errors: list[str] = []
    async with httpx.AsyncClient(timeout=300) as client:

        async def timed(url: str, headers: dict[str, str], body: dict[str, Any]) -> float | None:
            t0 = time.perf_counter()
            resp = await client.post(url, json=body, headers=headers)
            if resp.status_code != 200:  # counted and reported, the pair left out
                errors.append(f"{resp.status_code} {resp.text[:200]}")
                return None
            return (time.perf_counter() - t0) * 1000

        for i in range(args.pairs):
            (gh, gb), (dh, db) = via[i % len(via)], same[i % len(same)]
            if i % 2:
                direct = await timed(direct_url, dh, db)
                gateway = await timed(gw_url, gh, gb)
            else:
                gateway = await timed(gw_url, gh, gb)
                direct = await timed(direct_url, dh, db)
            if gateway is not None and direct is not None:
                diffs.append(gateway - direct)
    return {
        "paired_errors": errors,
        "paired_added_p50_ms": statistics.median(diffs),
        "paired_added_mean_ms": statistics.fmean(diffs),
        "paired_diff_p25_ms": _pct(diffs, 0.25),
        "paired_diff_p75_ms": _pct(diffs, 0.75),
    }


def _paired_throughput(paths: Paths, args: argparse.Namespace) -> dict[str, Any]:
    """Adjacent blocks of 128 requests at 64 in flight, gateway and direct; per-pair ratio."""
    gw_url, direct_url, via, same = paths
    ratios: list[float] = []
    runs_all: list[dict[str, Any]] = []
    for b in range(args.blocks):
        runs = {}
        for path in ("gateway", "direct") if b % 2 == 0 else ("direct", "gateway"):
            url, bodies = (gw_url, via) if path == "gateway" else (direct_url, same)
            runs[path] = asyncio.run(_load(url, bodies[:128], 64))
            runs_all.append(runs[path])
        ratios.append(runs["gateway"]["tokens_per_s"] / runs["direct"]["tokens_per_s"])
    return {
        "paired_throughput_lost": 1 - statistics.median(ratios),
        "paired_throughput_ratios": ratios,
        "paired_block_errors": sum(r["errors"] for r in runs_all),
    }


def summarise_paired(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd over repeats of the paired medians, per adapter mix."""
    out = []
    for mixed, fsync in sorted({(r["adapters"], r["appendfsync"]) for r in rows}):
        group = [r for r in rows if (r["adapters"], r["appendfsync"]) == (mixed, fsync)]
        entry: dict[str, Any] = {"adapters": mixed, "appendfsync": fsync, "n": len(group)}
        entry["errors"] = sum(_paired_errors(r) for r in group)
        entry["paired_throughput_lost"] = _mean_sd([r["paired_throughput_lost"] for r in group])
        entry["paired_added_p50_ms"] = {
            tokens: _mean_sd([r["latency"][tokens]["paired_added_p50_ms"] for r in group])
            for tokens in group[0]["latency"]
        }
        out.append(entry)
    return out


def _mean_sd(series: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(series),
        "sd": statistics.stdev(series) if len(series) > 1 else 0.0,
    }


def _compare(m: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The gateway against direct requests with the same options; the options' own cost."""
    same, gw, plain = m["same"], m["gateway"], m["plain"]
    return {
        "added_p50_ms": gw["p50_ms"] - same["p50_ms"],
        "added_p99_ms": gw["p99_ms"] - same["p99_ms"],
        "throughput_lost": 1 - gw["tokens_per_s"] / same["tokens_per_s"],
        "options_p50_ms": same["p50_ms"] - plain["p50_ms"],
        "options_throughput_lost": 1 - same["tokens_per_s"] / plain["tokens_per_s"],
    }


SUMMARISED = (
    "added_p50_ms",
    "added_p99_ms",
    "throughput_lost",
    "options_p50_ms",
    "options_throughput_lost",
)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd over repeats of each comparison, per (adapters, concurrency)."""
    out = []
    for key in sorted({(r["adapters"], r["concurrency"]) for r in rows}):
        group = [r for r in rows if (r["adapters"], r["concurrency"]) == key]
        entry: dict[str, Any] = {"adapters": key[0], "concurrency": key[1], "n": len(group)}
        values = {name: [r[name] for r in group] for name in SUMMARISED}
        values["own_overhead_p50_ms"] = [r["gateway"]["overhead_p50_ms"] for r in group]
        values["same_p50_ms"] = [r["same"]["p50_ms"] for r in group]
        values["gateway_p50_ms"] = [r["gateway"]["p50_ms"] for r in group]
        values["errors"] = [r["gateway"]["errors"] + r["same"]["errors"] for r in group]
        values["gateway_cpu_ms_per_request"] = [r["gateway"]["cpu_ms_per_request"] for r in group]
        values["gateway_cpu_cores"] = [r["gateway"]["cpu_cores"] for r in group]
        for name, series in values.items():
            entry[name] = {
                "mean": statistics.fmean(series),
                "sd": statistics.stdev(series) if len(series) > 1 else 0.0,
            }
        out.append(entry)
    return out


def _ms(v: dict[str, float]) -> str:
    return f"{v['mean']:.2f} ± {v['sd']:.2f}"


def _pct_sd(v: dict[str, float]) -> str:
    return f"{v['mean']:.1%} ± {v['sd']:.1%}"


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gateway_overhead.json").write_text(json.dumps(report, indent=2))
    lines = [
        "| adapters | concurrency | direct p50 ms (same options) | gateway p50 ms | "
        "added p50 ms | added p99 ms | gateway's own overhead p50 ms | throughput lost | "
        "logging options' p50 cost in the engine, ms | their throughput cost | "
        "gateway CPU ms per request | gateway CPU, cores | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["summary"]:
        lines.append(
            f"| {r['adapters']} | {r['concurrency']} | {_ms(r['same_p50_ms'])} | "
            f"{_ms(r['gateway_p50_ms'])} | {_ms(r['added_p50_ms'])} | {_ms(r['added_p99_ms'])} | "
            f"{_ms(r['own_overhead_p50_ms'])} | {_pct_sd(r['throughput_lost'])} | "
            f"{_ms(r['options_p50_ms'])} | {_pct_sd(r['options_throughput_lost'])} | "
            f"{_ms(r['gateway_cpu_ms_per_request'])} | "
            f"{r['gateway_cpu_cores']['mean']:.2f} ± {r['gateway_cpu_cores']['sd']:.2f} | "
            f"{r['errors']['mean']:.0f} |"
        )
    table = "\n".join(lines)
    n = report["config"]["repeats"]
    lengths = report["config"]["pair_max_tokens"]
    paired = [
        "| adapters | Redis appendfsync | "
        + " | ".join(
            f"added p50 ms at concurrency 1, {t} token(s) (median of paired differences)"
            for t in lengths
        )
        + " | throughput lost at 64 in flight (median of paired blocks) | errors |",
        "|---|---|" + "---|" * len(lengths) + "---|---|",
    ]
    for r in report.get("paired_summary", []):
        added = " | ".join(_ms(r["paired_added_p50_ms"][str(t)]) for t in lengths)
        paired.append(
            f"| {r['adapters']} | {r['appendfsync']} | {added} | "
            f"{_pct_sd(r['paired_throughput_lost'])} | {r['errors']} |"
        )
    text = f"mean ± sd over {n} repeats\n\n{table}\n\nPaired\n\n" + "\n".join(paired) + "\n"
    (out / "gateway_overhead.md").write_text(text)
    print(text)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for mixed in sorted({r["adapters"] for r in report["summary"]}):
        pts = [r for r in report["summary"] if r["adapters"] == mixed]
        x = [r["concurrency"] for r in pts]
        for name, label, marker in (
            ("own_overhead_p50_ms", "gateway's own time p50", "o"),
            ("added_p50_ms", "added p50 vs same options", "x"),
            ("options_p50_ms", "logging options in the engine", "^"),
        ):
            ax.errorbar(
                x,
                [r[name]["mean"] for r in pts],
                yerr=[r[name]["sd"] for r in pts],
                marker=marker,
                capsize=3,
                label=f"{mixed} adapter(s): {label}",
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrency")
    ax.set_ylabel("ms")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "gateway_overhead.png", dpi=110)


if __name__ == "__main__":
    main()
