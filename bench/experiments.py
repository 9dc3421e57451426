"""Benchmark: N concurrent RL experiments on one warm engine and trainer vs running them serially.

Everything runs as the product runs it: the experiment loops (rollouts, rewards, advantages)
in this process, token-level rollouts against a vLLM server, and every optimiser step on the
trainer service (`python -m app.training`, its own process). On a 2-core machine the engine is
pinned to core 0 and the trainer service to core 1 with one thread.

For each repeat (``--repeats``, default 3):
- **probe**: one step's rollouts of N experiments (P prompts x G samples each, throughput
  mode, one adapter per experiment) through the server, beside the same workload on the same
  engine build in process (`vllm.LLM`, measured in a child before the server starts): rollout
  tok/s against the engine's offline tok/s;
- **serial warm**: each experiment i alone on the warm engine and trainer; serial for N is the
  first N back to back;
- **concurrent**, for each N: N experiments at once, synchronous (``sync``) and one step
  off-policy (``pipelined``);
- **serial cold** (``--cold-repeats``, default 1): each experiment in a fresh process tree that
  starts its engine and trainer service, runs, and exits; serial for N is the first N.
CPU seconds of the engine, the trainer service and this process (the rollout client) are
recorded for every concurrent run. Ratios are taken within a repeat, then mean ± sd.

Prints a Markdown table, writes bench/results/experiments.{json,md,png}.

    python -m bench.experiments --n 1,2,4,8 --steps 10      (also: clora bench experiments)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ENGINE_CORE, TRAINER_CORE = 0, 1
MODES = ("sync", "pipelined")


def _config(args: argparse.Namespace, index: int, *, pipeline: bool = False) -> dict[str, Any]:
    return {
        "steps": args.steps,
        "prompts_per_step": args.prompts,
        "group_size": args.group,
        "learning_rate": args.lr,
        "seed": 1000 + index,
        "rollout_mode": "throughput",
        "pipeline": pipeline,
    }


def _mean_sd(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values) if values else None,
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "runs": values,
    }


def _prepare_env(data_dir: Path, engine_url: str) -> None:
    os.environ["CLORA_ENGINE_URLS"] = json.dumps([engine_url])
    os.environ["CLORA_DATA_DIR"] = str(data_dir)
    from app.core.config import get_settings
    from app.core.db import get_engine, get_sessionmaker

    for cached in (get_settings, get_engine, get_sessionmaker):
        cached.cache_clear()


def _new_experiments(
    configs: list[dict[str, Any]], label: str
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    from app.agents.service import create_agent
    from app.core.db import unit_of_work
    from app.experiments.schemas import ExperimentConfig
    from app.experiments.service import create_experiment
    from app.tenants.service import create_tenant

    ids = []
    with unit_of_work() as session:
        for i, cfg in enumerate(configs):
            tenant = create_tenant(session, f"b{label}-{i}-{uuid.uuid4().hex[:6]}")
            create_agent(session, tenant.id, "rl")
            exp = create_experiment(session, tenant.id, "rl", ExperimentConfig(**cfg))
            ids.append((tenant.id, exp.id))
    return ids


def _steps(ids: list[tuple[uuid.UUID, uuid.UUID]]) -> list[list[dict[str, Any]]]:
    from app.core.db import unit_of_work
    from app.experiments.repository import ExperimentRepository

    with unit_of_work() as session:
        return [[s.metrics for s in ExperimentRepository(session).steps(t, e)] for t, e in ids]


async def _timed(
    settings: Any, ids: list[tuple[uuid.UUID, uuid.UUID]], trainer: Any
) -> list[float]:
    """Run concurrently; return each experiment's wall time from the common start."""
    from app.experiments.runner import ExperimentLoop

    start = time.perf_counter()

    async def one(pair: tuple[uuid.UUID, uuid.UUID]) -> float:
        status = await ExperimentLoop(pair[0], pair[1], settings, trainer).run()
        if status != "succeeded":
            raise RuntimeError(f"experiment {pair[1]} ended {status}")
        return time.perf_counter() - start

    return list(await asyncio.gather(*(one(p) for p in ids)))


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and every live process under it (vLLM runs its engine core in
    a child process)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _run(
    settings: Any, ids: list[tuple[uuid.UUID, uuid.UUID]], trainer: Any, pids: dict[str, int]
) -> dict[str, Any]:
    """One timed run with the CPU seconds each process spent on it."""
    before = {name: _cpu_s(pid) for name, pid in pids.items()}
    client_before = time.process_time()
    times = asyncio.run(_timed(settings, ids, trainer))
    cpu = {name: _cpu_s(pid) - before[name] for name, pid in pids.items()}
    cpu["rollout_client"] = time.process_time() - client_before
    return {"times": times, "steps": _steps(ids), "cpu_s": cpu}


