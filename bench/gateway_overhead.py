"""Benchmark: what the gateway adds over calling the same vLLM server directly.

One run, side by side: for concurrency 1, 16 and 64 and for 1 and 8 adapters mixed, the same
requests go straight to the engine and through the gateway (auth, routing, write-behind log).
Reports added p50/p99 latency, throughput lost, and the gateway's own x-clora-overhead-ms.
Writes bench/results/gateway_overhead.{json,md,png}.

    python -m bench.gateway_overhead [--requests 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parent / "results"


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
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from app.core.config import REPO_ROOT, get_settings
    from app.core.db import get_engine, get_sessionmaker
    from app.sampler.launcher import EngineProcess, free_port
    from bench.stack import bench_database

    data_dir = Path(os.environ.get("CLORA_BENCH_DATA", "/tmp/clora-bench")) / "gateway"
    data_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with bench_database() as db_url:
        engine = EngineProcess(
            REPO_ROOT / "weights" / "clora-tiny",
            max_loras=9,
            max_lora_rank=16,
            max_cpu_loras=16,
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
                "CLORA_REDIS_URL": os.environ.get("CLORA_BENCH_REDIS", "redis://127.0.0.1:6379/13"),
                "CLORA_TENANT_RATE_LIMIT_PER_MINUTE": "10000000",
                "CLORA_TENANT_MAX_CONCURRENCY": "100000",
            }
            os.environ.update(env)
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
            for mixed in (1, 8):
                for concurrency in (1, 16, 64):
                    picks = [agents[i % mixed] for i in range(args.requests)]
                    direct = [({}, {**common, "model": name}) for _, name, _ in picks]
                    via = [
                        ({"Authorization": f"Bearer {key}"}, {**common, "model": "bot"})
                        for key, _, _ in picks
                    ]
                    asyncio.run(_load(gw_url, via[:8], 4))  # warm both paths
                    asyncio.run(_load(direct_url, direct[:8], 4))
                    d = asyncio.run(_load(direct_url, direct, concurrency))
                    g = asyncio.run(_load(gw_url, via, concurrency))
                    row = {
                        "adapters": mixed,
                        "concurrency": concurrency,
                        "direct": d,
                        "gateway": g,
                        "added_p50_ms": g["p50_ms"] - d["p50_ms"],
                        "added_p99_ms": g["p99_ms"] - d["p99_ms"],
                        "throughput_lost": 1 - g["tokens_per_s"] / d["tokens_per_s"],
                    }
                    rows.append(row)
                    print(
                        f"adapters {mixed} concurrency {concurrency}: +{row['added_p50_ms']:.2f} ms p50, "
                        f"own {g['overhead_p50_ms']:.2f} ms, throughput lost {row['throughput_lost']:.1%}",
                        flush=True,
                    )
        finally:
            if gateway is not None:
                gateway.terminate()
                gateway.wait(20)
            engine.stop()
    write_report(
        {"config": {"requests": args.requests, "max_tokens": args.max_tokens}, "rows": rows},
        args.out,
    )


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gateway_overhead.json").write_text(json.dumps(report, indent=2))
    lines = [
        "| adapters | concurrency | direct p50 ms | gateway p50 ms | added p50 ms | added p99 ms | "
        "gateway's own overhead p50 ms | direct tok/s | gateway tok/s | throughput lost | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        d, g = r["direct"], r["gateway"]
        lines.append(
            f"| {r['adapters']} | {r['concurrency']} | {d['p50_ms']:.1f} | {g['p50_ms']:.1f} | "
            f"{r['added_p50_ms']:.2f} | {r['added_p99_ms']:.2f} | {g['overhead_p50_ms']:.2f} | "
            f"{d['tokens_per_s']:.0f} | {g['tokens_per_s']:.0f} | {r['throughput_lost']:.1%} | "
            f"{d['errors'] + g['errors']} |"
        )
    table = "\n".join(lines)
    (out / "gateway_overhead.md").write_text(table + "\n")
    print(table)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for mixed in sorted({r["adapters"] for r in report["rows"]}):
        pts = [r for r in report["rows"] if r["adapters"] == mixed]
        ax.plot(
            [r["concurrency"] for r in pts],
            [r["gateway"]["overhead_p50_ms"] for r in pts],
            marker="o",
            label=f"{mixed} adapter(s): gateway's own time p50",
        )
        ax.plot(
            [r["concurrency"] for r in pts],
            [r["added_p50_ms"] for r in pts],
            marker="x",
            linestyle="--",
            label=f"{mixed} adapter(s): added p50 vs direct",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrency")
    ax.set_ylabel("ms")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "gateway_overhead.png", dpi=110)


if __name__ == "__main__":
    main()
