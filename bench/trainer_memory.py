"""Benchmark: the trainer's peak memory and time per pass at real vocabularies, whole against
chunked loss head.

For each vocabulary (506, the bundled model's; 128,256, Llama 3's; 151,936, Qwen3's) a
Qwen3-architecture model with random weights and tiny hidden sizes (2 layers, hidden 64) is
made in a temporary folder, and one SFT `forward_backward` of N tokens (rows of 512) runs
through `TrainingEngine`, in a fresh process each, with:

  whole    - the loss head in one piece under plain autograd (`whole_head`): the pass holds
             (tokens x vocab) fp32 logits, their log-softmax and their backward, as the
             trainer did before `trainer/head.py` (at the trained positions only);
  chunked  - the default ``logit_chunk_bytes`` (256 MiB of fp32 logits a chunk).

Peak memory is the process's peak RSS during the first pass less its RSS before it (the
model, the adapter and the batch already loaded); on CUDA it would be
``max_memory_allocated``. Time is the wall seconds of the same pass run a second time, warm,
as a trainer's steps run (the first pass's are kept as ``first_seconds``). Each repeat runs in
a fresh process, and the two heads alternate repeat by repeat, so that the ratio of their
times (``slowdown``: chunked over whole, per pair) is measured side by side. Prints a table,
writes ``bench/results/trainer_memory.json`` and ``.png``.

    .venv/bin/python -m bench.trainer_memory                       # 3 repeats
    .venv/bin/python -m bench.trainer_memory --whole-max 2048      # cap the whole head's tokens
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
VOCABS = {"bundled": 506, "llama3": 128_256, "qwen3": 151_936}
ROW = 512


def make_model(folder: Path, vocab: int) -> Path:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    Qwen3ForCausalLM(cfg).save_pretrained(folder)
    return folder


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> None:
    """Reset the process's peak RSS (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def whole_head() -> None:
    """Make this process's loss head the whole-pass computation under plain autograd: the
    (positions x vocab) logits of the pass, their log-softmax and their gradients all held
    at once, as the trainer computed them before `trainer/head.py`."""
    import torch
    import torch.nn.functional as F

    from trainer.head import LMHead, _gap, _logprob

    def per_position(self, value_of_logits, grad_of_logits, hidden, *extras):  # type: ignore[no-untyped-def]
        return value_of_logits(self._logits(hidden), *extras)

    def logprobs_and_margin(self, hidden, input_ids, mask):  # type: ignore[no-untyped-def]
        wanted = mask[:, 1:] > 0  # (N, T-1)
        at = wanted.nonzero(as_tuple=True)
        logits = self._logits(hidden[:, :-1][at])  # (M, V), kept for the backward pass
        targets = input_ids[:, 1:][at]
        logp = torch.zeros(wanted.shape).index_put(at, _logprob(logits, targets))
        margin = torch.full(wanted.shape, float("inf")).index_put(at, _gap(logits, targets))
        return F.pad(logp, (1, 0)), margin.amin(dim=1)

    LMHead._per_position = per_position  # type: ignore[method-assign]
    LMHead.token_logprobs_and_margin = logprobs_and_margin  # type: ignore[method-assign]


def one_pass(model: str, tokens: int, chunk_bytes: int) -> dict[str, float]:
    """Run in a child process: one SFT pass of ``tokens`` tokens; its memory and time.
    ``chunk_bytes`` 0 is the whole head (`whole_head`)."""
    import torch

    from trainer.batch import Batch
    from trainer.config import LoraSettings, TrainerConfig
    from trainer.engine import TrainingEngine
    from trainer.losses import LossSpec

    if chunk_bytes == 0:
        whole_head()
        chunk_bytes = 2**62

    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    cfg = TrainerConfig(
        base_model_dir=Path(model), max_tokens_per_pass=tokens, logit_chunk_bytes=chunk_bytes
    )
    engine = TrainingEngine(device="cpu", config=cfg)
    engine.create_adapter("a", LoraSettings(rank=8, alpha=16.0), seed=0)
    vocab = engine.head.vocab
    g = torch.Generator().manual_seed(0)
    rows = tokens // ROW
    ids = torch.randint(0, vocab, (rows, ROW), generator=g).tolist()
    mask = [[0.0] * 16 + [1.0] * (ROW - 16) for _ in range(rows)]
    batch = Batch(input_ids=ids, loss_mask=mask)
    before = rss_mb()
    reset_peak()
    started = time.perf_counter()
    engine.forward_backward([("a", batch)], LossSpec(kind="sft"))
    first = time.perf_counter() - started
    peak = peak_rss_mb() - before
    engine.zero_grad("a")
    started = time.perf_counter()  # the same pass again, warm: what a trainer's steps cost
    engine.forward_backward([("a", batch)], LossSpec(kind="sft"))
    seconds = time.perf_counter() - started
    return {"peak_mb": peak, "seconds": seconds, "first_seconds": first, "vocab": vocab}