def _summary(times: list[float], steps: list[list[dict[str, Any]]]) -> dict[str, Any]:
    flat = [s for run in steps for s in run]
    generated = sum(s.get("generated_tokens", 0) for s in flat)
    return {
        "final_s": max(times),
        "mean_s": statistics.fmean(times),
        "first_s": min(times),
        "mean_step_s": statistics.fmean(s["step_s"] for s in flat),
        "mean_rollout_s": statistics.fmean(s["rollout_s"] for s in flat),
        "mean_train_s": statistics.fmean(s["train_s"] for s in flat),
        "mean_sync_s": statistics.fmean(s["sync_s"] for s in flat),
        "generated_tokens": generated,
        "generated_tok_per_s": generated / max(times),
        "accuracy": [[s["accuracy"] for s in run] for run in steps],
    }


# --- processes ------------------------------------------------------------------------------


def _pin(core: int) -> Any:
    cores = os.sched_getaffinity(0)

    def pin() -> None:
        if core in cores and len(cores) > 1:
            os.sched_setaffinity(0, {core})

    return pin


def _start_trainer(data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """The trainer service on its own core with one thread, returned once it is warm."""
    env = {**os.environ, "CLORA_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    env["CLORA_TRAINER_ID"] = f"bench-{uuid.uuid4().hex[:6]}"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.training"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        preexec_fn=_pin(TRAINER_CORE),
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if " ready (base " in log.read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.3)
    raise RuntimeError("trainer service did not start:\n" + log.read_text())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _engine(data_dir: Path, n_max: int, name: str) -> Any:
    from app.core.config import REPO_ROOT
    from app.sampler.launcher import EngineProcess, LoraSlots

    return EngineProcess(
        REPO_ROOT / "weights" / "clora-tiny",
        loras=LoraSlots(max_loras=max(4, n_max + 1), max_lora_rank=16, max_cpu_loras=4 * n_max + 4),
        log_path=data_dir / f"{name}.log",
    )


class _Stack:
    """Engine + trainer service for one run of experiments (warm, or one cold child)."""

    def __init__(self, data_dir: Path, n_max: int, name: str) -> None:
        self.data_dir, self.n_max, self.name = data_dir, n_max, name

    def __enter__(self) -> _Stack:
        from app.core.config import get_settings
        from app.training.client import RemoteTrainer

        self.engine = _engine(self.data_dir, self.n_max, f"{self.name}-engine")
        self.engine.start()
        self.trainer_proc: subprocess.Popen[bytes] | None = None
        try:
            self.engine.wait_ready(300)
            _prepare_env(self.data_dir, self.engine.url)
            self.trainer_proc = _start_trainer(
                self.data_dir, self.data_dir / f"{self.name}-trainer.log"
            )
        except BaseException:
            self.__exit__()
            raise
        self.settings, self.trainer = get_settings(), RemoteTrainer()
        assert self.engine.pid is not None
        self.pids = {"engine": self.engine.pid, "trainer": self.trainer_proc.pid}
        return self

    def __exit__(self, *_: Any) -> None:
        if self.trainer_proc is not None:
            _stop(self.trainer_proc)
        self.engine.stop()


# --- serial cold ----------------------------------------------------------------------------


def run_cold_single(args: argparse.Namespace, index: int) -> float:
    """One experiment in a fresh process tree that starts its own engine and trainer."""
    cmd = [sys.executable, "-m", "bench.experiments", "--cold-child", str(index)]
    cmd += ["--steps", str(args.steps), "--prompts", str(args.prompts)]
    cmd += ["--group", str(args.group), "--lr", str(args.lr)]
    started = time.perf_counter()
    subprocess.run(cmd, env=dict(os.environ), check=True)
    return time.perf_counter() - started


def cold_child(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix=f"clora-cold-{args.cold_child}-"))
    with _Stack(data_dir, 1, "cold") as stack:
        ids = _new_experiments([_config(args, args.cold_child)], f"c{args.cold_child}")
        asyncio.run(_timed(stack.settings, ids, stack.trainer))


