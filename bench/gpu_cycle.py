"""A learning cycle's training on a GPU, on a model of Qwen3's shape: prepared for a device session.

The device machine has torch, transformers and peft, and no vLLM, Postgres or network. So this
runs what the trainer service does for one learning cycle, in process: the cycle's objective
with the default schedule (100 steps at lr 3e-4: SFT on a correction, DPO at 0.02 on its
preference pair, KL at 64 to the parent on 32 rows of untouched traffic, `trainer.objective`)
for one rank-16 adapter on the `TrainingEngine`, with the trainer's CUDA defaults (bf16, tokens
per pass from the memory budget, `trainer.memory`). Then the adapter is written in PEFT form,
loaded by `peft` onto the base with `transformers`, and must change the corrected prompt's
logits. Records time per step, peak device memory, tokens per pass and out-of-memory splits.

The model: the Qwen3 real-vocabulary fixture (151,936 tokens, tiny hidden sizes; `--model`
takes any Hugging Face directory instead, `--shape 0.6b` a random Qwen3-0.6B-shaped one).

    python bench/gpu_cycle.py                        # on the GPU host (about 2 minutes)
    python bench/gpu_cycle.py --device cpu --steps 3 # a smoke run of the same code

Writes bench/results/gpu_cycle.json.
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

from bench.trainer_gpu import qwen3_model  # noqa: E402
from trainer.bundled.fixtures import make_real_vocab_model  # noqa: E402
from trainer.config import LoraSettings, TrainerConfig  # noqa: E402
from trainer.engine import TrainingEngine  # noqa: E402
from trainer.envs import CalculatorEnvironment  # noqa: E402
from trainer.objective import accumulate, build_batches  # noqa: E402

RESULTS = REPO / "bench" / "results"
ENV = CalculatorEnvironment()
WEIGHTS = {"sft": 1.0, "dpo": 0.02, "kl": 64.0}
"""The default schedule's weights (docs/LEARNING.md)."""


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c", "type": "function", "function": function}],
    }


def cycle_examples() -> dict[str, list[dict[str, Any]]]:
    """A cycle's examples as the feedback compiler writes them: one correction (its SFT row and
    its preference pair) and 32 untouched conversations with the answers they were served."""
    tasks = ENV.tasks("test", 33, seed=0)
    asked = ENV.initial_messages(tasks[0])
    fixed = _call("calculator", {"expression": tasks[0].info["expression"]})
    wrong = _call("final_answer", {"answer": 1})
    untouched = [
        {
            "messages": ENV.initial_messages(t),
            "tools": ENV.tools(),
            "output": _call("final_answer", {"answer": int(t.answer)}),
        }
        for t in tasks[1:]
    ]
    return {
        "sft": [{"messages": [*asked, fixed], "tools": ENV.tools()}],
        "dpo": [{"messages": asked, "tools": ENV.tools(), "chosen": fixed, "rejected": wrong}],
        "kl": untouched,
    }


def qwen3_06b(path: Path) -> Path:
    """A random model of Qwen3-0.6B's shape (bf16), with the fixture's tokenizer."""
    make_real_vocab_model(path, "qwen3")  # the tokenizer (and a config this replaces)
    qwen3_model(path, tiny=False)
    return path


def adapter_changes_logits(model_dir: Path, adapter_dir: Path, device: str) -> float:
    """Largest change the PEFT-loaded adapter makes to the corrected prompt's last logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    text = tokenizer.apply_chat_template(
        cycle_examples()["dpo"][0]["messages"],
        tools=ENV.tools(),
        add_generation_prompt=True,
        tokenize=False,
    )
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], device=device)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    with torch.no_grad():
        before = base(input_ids=ids).logits[0, -1].clone()
        tuned = PeftModel.from_pretrained(base, str(adapter_dir))
        after = tuned(input_ids=ids).logits[0, -1]
    return float((after - before).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", type=Path, default=None, help="a Hugging Face model directory")
    parser.add_argument("--shape", choices=["fixture", "0.6b"], default="fixture")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_cycle.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model = args.model or (
        qwen3_06b(tmp / "model")
        if args.shape == "0.6b"
        else make_real_vocab_model(tmp / "model", "qwen3")
    )
    from transformers import AutoTokenizer

    started = time.monotonic()
    engine = TrainingEngine(config=TrainerConfig(base_model_dir=model, device=args.device))
    engine.create_adapter("agent", LoraSettings(rank=16, alpha=32.0), seed=0)
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    batches = build_batches(tokenizer, cycle_examples())
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    steps: list[dict[str, float]] = []
    for _ in range(args.steps):
        sync()
        t0 = time.perf_counter()
        losses = accumulate(engine, "agent", batches, WEIGHTS)
        engine.optim_step("agent", args.lr)
        sync()
        steps.append({"seconds": time.perf_counter() - t0, **losses})
    adapter = tmp / "adapter"
    engine.save_adapter("agent", adapter)
    change = adapter_changes_logits(model, adapter, args.device)
    seconds = [s["seconds"] for s in steps[1:]] or [steps[0]["seconds"]]
    result = {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "device": torch.cuda.get_device_name(0) if engine.device.type == "cuda" else "cpu",
            "machine": platform.machine(),
            "torch": torch.__version__,
            "model": str(args.model) if args.model else f"qwen3 {args.shape}",
            "dtype": str(engine.dtype),
            "memory_budget_gb": (engine.memory_budget or 0) / 2**30 or None,
            "tokens_per_pass": engine.max_tokens_per_pass,
        },
        "steps": len(steps),
        "step_s": [statistics.mean(seconds), statistics.pstdev(seconds)],
        "first_step_s": steps[0]["seconds"],
        "loss_first": {k: v for k, v in steps[0].items() if k != "seconds"},
        "loss_last": {k: v for k, v in steps[-1].items() if k != "seconds"},
        "peak_device_mib": (
            torch.cuda.max_memory_allocated() / 2**20 if engine.device.type == "cuda" else None
        ),
        "out_of_memory_splits": engine.out_of_memory_splits,
        "adapter_logit_change": change,
        "wall_s": time.monotonic() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not change > 0:
        sys.exit("the trained adapter, loaded with peft, changes nothing")


if __name__ == "__main__":
    main()
