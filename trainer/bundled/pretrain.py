"""Pretraining the bundled tiny Qwen2 model from scratch on synthetic tool-use conversations."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from trainer.bundled.corpus import ConversationEncoder, Example, sample_examples
from trainer.bundled.tokenizer import ENDOFTEXT, IM_END, VOCAB_SIZE


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
    max_position_embeddings: int = 1024
    """Longest sequence the model (and vLLM's --max-model-len) supports."""
    steps: int = 1300
    """Optimiser steps."""
    batch_size: int = 32
    """Conversations per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warm-up, cosine decay to 10%)."""
    warmup_steps: int = 60
    """Linear warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay on matrices (not on norms or biases)."""
    calc_path_fraction: float = 0.85
    """Share of conversations whose continuation takes the calculator path."""
    seed: int = 0
    """Seeds the weights and the data stream."""


def make_model(config: PretrainConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    """A freshly initialised float32 Qwen2 model of the configured shape."""
    model_config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        dtype="float32",
    )
    torch.manual_seed(config.seed)
    return Qwen2ForCausalLM(model_config).float()


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


def _lr_at(step: int, config: PretrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(
    model: Qwen2ForCausalLM,
    encoder: ConversationEncoder,
    config: PretrainConfig,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Train ``model`` in place on freshly sampled conversations; return the loss curve."""
    rng = random.Random(f"pretrain:{config.seed}")
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
    pad_id = encoder.tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    model.train()
    losses: list[float] = []
    started = time.monotonic()
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        examples = sample_examples(encoder, rng, config.batch_size, config.calc_path_fraction)
        loss = batch_loss(model, collate(examples, pad_id), encoder.calc_id, encoder.final_id)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == config.steps - 1:
            recent = losses[-50:]
            log(
                f"step {step:5d}/{config.steps}  loss {sum(recent) / len(recent):.4f}  "
                f"lr {_lr_at(step, config):.2e}  {time.monotonic() - started:6.0f}s"
            )
    model.eval()
    return losses