# --- the engine's offline throughput, and the same workload through the server ---------------


def _probe_tasks(args: argparse.Namespace, n: int) -> list[Any]:
    from trainer.envs import get_environment

    env = get_environment("calculator")
    return [env.tasks("train", args.prompts, seed=7000 + k) for k in range(n)]


def _probe_tokens(episodes: list[list[Any]]) -> int:
    return sum(
        len(t.completion_token_ids or ())
        for run in episodes
        for e in run
        for t in e.assistant_turns
    )


class _OfflineSampler:
    """`trainer.envs.tokens.Sampler` on an in-process `vllm.LLM`: the calls made within one
    event-loop turn (N experiments' rounds) go to the engine as one `generate`."""

    def __init__(self, llm: Any, loras: dict[str, Any]) -> None:
        self.llm, self.loras = llm, loras
        self.pending: list[tuple[Any, ...]] = []

    async def sample(
        self,
        model: str,
        prompts: Any,
        *,
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int | None,
    ) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((model, prompts, n, temperature, max_tokens, seed, future))
        if len(self.pending) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from trainer.envs.tokens import Sample

        calls, self.pending = self.pending, []
        inputs, params, loras, owners = [], [], [], []
        for c, (model, prompts, n, temperature, max_tokens, seed, _) in enumerate(calls):
            for p in prompts:
                inputs.append(TokensPrompt(prompt_token_ids=list(p)))
                params.append(
                    SamplingParams(
                        n=n, temperature=temperature, max_tokens=max_tokens, logprobs=0, seed=seed
                    )
                )
                loras.append(self.loras[model])
                owners.append(c)
        outs = self.llm.generate(inputs, params, lora_request=loras, use_tqdm=False)
        answers: list[list[Any]] = [[] for _ in calls]
        for owner, out in zip(owners, outs, strict=True):
            answers[owner].append(
                [
                    Sample(
                        list(c.token_ids),
                        [lp[t].logprob for lp, t in zip(c.logprobs, c.token_ids, strict=True)],
                        str(c.finish_reason),
                    )
                    for c in out.outputs
                ]
            )
        for call, answer in zip(calls, answers, strict=True):
            call[-1].set_result(answer)


def offline_probe(args: argparse.Namespace) -> None:
    """Child process: the engine's offline tok/s on the probe workload, for each N, printed as JSON."""
    from app.sampler.launcher import ENGINE_ENV

    os.environ.update(ENGINE_ENV)  # the server's settings: in-process engine core, KV space
    from vllm import LLM
    from vllm.lora.request import LoRARequest

    from app.core.config import REPO_ROOT, get_settings
    from app.sampler.identity import write_identity_adapter
    from app.training.client import chat_tokens
    from trainer.envs import get_environment

    # Pinned like the server: VLLM_CPU_OMP_THREADS_BIND puts the compute threads on the engine's
    # core. (Restricting the whole process to that core as well cost 30x here.)
    ns = [int(x) for x in args.n.split(",")]
    model_dir = REPO_ROOT / "weights" / "clora-tiny"
    spec = _engine(Path(tempfile.mkdtemp()), max(ns), "offline")
    llm = LLM(
        str(model_dir),
        dtype="float32",
        enable_lora=True,
        max_loras=spec.max_loras,
        max_lora_rank=spec.max_lora_rank,
        max_cpu_loras=spec.max_cpu_loras,
        max_model_len=spec.max_model_len,
        block_size=spec.block_size,
        enable_chunked_prefill=False,
        max_num_batched_tokens=max(8192, spec.max_model_len),
        seed=0,
    )
    identity = write_identity_adapter(model_dir, Path(tempfile.mkdtemp()) / "identity")
    loras = {f"probe-{k}": LoRARequest(f"probe-{k}", k + 1, str(identity)) for k in range(max(ns))}
    sampler = _OfflineSampler(llm, loras)
    env, codec = get_environment("calculator"), chat_tokens(get_settings().base_model_path)
    out: dict[str, list[float]] = {}
    for n in ns:
        tasks = _probe_tasks(args, n)
        rates = []
        for _ in range(args.repeats + 1):  # the first is warm-up
            start = time.perf_counter()
            runs = asyncio.run(_play_all(sampler, codec, env, tasks, args))
            rates.append(_probe_tokens(runs) / (time.perf_counter() - start))
        out[str(n)] = rates[1:]
    print("PROBE " + json.dumps(out), flush=True)


