"""Pretraining the bundled tiny Qwen2 model from scratch on synthetic tool-use conversations."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from trainer.bundled.corpus import ConversationEncoder, Example, sample_examples
from trainer.bundled.tokenizer import VOCAB_SIZE


@dataclass
class PretrainConfig:
    """Model shape and optimisation settings for the bundled model."""

    hidden_size: int = 128
    """Width of the residual stream (4 heads of 32; 32 is the smallest CPU-vLLM head size)."""
    num_layers: int = 4
    """Decoder layers."""
    num_heads: int = 4
    """Attention heads (and key/value heads: no grouped-query attention)."""
    intermediate_size: int = 512
    """SwiGLU feed-forward width."""
    rope_theta: float = 10000.0
    """RoPE base."""
    max_position_embeddings: int = 1024
    """Longest sequence the model (and vLLM's --max-model-len) supports."""
    init_std: float = 0.06
    """Std of the normal weight init. Qwen2's default 0.02 leaves this narrow model on a long
    loss plateau before it learns to copy digits (800+ steps, and not reliably within the
    budget); 0.06 learns copying within ~300 steps."""
    min_steps: int = 300
    """Fewest optimiser steps before the cool-down may start."""
    max_steps: int = 1500
    """Most optimiser steps (cool-down included), whatever the copy accuracy."""
    cooldown_steps: int = 250
    """Steps of linear decay to 10% of ``lr`` once copying is learned."""
    copy_target: float = 0.95
    """Teacher-forced copy accuracy that starts the cool-down (which lifts it to ~100%)."""
    eval_every: int = 50
    """Steps between copy-accuracy checks (and progress lines)."""
    batch_size: int = 32
    """Conversations per step."""
    lr: float = 1e-3
    """AdamW learning rate after the linear warm-up, until the cool-down. Measured here:
    copying reached 80% (teacher-forced) by step 300 at 1e-3, by step 850 at 2e-3, and
    not by step 1250 at 3e-3."""
    warmup_steps: int = 60
    """Linear warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay on matrices (not on norms or biases)."""
    calc_path_fraction: float = 0.85
    """Share of word-problem conversations whose continuation takes the calculator path."""
    drill_fraction: float = 0.3
    """Share of conversations that are copy drills ("Calculate 48*7+913.")."""
    seed: int = 0
    """Seeds the weights and the data stream."""


def make_model(
    config: PretrainConfig,
    tokenizer: PreTrainedTokenizerFast,
    model_type: str = "qwen2",
    vocab_size: int = VOCAB_SIZE,
) -> Any:
    """A freshly initialised float32 model of the configured shape: Qwen2 (the bundled model),
    or another architecture of the same shape (``qwen3``, ``llama``: the family fixtures)."""
    shape: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_heads,
        "max_position_embeddings": config.max_position_embeddings,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "initializer_range": config.init_std,
        "bos_token_id": (
            tokenizer.pad_token_id if tokenizer.bos_token_id is None else tokenizer.bos_token_id
        ),
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": "float32",
    }
    torch.manual_seed(config.seed)
    if model_type == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(use_sliding_window=False, **shape)).float()
    extra = {"head_dim": config.hidden_size // config.num_heads} if model_type == "qwen3" else {}
    model_config = AutoConfig.for_model(model_type, **shape, **extra)
    return AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch into tensors, with the soft decision targets alongside."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
        labels[row, e.decision_index + 1] = -100  # the decision token gets the soft loss
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": mask,
        "decision_index": torch.tensor([e.decision_index for e in examples]),  # (B,)
        "p_calc": torch.tensor([e.p_calc for e in examples]),  # (B,)
    }


