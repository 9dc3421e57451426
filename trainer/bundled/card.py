"""The model card (README.md) written next to the bundled model."""

from __future__ import annotations

from typing import Any

from trainer.bundled.evaluate import EvalReport
from trainer.bundled.families import ChatFamily
from trainer.bundled.pretrain import PretrainConfig


def model_card(config: PretrainConfig, report: EvalReport, info: dict[str, Any]) -> str:
    """Markdown model card: how the model was made and what it scores."""
    templates = "\n".join(
        f"| {name} | {acc:.0%} |" for name, acc in sorted(report.by_template.items())
    )
    finishes = ", ".join(f"{k}: {v}" for k, v in sorted(report.finish_reasons.items()))
    return f"""---
license: apache-2.0
library_name: transformers
pipeline_tag: text-generation
tags: [clora, tool-use, synthetic, tiny]
---

# clora-tiny

The bundled agent model of clora: a {info["parameters"] / 1e6:.2f}M-parameter Qwen2 decoder
trained from scratch on this machine, so that serving, feedback, training and RL all run for
real with nothing downloaded. It is not a language model in any general sense: it knows one
job, the calculator tool-use protocol of `trainer/envs/calculator.py`.

## How it was made

`python -m trainer.bundled.build --out weights/clora-tiny` (or `make model`); seeded and
deterministic, single CPU thread, {info["build_seconds"] / 60:.1f} minutes on the build machine.

- **Tokenizer**: byte-level BPE trained with `tokenizers` on the synthetic conversations,
  digits split one per token, {info["vocab_tokens"]} tokens (model vocabulary padded to
  {info["vocab_size"]}). Special tokens `<|im_start|>`, `<|im_end|>` (end of turn),
  `<|endoftext|>` (padding); `<tool_call>` / `</tool_call>` are single ordinary tokens.
- **Chat template**: ChatML-style turns for system, user, assistant and tool messages; tools
  are listed as `name(params)`; assistant tool calls are Hermes-format
  `<tool_call>{{"name": ..., "arguments": {{...}}}}</tool_call>`, so vLLM's `hermes`
  tool-call parser returns them as OpenAI `tool_calls`.
- **Model**: Qwen2, hidden {config.hidden_size}, {config.num_layers} layers,
  {config.num_heads} heads, feed-forward {config.intermediate_size}, tied embeddings,
  context {config.max_position_embeddings}, float32, initialised with std {config.init_std}
  (not Qwen2's 0.02: with it this narrow model sits on a long plateau before it learns to
  copy digits).
- **Data**: {info["steps"]} steps x {config.batch_size} synthetic episodes of the nine
  arithmetic templates (train split only). Loss on assistant tokens. The first tool-name
  token (calculator or final answer) is trained against a soft target `p_calc` that grows
  with the template's number of operations and the size of its numbers (mean
  {info["mean_p_calc"]:.2f}); {config.calc_path_fraction:.0%} of continuations take the
  calculator path so that copying numbers is practised. Direct answers (no calculator)
  are trained with the true result, which a model this small rarely gets right.
- **Optimiser**: AdamW, lr {config.lr} after {config.warmup_steps} warm-up steps, held until
  teacher-forced copy accuracy on 256 calculator conversations reaches
  {config.copy_target:.1%} (checked every {config.eval_every} steps), then
  {config.cooldown_steps} steps of linear decay to 10%;
  betas (0.9, 0.95), weight decay {config.weight_decay}, gradient clip 1.0, seed {config.seed}.

## What it scores (step 0)

Greedy decoding, {len(report.episodes)} held-out tasks (`CalculatorEnvironment().tasks("test",
{len(report.episodes)}, seed=0)`), in-process `transformers` generation at build time:

- accuracy: **{report.accuracy:.1%}**
- calls the calculator on {report.calculator_rate:.1%} of tasks; right on
  **{report.calculator_accuracy:.1%}** of those (ship gate: at least 98%)
- right on {report.direct_accuracy:.1%} of the tasks it answers without the calculator
- episode endings: {finishes}

| template | accuracy |
|---|---|
{templates}

Most failures are answers given without calling the calculator: exactly the decision that
RL (GRPO with a LoRA adapter on this environment) learns to fix. The test suite measures
the same figure again through the real vLLM server (`tests/integration/test_bundled_model.py`).

## Intended use

Tests, demos and the embedded `clora up` default. Use a real base model for real agents.
"""


def family_card(family: ChatFamily, report: EvalReport, info: dict[str, Any]) -> str:
    """Markdown card of a family fixture (`trainer/bundled/families.py`)."""
    return f"""# clora-tiny-{family.name}: a {family.name} family fixture

A {info["parameters"] / 1e6:.2f}M-parameter `{family.model_type}` model trained from scratch
on the calculator corpus as the bundled model is (docs/MODEL.md), with a chat template that
behaves like its family's (`trainer/bundled/families.py`, docs/MODELS.md). vLLM reads its
tool calls with the `{family.tool_parser}` parser. Made by
`python -m trainer.bundled.build --family {family.name}` in {info["build_seconds"] / 60:.1f}
minutes; {info["vocab_tokens"]} tokens, vocabulary {info["vocab_size"]}.

Greedy, {len(report.episodes)} held-out tasks: accuracy **{report.accuracy:.1%}**; calls the
calculator on {report.calculator_rate:.1%} of tasks and is right on
**{report.calculator_accuracy:.1%}** of those.

For tests: it proves the loop on the family's template and tool format, not on its scale.
"""
