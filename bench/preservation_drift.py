"""How much of the untouched behaviour does one learned correction change, and which answers?

Offline, on the trainer alone (no stack, no engine): the README flow's correction ("Leo had 96
apples and gave away 4", a wrong ``final_answer`` corrected into ``calculator("96-4")``)
trained on the bundled model exactly as a cycle trains it (`trainer.objective.build_batches`,
`accumulate_round`, `optim_step` with the trainer service's gradient clipping, stopping once
the correction is the greedy answer by `LEARNED_MARGIN`, at most ``--max-steps``), with the
KL-to-parent term on ``kl_prompts`` untouched prompts (calculator tasks of the train split,
answered greedily by the parent, prompts near the correction left out as the cycle leaves them
out). It then answers 160 other untouched prompts greedily with the parent and the candidate
(PEFT, Hugging Face ``generate``) and compares them as the gate does (the same tool calls with
the same parsed arguments, or the same text). The cycle's gate sees only the held-back part of
real traffic (up to 64 prompts; 11 to 17 in the README flow); 160 prompts per run, over
several draws of the traffic (``--repeats``, each a different seed), measure the rate itself.

For every changed answer it records how firmly the parent had decided it: the smallest gap, over
the parent's answer tokens, between the chosen token's logit and the runner-up's (nats). The
same figure over all held-back prompts shows whether changes fall on answers the parent
decided firmly or on near ties.

Differences from a cycle on the stack: no environment anchors in the KL term (traffic only),
fp32 Hugging Face generation instead of the engine. Writes
``bench/results/preservation_drift.json`` and ``bench/results/preservation_drift.png``.

    python bench/preservation_drift.py                      # the default settings, 4 repeats
    python bench/preservation_drift.py --settings 3e-4:64:64,3e-4:0:64 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
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
from trainer.batch import Batch  # noqa: E402
from trainer.bundled.evaluate import greedy_completions  # noqa: E402
from trainer.config import LoraSettings  # noqa: E402
from trainer.engine import TrainingEngine  # noqa: E402
from trainer.envs.calculator import CalculatorEnvironment  # noqa: E402
from trainer.objective import (  # noqa: E402
    ObjectiveWork,
    accumulate_round,
    build_batches,
    objective_weights,
)

RESULTS = REPO / "bench" / "results"
MODEL = REPO / "weights" / "clora-tiny"
PROMPT = "Leo had 96 apples and gave away 4. How many apples are left?"
FIX = "96-4"
HELD = 160
NEW_TOKENS = 48
LORA = LoraSettings(
    rank=16,
    alpha=32,
    target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
)  # an agent's default adapter shape
TIE = 0.05
"""Nats: a parent answer decided by less than this at some token counts as a near tie."""

ENV = CalculatorEnvironment()


def messages(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": ENV.system_prompt}, {"role": "user", "content": prompt}]


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt as the engine renders it for generation (tools and system prompt)."""
    text = tokenizer.apply_chat_template(
        messages(prompt), tools=ENV.tools(), tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def greedy(model: Any, tokenizer: Any, prompts: list[list[int]]) -> list[list[int]]:
    """Greedy completions (token ids, up to the end-of-turn token), 32 prompts a batch."""
    pad, eos = tokenizer.pad_token_id or 0, tokenizer.eos_token_id
    return [
        completion
        for i in range(0, len(prompts), 32)
        for completion in greedy_completions(model, prompts[i : i + 32], NEW_TOKENS, pad, eos)
    ]


def message(tokenizer: Any, completion: list[int]) -> dict[str, Any]:
    """A completion as the gate sees it: content and tool calls, as the engine parses them."""
    content, calls = ENV.parse_turn(tokenizer.decode(completion, skip_special_tokens=True), 0)
    return {
        "content": content,
        "tool_calls": [{"function": {"name": c.name, "arguments": c.arguments}} for c in calls],
    }


def decided_by(model: Any, prompt: list[int], completion: list[int]) -> float:
    """Smallest gap (nats) between the chosen token's logit and the runner-up's."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0]
    top = logits[len(prompt) - 1 : len(prompt) + len(completion) - 1].topk(2, -1).values
    return float((top[:, 0] - top[:, 1]).min())


def traffic(tokenizer: Any, parent: Any, seed: int, kl_prompts: int) -> dict[str, Any]:
    """One draw of untouched traffic: KL rows (the parent's greedy answers) and held-back
    prompts with the parent's answers and how firmly it decided each."""
    near = [_words(messages(PROMPT))]
    tasks = [
        t
        for t in ENV.tasks("train", HELD + kl_prompts + 200, seed=1000 + seed)
        if t.prompt != PROMPT and not _near(_words(messages(t.prompt)), near)
    ]
    held, keep = tasks[:HELD], [t.prompt for t in tasks[HELD : HELD + kl_prompts]]
    keep_ids = [prompt_ids(tokenizer, p) for p in keep]
    held_ids = [prompt_ids(tokenizer, t.prompt) for t in held]
    held_out = greedy(parent, tokenizer, held_ids)
    return {
        "kl": [
            {"prompt_token_ids": p, "completion_token_ids": c}
            for p, c in zip(keep_ids, greedy(parent, tokenizer, keep_ids), strict=True)
        ],
        "held": held,
        "held_ids": held_ids,
        "parent": held_out,
        "decided_by": [decided_by(parent, p, c) for p, c in zip(held_ids, held_out, strict=True)],
        "answer": greedy(parent, tokenizer, [prompt_ids(tokenizer, PROMPT)])[0],
    }


def run(
    engine: TrainingEngine,
    tokenizer: Any,
    draw: dict[str, Any],
    lr: float,
    kl_coef: float,
    max_steps: int,
    seed: int,
    dpo: float = 0.0,
    sft: float = 1.0,
) -> dict[str, Any]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    fix = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "calculator", "arguments": json.dumps({"expression": FIX})},
            }
        ],
    }
    examples = {
        "sft": [{"messages": [*messages(PROMPT), fix], "tools": ENV.tools()}],
        "kl": draw["kl"],
    }
    if dpo > 0:  # the correction's preference pair: corrected over the parent's answer
        examples["dpo"] = [
            {
                "messages": messages(PROMPT),
                "chosen": fix,
                "rejected": {
                    "role": "assistant",
                    "content": tokenizer.decode(draw["answer"], skip_special_tokens=True),
                },
                "tools": ENV.tools(),
            }
        ]
    adapter = f"drift-{seed}-{lr}-{kl_coef}-{len(draw['kl'])}-{dpo}-{sft}"
    engine.create_adapter(adapter, LORA, seed=seed)
    work = ObjectiveWork(
        adapter,
        build_batches(tokenizer, examples),
        objective_weights({"sft": sft, "pg": 1.0, "dpo": dpo}, kl_coef),
    )

    def pair_gap() -> float | None:
        """log p(chosen) - log p(rejected) of the correction's pair, answer tokens only."""
        pair = work.batches.get("dpo")
        if pair is None:
            return None
        sums = []
        for ids, mask in (
            (pair.input_ids, pair.loss_mask),
            (pair.rejected_input_ids, pair.rejected_loss_mask),
        ):
            assert ids is not None and mask is not None
            rows = engine.sample_logprobs(adapter, Batch(input_ids=ids, loss_mask=mask))
            sums.append(sum(lp for lp, m in zip(rows[0], mask[0], strict=True) if m))
        return sums[0] - sums[1]

    gap_before = pair_gap()
    started, steps, margin = time.perf_counter(), 0, float("-inf")
    for _ in range(max_steps):
        margin = accumulate_round(engine, [work])[0].get("margin", float("-inf"))
        if margin >= LEARNED_MARGIN:
            engine.zero_grad(adapter)
            break
        engine.optim_step(adapter, lr, max_grad_norm=1.0)  # as the trainer service steps
        steps += 1
    train_s = time.perf_counter() - started
    gap_after = pair_gap()
    with tempfile.TemporaryDirectory() as folder:
        engine.save_adapter(adapter, folder)
        engine.drop_adapter(adapter)
        base = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
        candidate = PeftModel.from_pretrained(base, folder).eval()
        after = greedy(candidate, tokenizer, draw["held_ids"])
        corrected = greedy(candidate, tokenizer, [prompt_ids(tokenizer, PROMPT)])[0]
    changed = [
        i
        for i, (a, b) in enumerate(zip(draw["parent"], after, strict=True))
        if not evaluation.matches(message(tokenizer, b), message(tokenizer, a))
    ]
    return {
        "lr": lr,
        "kl_coef": kl_coef,
        "dpo": dpo,
        "sft": sft,
        "pair_gap_before": gap_before,
        "pair_gap_after": gap_after,
        "kl_prompts": len(draw["kl"]),
        "seed": seed,
        "steps": steps,
        "learned": margin >= LEARNED_MARGIN,
        "corrected_answered_as_corrected": evaluation.matches(message(tokenizer, corrected), fix),
        "held_back": len(after),
        "agreement": 1 - len(changed) / len(after),
        "changed": [
            {
                "prompt": draw["held"][i].prompt,
                "parent": evaluation.brief(message(tokenizer, draw["parent"][i])),
                "candidate": evaluation.brief(message(tokenizer, after[i])),
                "parent_decided_by": round(draw["decided_by"][i], 4),
                "kind": "->".join(
                    "right"
                    if right_first_step(draw["held"][i], evaluation.brief(message(tokenizer, c)))
                    else "wrong"
                    for c in (draw["parent"][i], after[i])
                ),
            }
            for i in changed
        ],
        "train_s": round(train_s, 1),
    }


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary(runs: list[dict[str, Any]], decided: list[float]) -> dict[str, Any]:
    changed = [c["parent_decided_by"] for r in runs for c in r["changed"]]
    agreement = mean_sd([r["agreement"] for r in runs])
    return {
        "runs": len(runs),
        "agreement_mean": agreement[0],
        "agreement_sd": agreement[1],
        "agreement_min": min(r["agreement"] for r in runs),
        "changed": len(changed),
        "compared": sum(r["held_back"] for r in runs),
        "steps_mean": statistics.mean(r["steps"] for r in runs),
        "learned": sum(r["learned"] for r in runs),
        "pair_gap_moved_mean": (
            statistics.mean(r["pair_gap_after"] - r["pair_gap_before"] for r in runs)
            if all(r.get("pair_gap_before") is not None for r in runs)
            else None
        ),
        "changed_near_ties": sum(g < TIE for g in changed),
        "change_kinds": dict(Counter(c["kind"] for r in runs for c in r["changed"])),
        "held_back_near_ties_share": sum(g < TIE for g in decided) / max(len(decided), 1),
    }