def batch_loss(
    model: Qwen2ForCausalLM, batch: dict[str, torch.Tensor], calc_id: int, final_id: int
) -> torch.Tensor:
    """Mean next-token cross-entropy on assistant tokens plus soft CE on decision tokens.

    At the decision position the target is the distribution {calculator: p, final: 1-p},
    so the loss there is -(p log q_calc + (1-p) log q_final).
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    targets = batch["labels"][:, 1:]  # (B, T-1)
    valid = targets != -100  # (B, T-1)
    token_nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    rows = torch.arange(logits.shape[0])
    at = logp[rows, batch["decision_index"]]  # (B, V)
    p = batch["p_calc"]  # (B,)
    decision_nll = -(p * at[:, calc_id] + (1 - p) * at[:, final_id])  # (B,)
    total = (token_nll * valid).sum() + decision_nll.sum()
    return total / (valid.sum() + len(p))


@torch.no_grad()
def copy_accuracy(model: Qwen2ForCausalLM, batches: list[dict[str, torch.Tensor]]) -> float:
    """Share of conversations whose every trained token (bar the decision) is the argmax.

    Run on calculator-path conversations this is, under teacher forcing, the share that
    greedy decoding would copy perfectly: numbers into the expression, and the tool
    result into the final answer. It decides when pretraining may cool down.
    """
    was_training = model.training
    model.eval()
    right = total = 0
    for batch in batches:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        predicted = logits[:, :-1].argmax(-1)  # (B, T-1)
        targets = batch["labels"][:, 1:]  # (B, T-1)
        wrong = ((predicted != targets) & (targets != -100)).any(dim=-1)  # (B,)
        right += int((~wrong).sum())
        total += len(wrong)
    model.train(was_training)
    return right / max(1, total)


class LearningRate:
    """Warm-up, then constant until copying is learned, then a linear cool-down to 10%.

    A warmup-stable-decay schedule: the copying skill arrives after a plateau of varying
    length, so the decay starts when it is measured, not at a fixed step.
    """

    def __init__(self, config: PretrainConfig) -> None:
        """Start in the warm-up phase."""
        self.config = config
        self.cooldown_from: int | None = None

    def start_cooldown(self, step: int) -> None:
        """Begin the cool-down at ``step`` (idempotent)."""
        if self.cooldown_from is None:
            self.cooldown_from = step

    def done(self, step: int) -> bool:
        """Whether training has finished its cool-down by ``step``."""
        return (
            self.cooldown_from is not None
            and step >= self.cooldown_from + self.config.cooldown_steps
        )

    def at(self, step: int) -> float:
        """The learning rate for ``step``."""
        config = self.config
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        if self.cooldown_from is None:
            return config.lr
        progress = min(1.0, (step - self.cooldown_from) / config.cooldown_steps)
        return config.lr * (1.0 - 0.9 * progress)


def pretrain(
    model: Qwen2ForCausalLM,
    encoder: ConversationEncoder,
    config: PretrainConfig,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Train ``model`` in place on freshly sampled conversations; return the loss curve.

    Runs at constant learning rate until teacher-forced copy accuracy on a fixed set of
    calculator conversations reaches ``copy_target`` (checked every ``eval_every`` steps
    from ``min_steps``), then cools down for ``cooldown_steps``; at most ``max_steps``.
    Deterministic: the data stream, the checks and hence the stopping step depend only on
    the seed.
    """
    rng = random.Random(f"pretrain:{config.seed}")
    pad_id = int(encoder.tokenizer.pad_token_id)
    held = sample_examples(encoder, random.Random(f"copycheck:{config.seed}"), 256, 1.0)
    check = [collate(held[i : i + 64], pad_id) for i in range(0, len(held), 64)]
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.9, 0.95),
    )
    schedule = LearningRate(config)
    model.train()
    losses: list[float] = []
    started = time.monotonic()
    step = 0
    while not schedule.done(step) and step < config.max_steps:
        for group in optimizer.param_groups:
            group["lr"] = schedule.at(step)
        examples = sample_examples(
            encoder, rng, config.batch_size, config.calc_path_fraction, config.drill_fraction
        )
        loss = batch_loss(model, collate(examples, pad_id), encoder.calc_id, encoder.final_id)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % config.eval_every == 0:
            recent = losses[-config.eval_every :]
            copied = copy_accuracy(model, check)
            log(
                f"step {step:5d}  loss {sum(recent) / len(recent):.4f}  copy {copied:.3f}  "
                f"lr {schedule.at(step - 1):.2e}  {time.monotonic() - started:6.0f}s"
            )
            if step >= config.min_steps and copied >= config.copy_target:
                schedule.start_cooldown(step)
        if step >= config.max_steps - config.cooldown_steps:
            schedule.start_cooldown(step)
    log(f"pretraining stopped after {step} steps (cool-down from {schedule.cooldown_from})")
    model.eval()
    return losses
