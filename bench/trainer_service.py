"""The trainer service with N agents' work at once vs one agent at a time.

Runs the real `TrainerDaemon` (in this process, on a database of its own) on the bundled
model. For N = 1, 2, 4, 8 agents it submits N training jobs at once and times the service until
all are done (their steps share rounds and passes), then submits the same N jobs one after
another, each alone. Two workloads:

- small: a learning cycle's job, 8 SFT rows of a correction-like conversation (calculator
  system prompt and tool list) plus 8 KL rows per agent;
- rl: an RL experiment's `rl` job, each step's batch sent to the job's inbox as the experiment
  loop sends it: 4 prompts x 8 sampled calculator episodes (tool call, tool result, answer),
  policy gradient with recorded sampling logprobs and advantages, the adapter written after
  every step as for publishing.

Each cell is repeated (`--repeats`, default 3) and reported as mean ± sd of the ratio
sequential / shared. Also recorded: the share of a round spent swapping adapter state
(AdapterStore timing), the share of passes that held several agents' rows, and the host memory
each added tenant costs (its AdapterStore bytes).

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


def _calculator_examples(rows: int, seed: int) -> list[dict[str, Any]]:
    """Calculator conversations with the system prompt and tools: the tool call, and (for an
    RL episode) the tool's result and the final answer."""
    from trainer.envs import CalculatorEnvironment

    env = CalculatorEnvironment()
    out = []
    for task in env.tasks("train", rows, seed=seed):
        expression = task.info["expression"]
        call = {
            "id": "c1",
            "type": "function",
            "function": {
                "name": "calculator",
                "arguments": json.dumps({"expression": expression}),
            },
        }
        out.append(
            {
                "messages": [
                    *env.initial_messages(task),
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                ],
                "tools": env.tools(),
                "expression": expression,
            }
        )
    return out


def _small(seed: int) -> dict[str, Any]:
    sft = [{k: v for k, v in e.items() if k != "expression"} for e in _calculator_examples(8, seed)]
    kl = [
        {"prompt_token_ids": list(range(3, 40)), "completion_token_ids": list(range(40, 52))}
        for _ in range(8)
    ]
    return {"sft": sft, "kl": kl}


def _rl_batch(tokenizer: Any, seed: int, prompts: int = 4, group: int = 8) -> dict[str, Any]:
    """One RL step's batch as the experiment loop sends it: `prompts` x `group` episodes."""
    from trainer.batch import encode_chat

    ids, masks, sampling, advantages = [], [], [], []
    for p, e in enumerate(_calculator_examples(prompts, seed)):
        for g in range(group):
            answer = {
                "id": "c2",
                "type": "function",
                "function": {"name": "final_answer", "arguments": json.dumps({"answer": g})},
            }
            messages = [
                *e["messages"],
                {"role": "tool", "tool_call_id": "c1", "content": str(10 * p + g)},
                {"role": "assistant", "content": None, "tool_calls": [answer]},
            ]
            row, mask = encode_chat(tokenizer, messages, tools=e["tools"])
            ids.append(row)
            masks.append(mask)
            sampling.append([-1.0 if m else 0.0 for m in mask])
            advantages.append(1.0 if g % 2 == 0 else -1.0)
    return {
        "input_ids": ids,
        "loss_mask": masks,
        "sampling_logprobs": sampling,
        "advantages": advantages,
    }


def _payload(tenant: uuid.UUID, kind: str, seed: int, steps: int, out: Path) -> dict[str, Any]:
    return {
        "adapter_id": f"bench-{seed}",
        "parent_dir": None,
        "steps": steps,
        "lr": 1e-3,
        "seed": seed,
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
        "examples": _small(seed) if kind == "small" else {},
        "mixture": {"sft": 1.0},
        "kl_coef": 1.0,
        "write_to": str(out / f"{seed}-{uuid.uuid4().hex[:6]}"),
        "tenant": str(tenant),
    }