def measure(model: Path, tokens: int, chunk_bytes: int) -> dict[str, float]:
    code = (
        "import json, sys; from bench.trainer_memory import one_pass; "
        f"print(json.dumps(one_pass({str(model)!r}, {tokens}, {chunk_bytes})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}  # type: ignore[dict-item]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def summary(vocab: int, tokens: int, head: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell: its runs, and the mean ± sd of the peak memory and the warm pass's seconds."""
    good = [r for r in runs if "error" not in r]
    cell: dict[str, Any] = {"vocab": vocab, "tokens": tokens, "head": head, "runs": runs}
    cell["peak_mb"] = mean_sd([r["peak_mb"] for r in good])
    cell["seconds"] = mean_sd([r["seconds"] for r in good])
    if len(good) < len(runs):
        cell["errors"] = [r["error"] for r in runs if "error" in r]
    return cell


def slowdown(vocab: int, tokens: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The chunked head's warm seconds over the whole head's, repeat by repeat (each pair
    measured one after the other), mean ± sd."""
    ratios = [
        c["seconds"] / w["seconds"]
        for w, c in zip(runs["whole"], runs["chunked"], strict=True)
        if "error" not in w and "error" not in c
    ]
    return {"vocab": vocab, "tokens": tokens, "chunked_over_whole": mean_sd(ratios)}


def mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), sd


def table(data: dict[str, Any]) -> str:
    lines = [f"{'vocab':>8} {'tokens':>7} {'head':>8} {'peak MB (mean ± sd)':>22} {'s/pass':>14}"]
    for cell in data["cells"]:
        if cell.get("skipped"):
            lines.append(
                f"{cell['vocab']:>8} {cell['tokens']:>7} {cell['head']:>8}   skipped: {cell['skipped']}"
            )
            continue
        pm, ps = cell["peak_mb"]
        tm, ts = cell["seconds"]
        lines.append(
            f"{cell['vocab']:>8} {cell['tokens']:>7} {cell['head']:>8} {pm:>12.0f} ± {ps:<7.0f} {tm:>7.2f} ± {ts:.2f}"
        )
    lines.append(f"{'vocab':>8} {'tokens':>7}  chunked s / whole s (mean ± sd of pairs)")
    for row in data.get("slowdown", []):
        mean, sd = row["chunked_over_whole"]
        lines.append(f"{row['vocab']:>8} {row['tokens']:>7}  {mean:.3f} ± {sd:.3f}")
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for vocab in sorted({c["vocab"] for c in data["cells"]}):
        for head, style in (("whole", "o--"), ("chunked", "s-")):
            cells = [
                c
                for c in data["cells"]
                if c["vocab"] == vocab and c["head"] == head and not c.get("skipped")
            ]
            if cells:
                ax.plot(
                    [c["tokens"] for c in cells],
                    [c["peak_mb"][0] / 1024 for c in cells],
                    style,
                    label=f"vocab {vocab}, {head} head",
                )
    ax.set_xlabel("tokens per pass", fontsize=11)
    ax.set_ylabel("peak memory of one SFT pass (GB)", fontsize=11)
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=8)
    ax.set_title("Trainer memory at real vocabularies (CPU, tiny hidden sizes)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    from trainer.head import DEFAULT_CHUNK_BYTES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", default="1024,2048,4096,8192")
    parser.add_argument(
        "--whole-max",
        type=int,
        default=2048,
        help="the most tokens the whole head runs at (it needs about 2.3 MB a token at "
        "Qwen3's vocabulary; this machine has 24 GB)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "trainer_memory.json")
    args = parser.parse_args()
    token_counts = [int(x) for x in args.tokens.split(",")]
    data: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} CPUs",
            "model": "Qwen3 architecture, 2 layers, hidden 64, random weights",
            "row_tokens": ROW,
            "chunk_bytes": DEFAULT_CHUNK_BYTES,
            "repeats": args.repeats,
        },
        "cells": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, vocab in VOCABS.items():
            model = make_model(Path(tmp) / name, vocab)
            for tokens in token_counts:
                heads = {"whole": 0, "chunked": DEFAULT_CHUNK_BYTES}
                if vocab > 1000 and tokens > args.whole_max:
                    skipped = {"vocab": vocab, "tokens": tokens, "head": "whole"}
                    data["cells"].append(
                        {**skipped, "skipped": f"over --whole-max {args.whole_max}"}
                    )
                    del heads["whole"]
                # The heads alternate, repeat by repeat, so that both see the same machine.
                runs: dict[str, list[dict[str, Any]]] = {head: [] for head in heads}
                for _ in range(args.repeats):
                    for head, chunk in heads.items():
                        runs[head].append(measure(model, tokens, chunk))
                for head, measured in runs.items():
                    data["cells"].append(summary(vocab, tokens, head, measured))
                    print(json.dumps(data["cells"][-1]), flush=True)
                if len(runs) == 2:
                    data.setdefault("slowdown", []).append(slowdown(vocab, tokens, runs))
                    print(json.dumps(data["slowdown"][-1]), flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(data, indent=1))
    print(table(data))
    plot(data, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
