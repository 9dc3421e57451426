"""Can a cycle be trained not to copy a correction onto the prompts near it?

Offline, on the trainer alone, as `bench/preservation_drift.py` (the cycle's own objective
code, clipping and stop rule, the bundled model, greedy Hugging Face generation). Two
corrections:

- ``times``: issue 30's trial on an agent without an environment: "What is 12 times 5?" corrected
  into ``final_answer({"answer": 60})``. The near prompts are other "What is X times Y?"; a
  candidate that answers one of them ``final_answer(60)`` has copied the correction.
- ``readme``: the README's correction, "Leo had 96 apples and gave away 4" into
  ``calculator("96-4")``. The near prompts are word problems of its template; here the
  correction should generalise: a near prompt answered with the calculator call that computes
  *its* answer is right, and only the verbatim ``calculator("96-4")`` is a copy.

Three ways to train (``--modes``):

- ``drop``: today's cycle. Near prompts are left out of the KL term (and held back for the
  gate's copies check).
- ``kl_near``: a share of the near prompts stays in the KL term, with the parent's answers.
- ``push_away``: those near prompts get a preference pair each (DPO, weight ``--push-weight``,
  or the one a mode names: ``push_away@0.1``): the parent's answer over the corrected answer
  verbatim.

Each run reports whether the correction was learned, how many held near prompts the parent and
the candidate answer with the corrected answer verbatim (copies), how many the candidate answers
right by its first step (the generalisation the README flow needs), and the agreement on held
back prompts not near the correction. Writes ``bench/results/copy_guard.json`` and ``.png``.

    python bench/copy_guard.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.cycles import evaluation  # noqa: E402
from app.cycles.untouched import near as _near  # noqa: E402
from app.cycles.untouched import words as _words  # noqa: E402
from app.training.client import LEARNED_MARGIN  # noqa: E402
from bench.continual import right_first_step  # noqa: E402
from bench.preservation_drift import (  # noqa: E402
    ENV,
    LORA,
    MODEL,
    greedy,
    message,
    messages,
    prompt_ids,
)
from trainer.engine import TrainingEngine  # noqa: E402
from trainer.envs.base import Task  # noqa: E402
from trainer.objective import (  # noqa: E402
    ObjectiveWork,
    accumulate_round,
    build_batches,
    objective_weights,
)

RESULTS = REPO / "bench" / "results"
NEAR_TRAIN = 16
"""Near prompts a cycle would keep in training (KL rows or pairs); as many more are held."""
NEAR_HELD = 24
FAR_KL = 48
FAR_HELD = 64


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": function}],
    }


def scenario(name: str, seed: int) -> dict[str, Any]:
    """The corrected prompt, its correction, and near and far prompts (tasks, so that a first
    step can be graded)."""
    rng = random.Random(seed)
    far_pool = ENV.tasks("train", 1500, seed=2000 + seed)
    if name == "times":
        prompt, fix = "What is 12 times 5?", _call("final_answer", {"answer": 60})
        pairs = {(rng.randint(2, 19), rng.randint(2, 19)) for _ in range(200)} - {(12, 5)}
        near = [
            Task(f"times-{a}-{b}", f"What is {a} times {b}?", str(a * b), "times", 1)
            for a, b in sorted(pairs)
        ]
        rng.shuffle(near)
    else:
        prompt, fix = (
            "Leo had 96 apples and gave away 4. How many apples are left?",
            _call("calculator", {"expression": "96-4"}),
        )
        near = []
    corrected = [_words(messages(prompt))]
    if name == "readme":
        near = [
            t
            for t in far_pool
            if t.prompt != prompt and _near(_words(messages(t.prompt)), corrected)
        ]
    far = [t for t in far_pool if not _near(_words(messages(t.prompt)), corrected)]
    return {
        "prompt": prompt,
        "fix": fix,
        "near_train": near[:NEAR_TRAIN],
        "near_held": near[NEAR_TRAIN : NEAR_TRAIN + NEAR_HELD],
        "far_kl": far[:FAR_KL],
        "far_held": far[FAR_KL : FAR_KL + FAR_HELD],
    }


def run(
    engine: TrainingEngine,
    tokenizer: Any,
    parent: Any,
    setup: dict[str, Any],
    mode: str,
    seed: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    def ids(tasks: list[Task]) -> list[list[int]]:
        return [prompt_ids(tokenizer, t.prompt) for t in tasks]

    far_kl_ids, near_train_ids = ids(setup["far_kl"]), ids(setup["near_train"])
    kl = [
        {"prompt_token_ids": p, "completion_token_ids": c}
        for p, c in zip(far_kl_ids, greedy(parent, tokenizer, far_kl_ids), strict=True)
    ]
    near_answers = greedy(parent, tokenizer, near_train_ids)
    examples: dict[str, list[dict[str, Any]]] = {
        "sft": [{"messages": [*messages(setup["prompt"]), setup["fix"]], "tools": ENV.tools()}],
        "kl": kl,
    }
    weights = {"sft": 1.0, "pg": 1.0, "dpo": 0.0}
    mode, _, named_weight = mode.partition("@")
    if mode == "kl_near":
        examples["kl"] = kl + [
            {"prompt_token_ids": p, "completion_token_ids": c}
            for p, c in zip(near_train_ids, near_answers, strict=True)
        ]
    elif mode == "push_away":
        examples["dpo"] = [
            {
                "messages": messages(t.prompt),
                "chosen": {
                    "role": "assistant",
                    "content": tokenizer.decode(answer, skip_special_tokens=True),
                },
                "rejected": setup["fix"],
                "tools": ENV.tools(),
            }
            for t, answer in zip(setup["near_train"], near_answers, strict=True)
        ]
        weights["dpo"] = float(named_weight or args.push_weight)
    adapter = f"copy-{mode}-{weights['dpo']}-{seed}-{len(setup['near_held'])}"
    engine.create_adapter(adapter, LORA, seed=seed)
    work = ObjectiveWork(
        adapter, build_batches(tokenizer, examples), objective_weights(weights, args.kl_coef)
    )
    started, steps, margin = time.perf_counter(), 0, float("-inf")
    for _ in range(args.max_steps):
        margin = accumulate_round(engine, [work])[0].get("margin", float("-inf"))
        if margin >= LEARNED_MARGIN:
            engine.zero_grad(adapter)
            break
        engine.optim_step(adapter, args.lr, max_grad_norm=1.0)  # as the trainer service steps
        steps += 1
    train_s = time.perf_counter() - started
    near_ids, far_ids = ids(setup["near_held"]), ids(setup["far_held"])
    before_near, before_far = (
        greedy(parent, tokenizer, near_ids),
        greedy(parent, tokenizer, far_ids),
    )
    with tempfile.TemporaryDirectory() as folder:
        engine.save_adapter(adapter, folder)
        engine.drop_adapter(adapter)
        base = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
        candidate = PeftModel.from_pretrained(base, folder).eval()
        after_near = greedy(candidate, tokenizer, near_ids)
        after_far = greedy(candidate, tokenizer, far_ids)
        corrected = greedy(candidate, tokenizer, [prompt_ids(tokenizer, setup["prompt"])])[0]

    def copies(answers: list[list[int]]) -> int:
        return sum(evaluation.matches(message(tokenizer, a), setup["fix"]) for a in answers)

    def right(answers: list[list[int]]) -> int:
        return sum(
            right_first_step(t, evaluation.brief(message(tokenizer, a)))
            for t, a in zip(setup["near_held"], answers, strict=True)
        )

    kept = sum(
        evaluation.matches(message(tokenizer, b), message(tokenizer, a))
        for a, b in zip(before_far, after_far, strict=True)
    )
    return {
        "mode": mode + (f"@{weights['dpo']:g}" if mode == "push_away" else ""),
        "seed": seed,
        "steps": steps,
        "learned": margin >= LEARNED_MARGIN,
        "corrected_answered_as_corrected": evaluation.matches(
            message(tokenizer, corrected), setup["fix"]
        ),
        "near_held": len(near_ids),
        "copies_before": copies(before_near),
        "copies_after": copies(after_near),
        "near_right_before": right(before_near),
        "near_right_after": right(after_near),
        "far_held": len(far_ids),
        "far_agreement": kept / len(far_ids),
        "train_s": round(train_s, 1),
    }


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def table(data: dict[str, Any]) -> str:
    lines = [
        f"{'scenario':>8} {'mode':>10} {'runs':>4} {'learned':>7} {'steps':>6} "
        f"{'copies before→after (of near held)':>36} {'near right before→after':>24} "
        f"{'far agreement':>16}"
    ]
    for key, runs in data["runs"].items():
        name, mode = key.split(":")
        n = sum(r["near_held"] for r in runs)
        lines.append(
            f"{name:>8} {mode:>10} {len(runs):>4} "
            f"{sum(r['learned'] and r['corrected_answered_as_corrected'] for r in runs):>7} "
            f"{statistics.mean(r['steps'] for r in runs):>6.1f} "
            f"{sum(r['copies_before'] for r in runs):>14} → {sum(r['copies_after'] for r in runs):>3} of {n:<14}"
            f"{sum(r['near_right_before'] for r in runs):>10} → {sum(r['near_right_after'] for r in runs):>3} of {n:<8}"
            f"{mean_sd([100 * r['far_agreement'] for r in runs]):>16}%"
        )
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(data["runs"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (field, title) in zip(
        axes,
        (
            ("copies_after", "near prompts answered with the correction verbatim"),
            ("near_right_after", "near prompts answered right (first step)"),
            ("far_agreement", "agreement on far held-back prompts"),
        ),
        strict=True,
    ):
        values = [
            [
                r[field] / (r["near_held"] if field != "far_agreement" else 1)
                for r in data["runs"][k]
            ]
            for k in keys
        ]
        ax.bar(
            range(len(keys)),
            [statistics.mean(v) for v in values],
            yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in values],
            color="#4c72b0",
        )
        ax.set_xticks(range(len(keys)), [k.replace(":", "\n") for k in keys], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=10)
    fig.suptitle("Training against the copy (bundled model, mean ± sd over repeats)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="times,readme")
    parser.add_argument("--modes", default="drop,kl_near,push_away")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--kl-coef", type=float, default=64.0)
    parser.add_argument("--push-weight", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "copy_guard.json")
    parser.add_argument("--merge", action="store_true", help="add to the runs already in --out")
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(MODEL, local_files_only=True)
    parent = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    engine = TrainingEngine(MODEL)
    data: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "model": MODEL.name,
            "lr": args.lr,
            "kl_coef": args.kl_coef,
            "push_weight": args.push_weight,
            "near_train": NEAR_TRAIN,
            "far_kl": FAR_KL,
        },
        "runs": {},
    }
    if args.merge and args.out.exists():
        data["runs"] = json.loads(args.out.read_text())["runs"]
    for name in args.scenarios.split(","):
        setups = [scenario(name, seed) for seed in range(args.repeats)]
        for mode in args.modes.split(","):
            runs = data["runs"].setdefault(f"{name}:{mode}", [])
            for seed, setup in enumerate(setups):
                runs.append(run(engine, tokenizer, parent, setup, mode, seed, args))
                print(json.dumps({"scenario": name, **runs[-1]}), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(data, indent=1))  # what it saw so far
    print(table(data))
    plot(data, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
