"""The trainer's memory budget: how many tokens one forward/backward may hold, from the budget
and the base model's shape, and whether the trainer fits beside the engine on a shared GPU.

A pass holds the frozen weights, a fixed loss-head working set (`trainer.head.LMHead` keeps at
most ``logit_chunk_bytes`` of fp32 logits, their softmax and their gradient), and activations
that grow with the tokens in the pass. Per token and decoder layer the backward pass keeps,
in the working dtype, about ``8 hidden + 2 kv + 4 intermediate`` values (norm inputs and
outputs, q/k/v, attention output, the gate, up and activated MLP states) plus, where attention
is computed in full (the CPU), the softmaxed scores of its row in fp32 (heads x row length).
With gradient checkpointing only each layer's input stays (``hidden`` values a layer), and
one layer's full set is rebuilt at a time. Measured at the shape of `bench/trainer_memory.py`
(2 layers, hidden 64, rows of 512): 24 KB a token; this estimate gives 23 KB before its
margin (`tests/unit/trainer/test_memory_budget.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.errors import TrainerError

GIB = 2**30
MARGIN = 1.5
"""The estimate is multiplied by this before dividing the budget: allocator fragmentation,
LoRA intermediates and the optimiser's transient copies are not in it."""
HEAD_COPIES = 3
"""The loss head holds a chunk's logits, their softmax and their gradient at once."""
MIN_TOKENS = 64
"""A budget that leaves less than this per pass cannot train anything useful: refused."""
ENGINE_SHARE_SETTING = "CLORA_ENGINE_GPU_SHARE"
BUDGET_SETTING = "CLORA_TRAINER_MEMORY_GB"


class MemoryBudgetError(TrainerError, ValueError):
    """The trainer's memory budget cannot hold the base model and a pass, or does not fit
    beside the engine's share of the GPU."""


@dataclass(frozen=True)
class Shape:
    """What the activation estimate needs of a model's config."""

    layers: int
    hidden: int
    kv: int
    intermediate: int
    heads: int

    @classmethod
    def of(cls, config: Any) -> Shape:
        heads = int(config.num_attention_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        return cls(
            layers=int(config.num_hidden_layers),
            hidden=int(config.hidden_size),
            kv=kv_heads * head_dim,
            intermediate=int(config.intermediate_size),
            heads=heads,
        )


def bytes_per_token(
    shape: Shape, dtype_bytes: int, *, checkpointing: bool, row_tokens: int, full_attention: bool
) -> int:
    """Activation bytes one token costs a pass (before the margin)."""
    layer = (8 * shape.hidden + 2 * shape.kv + 4 * shape.intermediate) * dtype_bytes
    if full_attention:
        layer += shape.heads * row_tokens * 4
    if checkpointing:
        return shape.layers * shape.hidden * dtype_bytes + layer
    return shape.layers * layer


def tokens_per_pass(
    budget_bytes: int, weight_bytes: int, head_bytes: int, per_token: int, vocab: int
) -> int:
    """Padded tokens one pass may hold within ``budget_bytes`` (a multiple of 64).

    The loss head holds ``vocab`` fp32 logits a token, at most ``head_bytes`` of them at once
    (and `HEAD_COPIES` such sets): a pass whose logits stay under the chunk pays them per
    token, a bigger one pays the whole chunk once. Raises `MemoryBudgetError` when the
    weights, the loss head and `MIN_TOKENS` do not fit."""
    room = budget_bytes - weight_bytes
    logits = vocab * 4
    unchunked = room / (per_token * MARGIN + HEAD_COPIES * logits)
    if unchunked * logits <= head_bytes:
        tokens = int(unchunked)
    else:
        tokens = int((room - HEAD_COPIES * head_bytes) / (per_token * MARGIN))
    tokens = tokens // 64 * 64
    if tokens < MIN_TOKENS:
        head = HEAD_COPIES * min(head_bytes, MIN_TOKENS * logits)
        raise MemoryBudgetError(
            f"{BUDGET_SETTING}={budget_bytes / GIB:.2f} cannot hold the base model's weights "
            f"({weight_bytes / GIB:.2f} GB), the loss head ({head / GIB:.2f} GB) and a pass of "
            f"{MIN_TOKENS} tokens ({MIN_TOKENS * per_token * MARGIN / GIB:.2f} GB): raise the "
            "budget, lower CLORA_TRAINER_LOGIT_CHUNK_MB, turn on "
            "CLORA_TRAINER_GRADIENT_CHECKPOINTING, or give the trainer a GPU of its own"
        )
    return tokens


def trainer_share(total_bytes: int, engine_share: float, budget_bytes: int | None) -> int:
    """The trainer's budget on a GPU the engine takes ``engine_share`` of (vLLM's
    ``--gpu-memory-utilization``; 0 when the engine has a GPU of its own): the budget asked
    for, or what the engine leaves (less 5% for the CUDA context) when none is.

    Raises `MemoryBudgetError` for a split that cannot fit."""
    if not 0.0 <= engine_share < 1.0:
        raise MemoryBudgetError(f"{ENGINE_SHARE_SETTING}={engine_share} is not in [0, 1)")
    left = int(total_bytes * (1.0 - engine_share - 0.05))
    if budget_bytes is None:
        return left
    if budget_bytes > left:
        raise MemoryBudgetError(
            f"{BUDGET_SETTING}={budget_bytes / GIB:.1f} does not fit on this GPU beside the "
            f"engine: {ENGINE_SHARE_SETTING}={engine_share} of {total_bytes / GIB:.1f} GB leaves "
            f"{left / GIB:.1f} GB (after 5% for the CUDA context); lower one of them"
        )
    return budget_bytes