def table(data: dict[str, Any]) -> str:
    lines = [
        f"{'lr':>7} {'kl_coef':>7} {'kl rows':>7} {'dpo':>4} {'sft':>4} {'runs':>4} {'learned':>7} "
        f"{'steps':>5} "
        f"{'agreement (mean ± sd, min)':>28} {'changed':>9} {'near ties':>10} changes graded"
    ]
    for key, s in data["settings"].items():
        lr, kl, rows, dpo, sft = (*key.split(":"), "0", "1")[:5]
        lines.append(
            f"{lr:>7} {kl:>7} {rows:>7} {dpo:>4} {sft:>4} {s['runs']:>4} {s['learned']:>7} "
            f"{s['steps_mean']:>5.1f} "
            f"{s['agreement_mean']:>13.1%} ± {s['agreement_sd']:.1%}, {s['agreement_min']:.1%} "
            f"{s['changed']:>4}/{s['compared']:<4} {s['changed_near_ties']:>4}/{s['changed']:<4} "
            f"{s['change_kinds']}"
        )
    lines.append(
        f"near ties (decided by < {TIE} nats) among all held-back parent answers: "
        f"{data['held_back_near_ties_share']:.1%}"
    )
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))

    def cdf(values: list[float], label: str) -> None:
        xs = sorted(max(v, 1e-3) for v in values)
        ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=f"{label} (n={len(xs)})")

    cdf(data["decided_by"], "all held-back answers")
    for key, runs in data["runs"].items():
        lr, kl, rows, dpo, sft = (*key.split(":"), "0", "1")[:5]
        changed = [c["parent_decided_by"] for r in runs for c in r["changed"]]
        if float(kl) > 0 and changed:
            extra = (f", dpo {dpo}" if float(dpo) else "") + (f", sft {sft}" if sft != "1" else "")
            cdf(changed, f"changed, lr {lr}, kl_coef {kl}, {rows} KL rows{extra}")
    ax.axvline(TIE, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("how firmly the parent decided its answer (smallest logit gap, nats)")
    ax.set_ylabel("share of answers at or below")
    ax.set_title("Which untouched answers a learned correction changes", fontsize=11)
    ax.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--settings",
        default="3e-4:64:64,3e-4:0:64,1e-3:256:64,3e-4:64:128",
        help="learning_rate:kl_coef:kl_prompts[:dpo_weight[:sft_weight]], comma-separated (the "
        "first is the default schedule with a cycle's 64 KL rows; dpo_weight trains the "
        "correction's preference pair too, corrected over the parent's answer; sft_weight 0 "
        "trains the pair alone, as a cycle of one operator preference does: no early stop)",
    )
    parser.add_argument("--repeats", type=int, default=4, help="draws of traffic (seeds)")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "preservation_drift.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(MODEL, local_files_only=True)
    parent = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    engine = TrainingEngine(MODEL)
    settings = [(*s.split(":"), "0", "1")[:5] for s in args.settings.split(",")]
    widest = max(int(rows) for _, _, rows, _, _ in settings)
    draws = [traffic(tokenizer, parent, seed, widest) for seed in range(args.repeats)]
    decided = [g for d in draws for g in d["decided_by"]]
    data: dict[str, Any] = {
        "meta": {"date": time.strftime("%Y-%m-%d"), "model": MODEL.name, "tie_nats": TIE},
        "decided_by": decided,
        "held_back_near_ties_share": sum(g < TIE for g in decided) / len(decided),
        "runs": {},
        "settings": {},
    }
    for lr, kl, rows, dpo, sft in settings:
        key = f"{lr}:{kl}:{rows}" + (f":{dpo}" if float(dpo) or float(sft) != 1 else "")
        key += f":{sft}" if float(sft) != 1 else ""
        runs = []
        for seed, draw in enumerate(draws):
            draw = {**draw, "kl": draw["kl"][: int(rows)]}
            runs.append(
                run(
                    engine,
                    tokenizer,
                    draw,
                    float(lr),
                    float(kl),
                    args.max_steps,
                    seed,
                    dpo=float(dpo),
                    sft=float(sft),
                )
            )
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "changed"}), flush=True)
        data["runs"][key] = runs
        data["settings"][key] = summary(runs, decided)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1))
    print(table(data))
    plot(data, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
