"""The trainer service with N agents' work at once vs one agent at a time.

Runs the real `TrainerDaemon` (in this process, on a database of its own) on the bundled
model. For N = 1, 2, 4, 8 agents it submits N training jobs at once and times the service until
all are done (their steps share rounds and passes), then submits the same N jobs one after
another, each alone. Two workloads: small cycles (8 SFT rows of a correction-like conversation
plus 8 KL rows per agent) and RL-sized batches (64 rows per agent). Each cell is repeated
(`--repeats`, default 3) and reported as mean ± sd of the ratio sequential / shared. Also
recorded: the share of a round spent swapping adapter state (AdapterStore timing) and the host
memory each added tenant costs (its AdapterStore bytes).

Writes bench/results/trainer_service.json and a PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def _workload(kind: str, seed: int) -> dict[str, Any]:
    from trainer.envs import CalculatorEnvironment

    env = CalculatorEnvironment()
    rows = 8 if kind == "small" else 64
    sft = []
    for task in env.tasks("train", rows, seed=seed):
        call = {
            "id": "c1",
            "type": "function",
            "function": {
                "name": "calculator",
                "arguments": json.dumps({"expression": task.info["expression"]}),
            },
        }
        sft.append(
            {
                "messages": [
                    *env.initial_messages(task),
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                ],
                "tools": env.tools(),
            }
        )
    kl = [
        {"prompt_token_ids": list(range(3, 40)), "completion_token_ids": list(range(40, 52))}
        for _ in range(8)
    ]
    examples: dict[str, Any] = {"sft": sft}
    if kind == "small":
        examples["kl"] = kl
    return examples


def _payload(tenant: uuid.UUID, kind: str, seed: int, steps: int, out: Path) -> dict[str, Any]:
    return {
        "adapter_id": f"bench-{seed}",
        "parent_dir": None,
        "steps": steps,
        "lr": 1e-3,
        "lora": {
            "rank": 16,
            "alpha": 32,
            "target_modules": [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
        },
        "examples": _workload(kind, seed),
        "mixture": {"sft": 1.0},
        "kl_coef": 1.0,
        "write_to": str(out / f"{seed}-{uuid.uuid4().hex[:6]}"),
        "tenant": str(tenant),
    }


def _run(service: Any, jobs: list[dict[str, Any]], tenants: list[uuid.UUID]) -> float:
    """Enqueue the jobs at once and run the service until they are all done; seconds."""
    from app.core.db import unit_of_work
    from app.training import queue

    with unit_of_work() as session:
        for tenant, body in zip(tenants, jobs, strict=True):
            queue.enqueue(session, tenant, None, "train", body, int(body["steps"]))
    started = time.perf_counter()
    while service.run_round():
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default="small,rl")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from bench.stack import bench_database

    out = Path(tempfile.mkdtemp(prefix="clora-trainer-bench-"))
    results: list[dict[str, Any]] = []
    with bench_database() as url:
        os.environ.update(
            CLORA_DATABASE_URL=url, CLORA_DATA_DIR=str(out / "data"), CLORA_TRAINER_MAX_ACTIVE="8"
        )
        from app.core.config import get_settings
        from app.core.db import unit_of_work
        from app.models import Tenant
        from app.training.daemon import TrainerDaemon

        get_settings.cache_clear()
        service = TrainerDaemon(worker_id="bench")
        service.warm()
        with unit_of_work() as session:
            rows = [Tenant(slug=f"b-{uuid.uuid4().hex[:8]}", name="bench") for _ in range(8)]
            session.add_all(rows)
            session.flush()
            tenants = [t.id for t in rows]
        _run(service, [_payload(tenants[0], "small", 0, 2, out)], tenants[:1])  # warm-up
        for kind in args.workloads.split(","):
            for n in [int(x) for x in args.n.split(",")]:
                ratios, shared_s, serial_s, swap = [], [], [], []
                for r in range(args.repeats):
                    jobs = [
                        _payload(tenants[i], kind, 100 * r + i, args.steps, out) for i in range(n)
                    ]
                    store = service.engine.store
                    swap_before = getattr(store, "swap_seconds", 0.0)
                    t_shared = _run(service, jobs, tenants[:n])
                    swap.append((getattr(store, "swap_seconds", 0.0) - swap_before) / t_shared)
                    t_serial = sum(
                        _run(service, [j], tenants[i : i + 1]) for i, j in enumerate(jobs)
                    )
                    shared_s.append(t_shared)
                    serial_s.append(t_serial)
                    ratios.append(t_serial / t_shared)
                sd = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
                row = {
                    "workload": kind,
                    "n": n,
                    "steps": args.steps,
                    "shared_s": statistics.mean(shared_s),
                    "serial_s": statistics.mean(serial_s),
                    "ratio_mean": statistics.mean(ratios),
                    "ratio_sd": sd,
                    "ratios": ratios,
                    "swap_share": max(swap),
                }
                results.append(row)
                print(
                    f"{kind:<6} N={n}  shared {row['shared_s']:.1f} s  one at a time "
                    f"{row['serial_s']:.1f} s  ratio {row['ratio_mean']:.2f} ± {sd:.2f}  "
                    f"swap {row['swap_share']:.1%}",
                    flush=True,
                )
        engine = service.engine
        engine.create_adapter("__probe")
        st = engine.store.get("__probe")
        per_tenant_mb = sum(t.numel() * t.element_size() for t in st.flat.values()) / 2**20
    data = {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "cpus": os.cpu_count(),
            "threads": 1,
            "model": "bundled clora-tiny",
            "lora_rank": 16,
        },
        "results": results,
        "memory_per_tenant_mb": per_tenant_mb,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trainer_service.json").write_text(json.dumps(data, indent=1))
    print(f"host memory per added tenant: {per_tenant_mb:.2f} MB (LoRA, master, moments, grads)")
    _plot(results, RESULTS / "trainer_service.png")


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for kind in sorted({r["workload"] for r in results}):
        rows = [r for r in results if r["workload"] == kind]
        ax.errorbar(
            [r["n"] for r in rows],
            [r["ratio_mean"] for r in rows],
            yerr=[r["ratio_sd"] for r in rows],
            marker="o",
            capsize=3,
            label=kind,
        )
    ax.axhline(1.0, color="grey", linestyle=":")
    ax.set_xlabel("agents training at once (N)", fontsize=11)
    ax.set_ylabel("one at a time / shared (x)", fontsize=11)
    ax.set_title("Trainer service: shared rounds vs one agent at a time", fontsize=11)
    ax.legend(fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
