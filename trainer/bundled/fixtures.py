"""Models of the real families' shapes, made here (nothing is downloaded).

Real-vocabulary fixtures: a Qwen3- or Llama-architecture model with its family's vocabulary
size (151,936 for Qwen3, 128,256 for Llama 3), random weights and tiny hidden sizes. They
answer nothing meaningful; they exist for memory (the loss head at a real vocabulary), for the
engine's handling of a large vocabulary and of runtime LoRA adapters on it, and for the
trainer's limits. The tokenizer is the bundled one's byte-level BPE with filler entries
(``<fill123>``) up to the vocabulary size, so every id the model can emit decodes; the chat
template is the bundled Hermes one.

    python -m trainer.bundled.fixtures --family qwen3 --out /tmp/qwen3-vocab
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

BUNDLED = Path(__file__).resolve().parents[2] / "weights" / "clora-tiny"


@dataclass(frozen=True)
class Family:
    """A model family's architecture and vocabulary, at tiny hidden sizes."""

    model_type: str
    vocab_size: int
    tokenizer_class: str
    tokens: dict[str, int]
    """The family's own marker tokens at their real ids (what vLLM's parsers for the family
    look up): Qwen3's think tags, Llama 3's header, end-of-turn and python tags."""


FAMILIES = {
    "qwen3": Family("qwen3", 151_936, "Qwen2Tokenizer", {"<think>": 151_667, "</think>": 151_668}),
    "llama3": Family(
        "llama",
        128_256,
        "PreTrainedTokenizerFast",
        {
            "<|start_header_id|>": 128_006,
            "<|end_header_id|>": 128_007,
            "<|eot_id|>": 128_009,
            "<|python_tag|>": 128_010,
        },
    ),
}


def _config(family: Family) -> object:
    shape: dict[str, Any] = {
        "vocab_size": family.vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        # vLLM's CPU attention takes head sizes 32, 64, 80, ... (not 16); real models use 128.
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 64,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": True,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    if family.model_type == "qwen3":
        from transformers import Qwen3Config

        return Qwen3Config(**shape)
    from transformers import LlamaConfig

    return LlamaConfig(**shape)


def _tokenizer(out: Path, family: Family) -> None:
    """The bundled tokenizer with filler entries up to the family's vocabulary size."""
    data = json.loads((BUNDLED / "tokenizer.json").read_text())
    vocab: dict[str, int] = data["model"]["vocab"]
    for content, token_id in family.tokens.items():
        data["added_tokens"].append(
            {
                "id": token_id,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": False,
            }
        )
    # Every added token is in the vocabulary at its id too: a tokenizer rebuilt from the
    # vocabulary (transformers does so for a qwen2-style one) then keeps each token's id.
    for token in data["added_tokens"]:
        vocab[token["content"]] = token["id"]
    taken = set(vocab.values())
    for token_id in range(family.vocab_size):
        if token_id not in taken:
            vocab[f"<fill{token_id}>"] = token_id
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    config = json.loads((BUNDLED / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = family.tokenizer_class
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def make_real_vocab_model(out: Path, family_name: str, seed: int = 0) -> Path:
    """Write a random-weight model of ``family_name``'s architecture and vocabulary size
    (tiny hidden sizes) with a tokenizer that decodes every id; returns ``out``."""
    from transformers import AutoModelForCausalLM

    family = FAMILIES[family_name]
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    model = AutoModelForCausalLM.from_config(_config(family), dtype=torch.float32)
    model.save_pretrained(out)
    _tokenizer(out, family)
    shutil.copy(BUNDLED / "generation_config.json", out / "generation_config.json")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(make_real_vocab_model(args.out, args.family))


if __name__ == "__main__":
    main()
