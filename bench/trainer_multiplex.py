"""Benchmark: multiplexed multi-LoRA training rounds versus swapping adapters in one at a time.

For N adapters, R rows per adapter and rows of up to L tokens, one round steps every adapter once:
  sequential   - per adapter: forward_backward on its rows (one whole pass), optim_step: the seed
                 design, one adapter swapped in at a time
  multiplexed  - the trainer as configured: one forward_backward over all adapters' rows, planned
                 into passes of at most max_tokens_per_pass padded tokens that several adapters
                 share when each one's work is under merge_below_tokens, then one optim_step each
It reports the median CPU seconds per round, the speed-up, and the share of the round spent
swapping adapter state between host and device. Prints a table, writes bench/results/trainer_multiplex.json
and, when matplotlib is installed, bench/results/trainer_multiplex.png.

    .venv/bin/python bench/trainer_multiplex.py            # bundled model if present
    .venv/bin/python bench/trainer_multiplex.py --quick    # fewer rounds, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.batch import Batch  # noqa: E402
from trainer.config import DEFAULT_BASE_MODEL_DIR, LoraSettings, TrainerConfig  # noqa: E402
from trainer.engine import TrainingEngine  # noqa: E402
from trainer.losses import LossSpec  # noqa: E402

RESULTS = REPO / "bench" / "results"


def synthetic_model(path: Path) -> Path:
    """A random Qwen2 of the bundled model's shape, for when weights/clora-tiny is absent."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=512,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    return path