async def _play_all(
    sampler: Any, codec: Any, env: Any, tasks: list[list[Any]], args: argparse.Namespace
) -> list[list[Any]]:
    from trainer.envs.tokens import play

    return list(
        await asyncio.gather(
            *(
                play(
                    sampler,
                    codec,
                    f"probe-{k}",
                    env,
                    t,
                    group_size=args.group,
                    temperature=1.0,
                    max_tokens=96,
                )
                for k, t in enumerate(tasks)
            )
        )
    )


def server_probe(args: argparse.Namespace, engine: Any, n: int) -> float:
    """Rollout tok/s of the probe workload through the server (throughput mode)."""
    import httpx

    from app.core.config import get_settings
    from app.sampler.identity import write_identity_adapter
    from app.training.client import chat_tokens, token_sampler
    from trainer.envs import get_environment

    identity = write_identity_adapter(
        get_settings().base_model_path, Path(tempfile.mkdtemp()) / "identity"
    )
    for k in range(n):
        httpx.post(
            f"{engine.url}/v1/load_lora_adapter",
            json={"lora_name": f"probe-{k}", "lora_path": str(identity)},
            timeout=60,
        )
    env, codec = get_environment("calculator"), chat_tokens(get_settings().base_model_path)
    tasks = _probe_tasks(args, n)

    async def go() -> float:
        sampler = token_sampler(engine.url)
        try:
            start = time.perf_counter()
            runs = await _play_all(sampler, codec, env, tasks, args)
            return _probe_tokens(runs) / (time.perf_counter() - start)
        finally:
            await sampler.close()

    return asyncio.run(go())


def _run_offline_probe(args: argparse.Namespace) -> dict[str, list[float]]:
    cmd = [sys.executable, "-m", "bench.experiments", "--offline-probe", "--n", args.n]
    cmd += [
        "--prompts",
        str(args.prompts),
        "--group",
        str(args.group),
        "--repeats",
        str(args.repeats),
    ]
    from app.sampler.launcher import omp_threads

    # The same threads as the server's engine (`EngineProcess` sets them the same way).
    bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    env = {**os.environ, "OMP_NUM_THREADS": str(omp_threads(bind))}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("PROBE "))
    return {k: [float(v) for v in vs] for k, vs in json.loads(line[len("PROBE ") :]).items()}


# --- the whole benchmark --------------------------------------------------------------------


def _cumulative(durations: list[float]) -> list[float]:
    """Completion time of each experiment when they run one after another."""
    out, total = [], 0.0
    for d in durations:
        total += d
        out.append(total)
    return out


