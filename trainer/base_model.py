"""The frozen base model: loaded once from a Hugging Face directory, shared by every adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from trainer.config import LoraSettings
from trainer.errors import AdapterMismatchError
from trainer.lora import LoraRouting, MultiLoraLinear, inject_multi_lora, matches_target

ModuleShapes = dict[str, tuple[int, int]]  # module name -> (in_features, out_features)


def pick_device(device: str | torch.device | None) -> torch.device:
    """The requested device, or the accelerator when there is one, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> str:
    """bfloat16 on CUDA (what real base models are trained and served in), float32 elsewhere
    (CPU kernels for bfloat16 are slower there, and the bundled model is float32)."""
    return "bfloat16" if device.type == "cuda" else "float32"


class BaseModel:
    """A frozen causal LM whose targetable linears are `MultiLoraLinear` layers."""

    def __init__(self, model_dir: str | Path, device: torch.device, dtype: torch.dtype) -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"no Hugging Face model (config.json) in {self.model_dir}")
        self.device = device
        self.dtype = dtype
        model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype)
        model.requires_grad_(False)
        model.eval()  # base dropout off: training only changes adapters
        model.to(device)  # type: ignore[arg-type]
        self.model: nn.Module = model
        self.routing = LoraRouting()
        self.layers: dict[str, MultiLoraLinear] = {}
        self.linear_shapes: ModuleShapes = {
            name: (m.in_features, m.out_features)
            for name, m in self.model.named_modules()
            if isinstance(m, nn.Linear)
        }
        config = self.model.config
        self.pad_token_id = int(getattr(config, "pad_token_id", None) or 0)
        self.name_or_path = str(self.model_dir)

    def describe(self) -> dict[str, Any]:
        """What an adapter must agree with: architecture and sizes of the base."""
        cfg = self.model.config
        return {
            "model_type": getattr(cfg, "model_type", None),
            "hidden_size": getattr(cfg, "hidden_size", None),
            "num_hidden_layers": getattr(cfg, "num_hidden_layers", None),
            "vocab_size": getattr(cfg, "vocab_size", None),
        }

    def target_shapes(self, lora: LoraSettings) -> ModuleShapes:
        """Shapes of the base linears an adapter with these settings attaches to.

        Raises `AdapterMismatchError` when a target names no linear of this base.
        """
        shapes = {
            name: shape
            for name, shape in self.linear_shapes.items()
            if matches_target(name, lora.target_modules)
        }
        missing = [
            t for t in lora.target_modules if not any(matches_target(n, (t,)) for n in shapes)
        ]
        if missing:
            raise AdapterMismatchError(
                f"target modules {missing} match no linear layer of base model {self.name_or_path}"
            )
        return shapes

    def ensure_wrapped(self, lora: LoraSettings) -> None:
        """Give every linear the adapter targets a multi-LoRA wrapper (idempotent)."""
        self.layers.update(inject_multi_lora(self.model, lora.target_modules, self.routing))

    def base_parameters(self) -> dict[str, torch.Tensor]:
        """The frozen base weights by name (wrapper prefixes removed), for checks and tests."""
        return {name.replace(".base_layer", ""): p for name, p in self.model.named_parameters()}

    def checkpoint_layers(self) -> int:
        """Recompute each decoder layer in the backward pass instead of keeping its
        intermediates (Hugging Face's gradient checkpointing, non-reentrant, so the frozen
        base needs no input gradients). Only the layers' own switch is set to training: every
        dropout stays off. Returns the number of checkpointed layers."""
        from transformers.modeling_layers import GradientCheckpointingLayer

        self.model.gradient_checkpointing_enable(  # type: ignore[operator]
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        layers = [m for m in self.model.modules() if isinstance(m, GradientCheckpointingLayer)]
        for layer in layers:
            layer.training = True
        if not layers:
            raise ValueError(f"{self.model_dir} has no decoder layer to checkpoint")
        return len(layers)

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The decoder's last hidden states (R, T, H), what the LM head reads
        (`trainer.head.LMHead`), with whatever adapters the routing holds."""
        decoder = self.model.get_decoder()  # type: ignore[operator]
        out = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state

    def output_head(self) -> nn.Module:
        """The LM head (the output embeddings, tied or not)."""
        head: nn.Module = self.model.get_output_embeddings()  # type: ignore[operator]
        return head

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Next-token logits (R, T, V) with whatever adapters the routing holds."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.logits


def check_adapter_fits(
    weights: dict[str, torch.Tensor], shapes: ModuleShapes, rank: int, source: str
) -> None:
    """Refuse LoRA weights whose modules or shapes differ from what the base expects."""
    expected = {f"{m}.lora_A": (rank, i) for m, (i, o) in shapes.items()}
    expected.update({f"{m}.lora_B": (o, rank) for m, (i, o) in shapes.items()})
    unknown = sorted(set(weights) - set(expected))
    absent = sorted(set(expected) - set(weights))
    if unknown or absent:
        raise AdapterMismatchError(
            f"{source} does not fit the base model: unexpected {unknown[:4]}, missing {absent[:4]}"
        )
    for name, tensor in weights.items():
        if tuple(tensor.shape) != expected[name]:
            raise AdapterMismatchError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, base expects {expected[name]}"
            )
