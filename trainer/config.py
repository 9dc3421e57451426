"""Trainer configuration: per-agent LoRA settings and the engine's own settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.head import DEFAULT_CHUNK_BYTES

DEFAULT_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)

#: Where the bundled tiny model lives, relative to the repository root.
DEFAULT_BASE_MODEL_DIR = Path(__file__).resolve().parent.parent / "weights" / "clora-tiny"


@dataclass(frozen=True)
class LoraSettings:
    """How one agent's LoRA adapter is shaped and initialised (PEFT's `LoraConfig` subset)."""

    rank: int = 16
    """LoRA rank r: A is (r, in_features), B is (out_features, r)."""

    alpha: float = 32.0
    """LoRA alpha; the adapter's output is scaled by alpha / rank (PEFT's default scaling)."""

    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    """Suffixes of the base model's `nn.Linear` module names that get an adapter (PEFT matching)."""

    dropout: float = 0.0
    """Dropout on the adapter's input during training; non-zero breaks bitwise reproducibility."""

    init_seed: int = 0
    """Seed of the kaiming-uniform init of A (B starts at zero, so a fresh adapter is a no-op)."""

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {self.rank}")
        if not self.target_modules:
            raise ValueError("LoRA target_modules must not be empty")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        # Normalise order so that two settings naming the same modules compare equal.
        object.__setattr__(self, "target_modules", tuple(sorted(set(self.target_modules))))

    @property
    def scale(self) -> float:
        """Factor applied to the LoRA term B @ A @ x."""
        return self.alpha / self.rank


@dataclass(frozen=True)
class TrainerConfig:
    """Settings of one training engine (one base model, many adapters)."""

    base_model_dir: Path = DEFAULT_BASE_MODEL_DIR
    """Hugging Face model directory of the frozen base model."""

    device: str | None = None
    """Torch device of the base model; None picks `cuda` when available, else `cpu`."""

    dtype: str | None = None
    """Dtype of the base model and of the adapters' working weights (masters are always fp32);
    None picks bfloat16 on CUDA and float32 elsewhere."""

    gradient_checkpointing: bool = False
    """Keep only each decoder layer's input in a training pass and recompute the layer in the
    backward pass: activation memory per token falls from every layer's intermediates to one
    hidden state per layer, for about one more forward of compute."""

    multiplex: bool = True
    """Share one forward/backward between rows of several adapters; False swaps them one at a
    time (the seed design, kept as the baseline of `bench/trainer_multiplex.py`)."""

    max_tokens_per_pass: int | None = None
    """Upper bound on padded tokens (rows x longest row) in one forward/backward; None picks
    1024 on CPU and 32768 on an accelerator. Work beyond it is split over micro-passes whose
    gradients accumulate. On the CPU measured here a pass's activations must stay near the L2
    cache: bigger passes cost more per token (docs/TRAINER.md). The accelerator value is a
    starting point, not a measurement: tune it with bench/trainer_multiplex.py."""

    merge_below_tokens: int | None = None
    """An adapter's work under this many padded tokens is packed whole into passes it shares
    with other small work (equal items give equal runs: the batched LoRA kernel); bigger work is
    cut into micro-passes that fill up to `max_tokens_per_pass` with rows of other big work.
    None picks 384 on CPU (measured: merging 8 adapters of 8 x 32 tokens whole is 1.09x faster,
    of 8 x 48 tokens 1.05x, of 8 x 64 tokens 0.97x) and `max_tokens_per_pass` on an
    accelerator (unmeasured here)."""

    logit_chunk_bytes: int = DEFAULT_CHUNK_BYTES
    """fp32 logits the loss head may hold at once (`trainer.head.LMHead`): positions are
    taken this many bytes' worth at a time (at Qwen3's vocabulary the default is 441
    positions) and recomputed in the backward pass, so no pass holds (tokens x vocab)."""

    pin_memory: bool | None = None
    """Keep adapter state in pinned host memory; None pins exactly when the device is CUDA."""

    memory_budget_bytes: int | None = None
    """Device memory the trainer may use (weights, loss head, activations). When
    `max_tokens_per_pass` is unset, the tokens per pass are derived from it and the model's
    shape (`trainer.memory`). None: on CUDA, what the engine's share leaves of the GPU; on the
    CPU, no budget (1024 tokens a pass)."""

    engine_gpu_share: float = 0.0
    """The share of this GPU's memory the engine takes (vLLM's ``--gpu-memory-utilization``
    when both share one GPU; 0 when the engine has its own). A budget beyond what it leaves is
    refused at startup."""