def _reached(accuracy: list[list[float]], threshold: float = 0.9) -> list[int | None]:
    """For each experiment, the first step (1-based) whose rollout accuracy reached ``threshold``."""
    return [next((i + 1 for i, a in enumerate(run) if a >= threshold), None) for run in accuracy]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cold-repeats",
        type=int,
        default=1,
        help="Serial-cold repeats (each is N fresh process trees).",
    )
    parser.add_argument("--no-cold", action="store_true", help="Skip the serial-cold baseline.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cold-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--offline-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # The engine's OpenMP threads on core 0; the trainer service on core 1 with one thread.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", str(ENGINE_CORE))
    os.environ.setdefault("CLORA_REDIS_URL", "redis://127.0.0.1:6379/13")
    if args.cold_child is not None:
        cold_child(args)
        return
    if args.offline_probe:
        offline_probe(args)
        return
    from bench.stack import bench_database

    ns = [int(x) for x in args.n.split(",")]
    data_dir = Path(os.environ.get("CLORA_BENCH_DATA", tempfile.mkdtemp(prefix="clora-bench-")))
    report: dict[str, Any] = {
        "config": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k not in ("cold_child", "offline_probe")
        },
        "machine": {
            "cpus": os.cpu_count(),
            "engine_core": ENGINE_CORE,
            "trainer_core": TRAINER_CORE,
        },
        "repeats": [],
        "cold_single_s": [],
        "partial": True,
    }
    with bench_database() as db_url:
        os.environ["CLORA_DATABASE_URL"] = db_url
        report["offline_tok_s"] = _run_offline_probe(args)
        print(f"offline tok/s: {report['offline_tok_s']}", flush=True)
        with _Stack(data_dir / "warm", max(ns), "warm") as stack:
            # A throwaway experiment first: the first run on a fresh engine and trainer pays
            # warm-up (kernels, first LoRA loads) that would bias the first mode timed.
            _run(
                stack.settings,
                _new_experiments([_config(args, 99)], "warmup"),
                stack.trainer,
                stack.pids,
            )
            for repeat in range(args.repeats):
                entry: dict[str, Any] = {"probe_tok_s": {}, "serial_warm_single_s": [], "runs": {}}
                for n in ns:
                    entry["probe_tok_s"][str(n)] = server_probe(args, stack.engine, n)
                print(f"repeat {repeat}: server tok/s {entry['probe_tok_s']}", flush=True)
                warm_ids = _new_experiments(
                    [_config(args, i) for i in range(max(ns))], f"w{repeat}"
                )
                for pair in warm_ids:
                    entry["serial_warm_single_s"].append(
                        _run(stack.settings, [pair], stack.trainer, stack.pids)["times"][0]
                    )
                entry["serial_warm_steps"] = _steps(warm_ids)
                print(
                    f"repeat {repeat}: serial warm {[round(t, 1) for t in entry['serial_warm_single_s']]}",
                    flush=True,
                )
                for n in ns:
                    for mode in MODES:
                        ids = _new_experiments(
                            [_config(args, i, pipeline=mode == "pipelined") for i in range(n)],
                            f"{mode[0]}{repeat}n{n}",
                        )
                        run = _run(stack.settings, ids, stack.trainer, stack.pids)
                        entry["runs"].setdefault(str(n), {})[mode] = {
                            **_summary(run["times"], run["steps"]),
                            "cpu_s": run["cpu_s"],
                        }
                        print(
                            f"repeat {repeat} N={n} {mode}: {max(run['times']):.1f}s cpu {run['cpu_s']}",
                            flush=True,
                        )
                report["repeats"].append(entry)
                write_report(report, args.out)
        if not args.no_cold:
            for _ in range(args.cold_repeats):
                report["cold_single_s"].append([run_cold_single(args, i) for i in range(max(ns))])
                print(
                    f"serial cold: {[round(t, 1) for t in report['cold_single_s'][-1]]}", flush=True
                )
    report["partial"] = False
    write_report(report, args.out)
    print(f"results in {args.out}")