def make_batch(seed: int, rows: int, length: int, vocab: int) -> Batch:
    """Rows of random tokens of 3/4 to full length; the first quarter is untrained prompt."""
    gen = torch.Generator().manual_seed(seed)
    ids = []
    for _ in range(rows):
        n = int(torch.randint(length * 3 // 4, length + 1, (1,), generator=gen))
        ids.append(torch.randint(0, vocab, (n,), generator=gen).tolist())
    mask = [[0.0] * (length // 4) + [1.0] * (len(r) - length // 4) for r in ids]
    return Batch(input_ids=ids, loss_mask=mask)


def run_round(engine: TrainingEngine, work: list[tuple[str, Batch]], mux: bool) -> None:
    """Step every adapter once: one multiplexed call, or one adapter swapped in at a time."""
    spec = LossSpec("sft")
    if mux:
        engine.forward_backward(work, spec)
        for adapter_id, _ in work:
            engine.optim_step(adapter_id, lr=1e-4)
    else:
        for item in work:
            engine.forward_backward([item], spec)
            engine.optim_step(item[0], lr=1e-4)


def time_rounds(
    engines: dict[bool, TrainingEngine],
    work: list[tuple[str, Batch]],
    min_rounds: int,
    min_cpu_s: float,
) -> dict[bool, dict[str, float]]:
    """Median CPU seconds, wall seconds and swap share per round, both modes interleaved.

    CPU time of this (single-threaded) process is the headline number: the host is shared,
    and wall-clock time also counts the time other processes hold the cores. Interleaving the
    two modes exposes both to the same background load; cheap configurations run more rounds
    (until each mode has `min_cpu_s` of samples, at most 40) so their medians settle too.
    """
    samples: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    r = 0
    while r <= min_rounds or (sum(s[0] for s in samples[True]) < min_cpu_s and r <= 40):
        for mux in (False, True):
            engine = engines[mux]
            swap0, wall0, cpu0 = engine.store.swap_seconds, time.perf_counter(), time.process_time()
            run_round(engine, work, mux)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            if r:  # round 0 warms up and is dropped
                samples[mux].append((cpu, wall, (engine.store.swap_seconds - swap0) / wall))
        r += 1
    return {
        mux: {
            "cpu_s": statistics.median(s[0] for s in runs),
            "wall_s": statistics.median(s[1] for s in runs),
            "swap_share": statistics.median(s[2] for s in runs),
            "rounds": len(runs),
        }
        for mux, runs in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="HF model dir")
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rows", type=int, nargs="+", default=[8, 64])
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[32, 64, 128], help="longest row, tokens"
    )
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="at least this many per config")
    parser.add_argument("--min-cpu", type=float, default=3.0, help="CPU s of samples per mode")
    parser.add_argument("--max-tokens", type=int, default=None, help="engine default if unset")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 rounds, for a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds, min_cpu = (2, 0.0) if args.quick else (args.rounds, args.min_cpu)
    tmp = tempfile.TemporaryDirectory()
    model_dir = args.model or DEFAULT_BASE_MODEL_DIR
    model_name = str(model_dir)
    if not (model_dir / "config.json").is_file():
        model_dir = synthetic_model(Path(tmp.name))
        model_name = "synthetic Qwen2 of the bundled model's shape (weights/clora-tiny absent)"
    lora = LoraSettings(rank=args.rank, alpha=2.0 * args.rank)
    engines = {
        mux: TrainingEngine(
            device="cpu",
            config=TrainerConfig(
                base_model_dir=model_dir,
                multiplex=mux,
                # The sequential baseline is the seed design: one whole pass per adapter step.
                max_tokens_per_pass=args.max_tokens if mux else 10**9,
            ),
        )
        for mux in (True, False)
    }
    vocab = int(engines[True].base.describe()["vocab_size"])
    for engine in engines.values():
        for i in range(max(args.adapters)):
            engine.create_adapter(f"t{i}", lora, seed=i)
    bound = engines[True].max_tokens_per_pass
    print(f"model: {model_name}\n{engines[True].base.describe()}")
    merge = engines[True].merge_below_tokens
    print(
        f"rank {args.rank}, max tokens/pass {bound}, merge below {merge} tokens, "
        f"threads {args.threads}, rounds >= {rounds}"
    )
    header = (
        f"{'len':>4} {'N':>3} {'rows':>5} {'seq cpu s':>10} {'mux cpu s':>10} {'speed-up':>9} "
        f"{'seq wall s':>10} {'mux wall s':>10} {'swap seq':>9} {'swap mux':>9}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for length in args.lengths:
        for rows in args.rows:
            for n in args.adapters:
                work = [
                    (f"t{i}", make_batch(1000 * i + rows, rows, length, vocab)) for i in range(n)
                ]
                t = time_rounds(engines, work, rounds, min_cpu)
                seq, mux = t[False], t[True]
                row = {
                    "length": length,
                    "adapters": n,
                    "rows_per_adapter": rows,
                    "sequential_cpu_s": seq["cpu_s"],
                    "multiplexed_cpu_s": mux["cpu_s"],
                    "speedup": seq["cpu_s"] / mux["cpu_s"],
                    "sequential_wall_s": seq["wall_s"],
                    "multiplexed_wall_s": mux["wall_s"],
                    "swap_share_sequential": seq["swap_share"],
                    "swap_share_multiplexed": mux["swap_share"],
                    "rounds": mux["rounds"],
                }
                results.append(row)
                print(
                    f"{length:>4} {n:>3} {rows:>5} {seq['cpu_s']:>10.3f} {mux['cpu_s']:>10.3f} "
                    f"{row['speedup']:>8.2f}x {seq['wall_s']:>10.3f} {mux['wall_s']:>10.3f} "
                    f"{100 * seq['swap_share']:>8.2f}% {100 * mux['swap_share']:>8.2f}%",
                    flush=True,
                )
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": model_name,
        "base": engines[True].base.describe(),
        "rank": args.rank,
        "max_tokens_per_pass": bound,
        "merge_below_tokens": merge,
        "threads": args.threads,
        "min_rounds": rounds,
        "time": "median CPU seconds of this process per round; wall seconds alongside",
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
    }
    out = RESULTS / "trainer_multiplex.json"
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {out}")
    plot(results)


def plot(results: list[dict]) -> None:
    """Speed-up per N, one line per batch size (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for length in sorted({r["length"] for r in results}):
        for rows in sorted({r["rows_per_adapter"] for r in results}):
            pts = [r for r in results if r["rows_per_adapter"] == rows and r["length"] == length]
            ax.plot(
                [p["adapters"] for p in pts],
                [p["speedup"] for p in pts],
                "o-",
                label=f"{rows} rows x {length} tokens",
            )
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("adapters per round (N)")
    ax.set_ylabel("speed-up vs sequential")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "trainer_multiplex.png", dpi=120)
    print(f"wrote {RESULTS / 'trainer_multiplex.png'}")


if __name__ == "__main__":
    main()
