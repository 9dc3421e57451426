"""Build the bundled clora-tiny model: tokenizer, pretraining, evaluation, model directory.

Usage: ``python -m trainer.bundled.build --out weights/clora-tiny``. Seeded and deterministic
on one CPU thread. Exits non-zero when the ship gate fails (step-0 greedy accuracy outside
30-50%, or under 98% accuracy on episodes that call the calculator).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedTokenizerFast

from trainer.bundled.card import family_card, model_card
from trainer.bundled.corpus import ConversationEncoder, conversation, p_calc
from trainer.bundled.evaluate import EvalReport, greedy_episodes, summarize
from trainer.bundled.families import FAMILIES, ChatFamily
from trainer.bundled.pretrain import PretrainConfig, make_model, pretrain
from trainer.bundled.tokenizer import (
    ENDOFTEXT,
    IM_END,
    TOKENIZER_CLASS,
    TokenizerSpec,
    token_id,
    train_tokenizer,
)
from trainer.envs.arithmetic_tasks import make_problem
from trainer.envs.calculator import CalculatorEnvironment

ACCURACY_BAND = (0.30, 0.50)
MIN_CALCULATOR_ACCURACY = 0.98
TOKENIZER_CONVERSATIONS = 4000
EVAL_TASKS = 200


def log(message: str) -> None:
    """Print a progress line immediately (the build runs for minutes)."""
    print(message, flush=True)


def build_tokenizer(seed: int, family: ChatFamily | None = None) -> PreTrainedTokenizerFast:
    """Train the tokenizer on rendered synthetic conversations of the training split."""
    rng = random.Random(f"tokenizer:{seed}")
    spec = family.tokenizer if family else TokenizerSpec()
    reasoning = family.turns.reasoning if family else None
    # Rendering needs only the template, so a throwaway tokenizer carries it here.
    from tokenizers import Tokenizer, models

    renderer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE()), chat_template=spec.template
    )
    tools: list[Any] = CalculatorEnvironment().tools()
    texts: list[str] = []
    while len(texts) < TOKENIZER_CONVERSATIONS:
        problem = make_problem(rng)
        if problem.split != "train":
            continue
        messages = conversation(problem, rng.random() < 0.5, reasoning)
        text = renderer.apply_chat_template(messages, tools=tools, tokenize=False)
        assert isinstance(text, str)
        texts.append(text)
    return train_tokenizer(texts, spec)


def save(
    out: Path, model: Any, tokenizer: PreTrainedTokenizerFast, family: ChatFamily | None = None
) -> None:
    """Write the HF model directory: config, safetensors, tokenizer, generation config."""
    out.mkdir(parents=True, exist_ok=True)
    ends = family.end_tokens if family else (IM_END, ENDOFTEXT)
    model.generation_config = GenerationConfig(
        eos_token_id=[token_id(tokenizer, end) for end in ends],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=(
            tokenizer.pad_token_id if tokenizer.bos_token_id is None else tokenizer.bos_token_id
        ),
    )
    model.save_pretrained(out, safe_serialization=True)
    # chat_template inside tokenizer_config.json (not chat_template.jinja): one file to read.
    tokenizer.save_pretrained(out, save_jinja_files=False)
    # Name the Qwen2 class (as Qwen2 checkpoints do): transformers 4 loads tokenizer.json as
    # is, transformers 5 rebuilds Qwen2's pipeline, which is the one the merges were trained on.
    config_path = out / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config["tokenizer_class"] = family.tokenizer_class if family else TOKENIZER_CLASS
    config_path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")


def passes_gate(report: EvalReport) -> bool:
    """The ship gate: step-0 accuracy in band and calculator episodes nearly always right."""
    low, high = ACCURACY_BAND
    return low <= report.accuracy <= high and report.calculator_accuracy >= MIN_CALCULATOR_ACCURACY


def main(argv: list[str] | None = None) -> int:
    """Build, evaluate and write the model directory; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("weights/clora-tiny"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-steps", type=int, default=PretrainConfig.max_steps, help="cap (for smoke builds)"
    )
    parser.add_argument("--eval-tasks", type=int, default=EVAL_TASKS)
    parser.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        help="build a family fixture (its architecture and chat template) instead",
    )
    args = parser.parse_args(argv)
    family = FAMILIES[args.family] if args.family else None

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    started = time.monotonic()
    config = PretrainConfig(max_steps=args.max_steps, seed=args.seed)

    tokenizer = build_tokenizer(args.seed, family)
    log(f"tokenizer: {len(tokenizer)} tokens")
    if family:
        encoder = ConversationEncoder(tokenizer, family.turns)
        vocab = family.tokenizer.vocab_size
        model = make_model(config, tokenizer, family.model_type, vocab)
    else:
        encoder = ConversationEncoder(tokenizer)
        model = make_model(config, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters; pretraining (at most {config.max_steps} steps)")
    losses = pretrain(model, encoder, config, log=log)

    env = CalculatorEnvironment()
    tasks = env.tasks("test", args.eval_tasks, seed=0)
    log(f"evaluating greedy on {len(tasks)} held-out tasks")
    tool_format = family.tool_parser if family else "hermes"
    report = summarize(greedy_episodes(model, tokenizer, env, tasks, tool_format=tool_format))
    build_seconds = time.monotonic() - started
    mean_p = statistics.mean(p_calc(make_problem(random.Random(f"p:{i}"))) for i in range(4000))
    info = {
        "parameters": n_params,
        "vocab_tokens": len(tokenizer),
        "vocab_size": model.config.vocab_size,
        "build_seconds": build_seconds,
        "steps": len(losses),
        "mean_p_calc": mean_p,
    }
    save(args.out, model, tokenizer, family)
    card = family_card(family, report, info) if family else model_card(config, report, info)
    (args.out / "README.md").write_text(card)
    results = {
        "accuracy": report.accuracy,
        "calculator_rate": report.calculator_rate,
        "calculator_accuracy": report.calculator_accuracy,
        "direct_accuracy": report.direct_accuracy,
        "finish_reasons": report.finish_reasons,
        "by_template": report.by_template,
        "eval_tasks": len(tasks),
        **info,
    }
    (args.out / "build_results.json").write_text(json.dumps(results, indent=2) + "\n")
    log(json.dumps(results, indent=2))
    size = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    log(f"wrote {args.out} ({size / 1e6:.1f} MB) in {build_seconds / 60:.1f} min")
    if not passes_gate(report):
        log("SHIP GATE FAILED: accuracy must be in 30-50% and calculator accuracy >= 98%")
        return 1
    log("ship gate passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