def aggregate(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per N: every figure as mean ± sd over repeats, ratios taken within each repeat."""
    out: dict[str, dict[str, Any]] = {}
    repeats = report["repeats"]
    colds = report.get("cold_single_s") or []
    for n in repeats[0]["runs"] if repeats else []:
        k = int(n)
        row: dict[str, Any] = {}
        warm_final = [_cumulative(r["serial_warm_single_s"][:k])[-1] for r in repeats]
        warm_mean = [statistics.fmean(_cumulative(r["serial_warm_single_s"][:k])) for r in repeats]
        cold_final = [_cumulative(c[:k])[-1] for c in colds]
        row["serial_warm_final_s"] = _mean_sd(warm_final)
        row["serial_cold_final_s"] = _mean_sd(cold_final)
        row["serial_cold_first_s"] = _mean_sd([c[0] for c in colds])
        for mode in MODES:
            runs = [r["runs"][n][mode] for r in repeats if mode in r["runs"].get(n, {})]
            if not runs:
                continue
            finals = [x["final_s"] for x in runs]
            row[mode] = {
                key: _mean_sd([x[key] for x in runs])
                for key in (
                    "final_s",
                    "mean_s",
                    "first_s",
                    "mean_step_s",
                    "mean_rollout_s",
                    "mean_train_s",
                    "generated_tok_per_s",
                )
            }
            row[mode]["cpu_s"] = {
                p: _mean_sd([x["cpu_s"][p] for x in runs]) for p in runs[0]["cpu_s"]
            }
            row[mode]["vs_serial_warm"] = _mean_sd(
                [w / f for w, f in zip(warm_final, finals, strict=False)]
            )
            row[mode]["mean_vs_serial_warm"] = _mean_sd(
                [w / x["mean_s"] for w, x in zip(warm_mean, runs, strict=False)]
            )
            if cold_final:
                row[mode]["vs_serial_cold"] = _mean_sd(
                    [statistics.fmean(cold_final) / f for f in finals]
                )
            finals_acc = [run[-1] for x in runs for run in x["accuracy"]]
            row[mode]["final_accuracy"] = _mean_sd(finals_acc)
            reached = [s for x in runs for s in _reached(x["accuracy"])]
            row[mode]["reached_0_9_by_step"] = reached
            row[mode]["all_reached_0_9_by_last_step"] = all(s is not None for s in reached)
            # Statistical parity: per step, concurrent mean accuracy within ±1 sd of serial.
            serial = [r["serial_warm_steps"][:k] for r in repeats]
            steps = min(len(run) for x in runs for run in x["accuracy"])
            parity = []
            for s in range(steps):
                ser = [run[s]["accuracy"] for group in serial for run in group if len(run) > s]
                con = [run[s] for x in runs for run in x["accuracy"]]
                sd = statistics.stdev(ser) if len(ser) > 1 else 0.0
                parity.append(
                    {
                        "step": s + 1,
                        "serial_mean": statistics.fmean(ser),
                        "serial_sd": sd,
                        "concurrent_mean": statistics.fmean(con),
                        "within_1sd": abs(statistics.fmean(con) - statistics.fmean(ser)) <= sd,
                    }
                )
            row[mode]["parity"] = parity
        probe = [r["probe_tok_s"][n] for r in repeats if n in r["probe_tok_s"]]
        offline = report.get("offline_tok_s", {}).get(n, [])
        row["rollout_tok_s"] = _mean_sd(probe)
        row["offline_tok_s"] = _mean_sd(offline)
        if probe and offline:
            row["rollout_vs_offline"] = _mean_sd([p / statistics.fmean(offline) for p in probe])
        out[n] = row
    return out


def _fmt(x: dict[str, Any] | None, spec: str = ".2f", suffix: str = "") -> str:
    if not x or x.get("mean") is None:
        return "n/a"
    return f"{x['mean']:{spec}}{suffix} ± {x['sd']:{spec}}"


def write_report(report: dict[str, Any], out: Path) -> None:
    """bench/results/experiments.{json,md,png}."""
    out.mkdir(parents=True, exist_ok=True)
    report["summary"] = aggregate(report)
    (out / "experiments.json").write_text(json.dumps(report, indent=2))
    lines = [
        "| N | mode | final s | first s | step s | rollout s | train s | vs serial warm | vs serial cold | final accuracy | all ≥ 0.9 | rollout tok/s | offline tok/s | CPU s engine / trainer / client |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, row in report["summary"].items():
        for mode in MODES:
            m = row.get(mode)
            if not m:
                continue
            cpu = m["cpu_s"]
            lines.append(
                f"| {n} | {mode} | {_fmt(m['final_s'], '.1f')} | {_fmt(m['first_s'], '.1f')} | {_fmt(m['mean_step_s'])} | "
                f"{_fmt(m['mean_rollout_s'])} | {_fmt(m['mean_train_s'])} | {_fmt(m['vs_serial_warm'], '.2f', 'x')} | "
                f"{_fmt(m.get('vs_serial_cold'), '.2f', 'x')} | {_fmt(m['final_accuracy'], '.3f')} | "
                f"{'yes' if m['all_reached_0_9_by_last_step'] else 'no'} | {_fmt(row['rollout_tok_s'], '.0f')} | "
                f"{_fmt(row['offline_tok_s'], '.0f')} | "
                f"{_fmt(cpu.get('engine'), '.0f')} / {_fmt(cpu.get('trainer'), '.0f')} / {_fmt(cpu.get('rollout_client'), '.0f')} |"
            )
    serial = [
        f"| {n} | {_fmt(row['serial_warm_final_s'], '.1f')} | {_fmt(row['serial_cold_final_s'], '.1f')} | {_fmt(row['serial_cold_first_s'], '.1f')} |"
        for n, row in report["summary"].items()
    ]
    table = (
        "\n".join(lines)
        + "\n\n| N | serial warm final s | serial cold final s | serial cold first s |\n|---|---|---|---|\n"
        + "\n".join(serial)
    )
    (out / "experiments.md").write_text(table + "\n")
    print(table)
    _plot(report, out)


def _plot(report: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    summary = report["summary"]
    if not summary:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ns = [int(n) for n in summary]
    series = [("serial cold", "serial_cold_final_s"), ("serial warm", "serial_warm_final_s")]
    for label, key in series:
        ys = [summary[str(n)][key]["mean"] for n in ns]
        if all(y is not None for y in ys):
            left.errorbar(
                ns,
                ys,
                yerr=[summary[str(n)][key]["sd"] for n in ns],
                marker="o",
                label=label,
                capsize=3,
            )
    for mode in MODES:
        if all(mode in summary[str(n)] for n in ns):
            ys = [summary[str(n)][mode]["final_s"]["mean"] for n in ns]
            left.errorbar(
                ns,
                ys,
                yerr=[summary[str(n)][mode]["final_s"]["sd"] for n in ns],
                marker="o",
                label=f"concurrent, {mode}",
                capsize=3,
            )
    left.set_xlabel("experiments N")
    left.set_ylabel("time until the last experiment ends (s)")
    left.legend()
    last = str(max(ns))
    for mode in MODES:
        runs = [
            r["runs"][last][mode]["accuracy"]
            for r in report["repeats"]
            if mode in r["runs"].get(last, {})
        ]
        acc = [a for run in runs for a in run]
        if not acc:
            continue
        steps = min(len(a) for a in acc)
        mean = [statistics.fmean(a[i] for a in acc) for i in range(steps)]
        sd = [statistics.pstdev([a[i] for a in acc]) for i in range(steps)]
        xs = list(range(1, steps + 1))
        right.plot(xs, mean, marker=".", label=f"N={last} concurrent, {mode}")
        right.fill_between(
            xs,
            [m - s for m, s in zip(mean, sd, strict=True)],
            [m + s for m, s in zip(mean, sd, strict=True)],
            alpha=0.15,
        )
    serial = [run for r in report["repeats"] for run in r.get("serial_warm_steps", [])]
    if serial:
        steps = min(len(run) for run in serial)
        mean = [statistics.fmean(run[i]["accuracy"] for run in serial) for i in range(steps)]
        right.plot(
            list(range(1, steps + 1)), mean, marker=".", linestyle="--", label="serial (alone)"
        )
    right.set_xlabel("RL step")
    right.set_ylabel("rollout accuracy (mean ± σ)")
    right.set_ylim(0, 1)
    right.legend()
    fig.tight_layout()
    fig.savefig(out / "experiments.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