def _run(
    service: Any, kind: str, jobs: list[dict[str, Any]], tenants: list[uuid.UUID]
) -> tuple[float, float]:
    """Enqueue the jobs at once and run the service until they are all done: seconds, and the
    share of the jobs' passes that held several jobs' rows (from their step records). An RL
    job's step requests are all in its inbox before the clock starts, as if its loop always
    had the next batch ready."""
    from sqlalchemy import select

    from app.core.db import unit_of_work
    from app.core.redis import get_redis
    from app.models import TrainingJobStep
    from app.training import queue

    redis = get_redis()
    ids = []
    with unit_of_work() as session:
        for tenant, body in zip(tenants, jobs, strict=True):
            steps = int(body["steps"])
            payload = {k: v for k, v in body.items() if k != "rl_batch"}
            job_kind = "train" if kind == "small" else "rl"
            job = queue.enqueue(session, tenant, None, job_kind, payload, steps)
            ids.append(job.id)
            if kind == "rl":
                inbox = queue.RL_INBOX.format(job=job.id)
                for step in range(1, steps + 1):
                    request = {
                        "step": step,
                        "lr": body["lr"],
                        "save_to": f"{body['write_to']}/step-{step}",
                        "batch": body["rl_batch"],
                    }
                    redis.rpush(inbox, json.dumps(request))
                redis.rpush(inbox, json.dumps({"done": True}))
    started = time.perf_counter()
    while service.run_round():
        pass
    seconds = time.perf_counter() - started
    with unit_of_work() as session:
        rows = session.scalars(select(TrainingJobStep).where(TrainingJobStep.job_id.in_(ids)))
        passes = shared = 0
        for row in rows:
            passes += int(row.metrics.get("passes", 0))
            shared += int(row.metrics.get("shared_passes", 0))
    return seconds, shared / passes if passes else 0.0


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
            CLORA_DATABASE_URL=url,
            CLORA_REDIS_URL=os.environ.get("CLORA_BENCH_REDIS", "redis://127.0.0.1:6379/13"),
            CLORA_DATA_DIR=str(out / "data"),
            CLORA_TRAINER_MAX_ACTIVE="8",
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
        _run(service, "small", [_payload(tenants[0], "small", 0, 2, out)], tenants[:1])  # warm-up
        engine = service.engine
        for kind in args.workloads.split(","):
            for n in [int(x) for x in args.n.split(",")]:
                ratios, shared_s, serial_s, swap, shared_passes = [], [], [], [], []
                for r in range(args.repeats):
                    jobs = [
                        _payload(tenants[i], kind, 100 * r + i, args.steps, out) for i in range(n)
                    ]
                    if kind == "rl":
                        for j in jobs:
                            j["rl_batch"] = _rl_batch(service.tokenizer, int(j["seed"]))
                    swap_before = engine.store.swap_seconds
                    t_shared, shared = _run(service, kind, jobs, tenants[:n])
                    swap.append((engine.store.swap_seconds - swap_before) / t_shared)
                    shared_passes.append(shared)
                    t_serial = sum(
                        _run(service, kind, [j], tenants[i : i + 1])[0] for i, j in enumerate(jobs)
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
                    "shared_pass_share": statistics.mean(shared_passes),
                    "tokens_per_step": _step_tokens(service, jobs[0], kind),
                }
                results.append(row)
                print(
                    f"{kind:<6} N={n}  shared {row['shared_s']:.1f} s  one at a time "
                    f"{row['serial_s']:.1f} s  ratio {row['ratio_mean']:.2f} ± {sd:.2f}  "
                    f"swap {row['swap_share']:.1%}  shared passes "
                    f"{row['shared_pass_share']:.0%}",
                    flush=True,
                )
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


def _step_tokens(service: Any, job: dict[str, Any], kind: str) -> int:
    """Tokens one agent's step trains on (unpadded, every row of every loss)."""
    if kind == "rl":
        return sum(len(r) for r in job["rl_batch"]["input_ids"])
    from trainer.objective import build_batches

    batches = build_batches(service.tokenizer, job["examples"])
    return sum(sum(len(r) for r in b.input_ids) for b in batches.values())


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
