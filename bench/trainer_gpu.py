"""Benchmark on a GPU: multiplexed multi-LoRA rounds vs one adapter at a time, Qwen3-shaped base.

The prepared device script of issue 14. It needs only torch, transformers and peft (plus this
repository's `trainer/` package) and downloads nothing: the base is a Qwen3-shaped model,
randomly initialised from a config (about 0.6B parameters by default, bf16), saved to a
temporary folder and loaded by the trainer like any Hugging Face directory.

For LoRA ranks 16 and 32 and N = 1, 2, 4, 8 adapters, one round steps every adapter once:
  sequential   - per adapter: forward_backward on its rows in one pass, optim_step (one adapter
                 swapped in at a time)
  multiplexed  - one forward_backward over every adapter's rows (shared passes, micro-passes for
                 big work), then one optim_step each
Two workloads: small (8 rows of 256 tokens per adapter, a learning cycle's size) and RL-sized
(64 rows of 512 tokens). Times are medians of wall seconds per round, the device synchronised,
the two modes interleaved; the speed-up is sequential / multiplexed. Peak device memory and
the swap share are recorded. A cell that runs out of device memory (even after the trainer's own
split-and-retry) is recorded as such and the grid goes on. A wall-clock budget (--budget-s,
420 s) stops the grid early and writes what was measured. Writes bench/results/trainer_gpu.json.

    python bench/trainer_gpu.py                       # on the GPU host
    python bench/trainer_gpu.py --device cpu --tiny   # a smoke run of the same code on CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.trainer_multiplex import make_batch, run_round  # noqa: E402
from trainer.config import LoraSettings, TrainerConfig  # noqa: E402
from trainer.engine import TrainingEngine  # noqa: E402

RESULTS = REPO / "bench" / "results"
WORKLOADS = {"small": (8, 256), "rl": (64, 512)}  # rows per adapter, longest row


def qwen3_model(path: Path, tiny: bool) -> dict[str, Any]:
    """Save a randomly initialised Qwen3-shaped model (Qwen2 where transformers lacks Qwen3):
    Qwen3-0.6B's shape, or a tiny one."""
    import transformers

    shape: dict[str, Any] = (
        {
            "vocab_size": 512,
            "hidden_size": 128,
            "intermediate_size": 384,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
        }
        if tiny
        else {  # Qwen3-0.6B's shape
            "vocab_size": 151936,
            "hidden_size": 1024,
            "intermediate_size": 3072,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
        }
    )
    family = "Qwen3" if hasattr(transformers, "Qwen3Config") else "Qwen2"
    config_cls = getattr(transformers, f"{family}Config")
    model_cls = getattr(transformers, f"{family}ForCausalLM")
    fields = shape if family == "Qwen3" else {k: v for k, v in shape.items() if k != "head_dim"}
    config = config_cls(**fields, max_position_embeddings=4096, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = model_cls(config).to(torch.bfloat16)
    model.save_pretrained(path)
    params = sum(p.numel() for p in model.parameters())
    del model
    return {"family": family, "parameters": params, **shape}


def timed_rounds(
    engines: dict[bool, TrainingEngine], work: list[tuple[str, Any]], rounds: int
) -> dict[bool, dict[str, float]]:
    """Median wall seconds (device synchronised) and swap share per round, modes interleaved."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    samples: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for r in range(rounds + 1):
        for mux in (False, True) if r % 2 else (True, False):
            engine = engines[mux]
            sync()
            swap0, t0 = engine.store.swap_seconds, time.perf_counter()
            run_round(engine, work, mux)
            sync()
            wall = time.perf_counter() - t0
            if r:  # round 0 warms up (kernels, allocator) and is dropped
                samples[mux].append((wall, (engine.store.swap_seconds - swap0) / wall))
    return {
        mux: {
            "wall_s": statistics.median(s[0] for s in runs),
            "wall_sd_s": statistics.stdev(s[0] for s in runs) if len(runs) > 1 else 0.0,
            "swap_share": statistics.median(s[1] for s in runs),
            "rounds": len(runs),
        }
        for mux, runs in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny Qwen3 shape (smoke run)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per mode and cell")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "trainer_gpu.json")
    args = parser.parse_args()
    started = time.monotonic()
    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    tmp = tempfile.TemporaryDirectory()
    model = qwen3_model(Path(tmp.name), args.tiny)
    print(f"base: {model}", flush=True)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else args.device,
        "dtype": str(dtype),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "base": model,
        "time": "median wall seconds per round, device synchronised, modes interleaved",
    }
    results: list[dict[str, Any]] = []
    stopped_early = False
    for rank in args.ranks:
        if stopped_early:
            break
        lora = LoraSettings(rank=rank, alpha=2.0 * rank)
        engines = {
            mux: TrainingEngine(
                device=args.device,
                dtype=dtype,
                config=TrainerConfig(
                    base_model_dir=Path(tmp.name),
                    multiplex=mux,
                    max_tokens_per_pass=None if mux else 10**9,  # sequential: one whole pass
                ),
            )
            for mux in (True, False)
        }
        meta["max_tokens_per_pass"] = engines[True].max_tokens_per_pass
        meta["merge_below_tokens"] = engines[True].merge_below_tokens
        for engine in engines.values():
            for i in range(max(args.adapters)):
                engine.create_adapter(f"t{i}", lora, seed=i)
        for kind in args.workloads:
            rows, length = WORKLOADS[kind]
            for n in args.adapters:
                if time.monotonic() - started > args.budget_s:
                    stopped_early = True
                    break
                work = [
                    (f"t{i}", make_batch(1000 * i + rows, rows, length, model["vocab_size"]))
                    for i in range(n)
                ]
                if args.device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                try:
                    t = timed_rounds(engines, work, args.rounds)
                except torch.OutOfMemoryError as error:  # recorded; the other cells go on
                    del work
                    if args.device == "cuda":
                        torch.cuda.empty_cache()
                    results.append(
                        {
                            "rank": rank,
                            "workload": kind,
                            "adapters": n,
                            "out_of_memory": str(error)[:300],
                        }
                    )
                    print(f"rank {rank:>2} {kind:<5} N={n}: out of memory", flush=True)
                    continue
                seq, mux = t[False], t[True]
                row = {
                    "rank": rank,
                    "workload": kind,
                    "rows_per_adapter": rows,
                    "length": length,
                    "adapters": n,
                    "sequential_s": seq["wall_s"],
                    "multiplexed_s": mux["wall_s"],
                    "sequential_sd_s": seq["wall_sd_s"],
                    "multiplexed_sd_s": mux["wall_sd_s"],
                    "speedup": seq["wall_s"] / mux["wall_s"],
                    "swap_share_multiplexed": mux["swap_share"],
                    "rounds": mux["rounds"],
                    "peak_device_mib": (
                        torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
                    ),
                }
                results.append(row)
                print(
                    f"rank {rank:>2} {kind:<5} N={n}: sequential {seq['wall_s']:.3f} s, "
                    f"multiplexed {mux['wall_s']:.3f} s, {row['speedup']:.2f}x, swap "
                    f"{mux['swap_share']:.1%}",
                    flush=True,
                )
                # Keep the partial grid on disk: the device may be taken back at any time.
                meta["stopped_early"] = stopped_early
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        del engines
        if args.device == "cuda":
            torch.cuda.empty_cache()
    meta["stopped_early"] = stopped_early
    meta["seconds"] = round(time.monotonic() - started, 1)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {args.out} ({meta['seconds']} s{', stopped early' if stopped_early else ''})")


if __name__ == "__main__":
    main()
