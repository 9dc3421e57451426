"""Pytest plugin: tiny random Qwen2 models, tokenizers, engines and batches for the trainer's
tests (fixtures `tiny_model_dir`, `tokenizer`, `make_engine`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from trainer.batch import Batch
from trainer.config import LoraSettings, TrainerConfig
from trainer.engine import TrainingEngine

torch.set_num_threads(1)  # the trainer's tests are many tiny steps; threads only add overhead

VOCAB = 300
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


SMALL_LORA = LoraSettings(rank=4, alpha=8.0)


def make_tiny_model(path: Path, hidden: int = 64, seed: int = 0) -> Path:
    """Save a random 2-layer Qwen2 (and, for the default size, a tokenizer) into `path`."""
    cfg = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    return path


def make_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with ChatML special tokens and chat template, saved to path."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=290,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = ["the user asks and the assistant answers with a tool call"] * 20
    tok.train_from_iterator(corpus, trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    hf.chat_template = CHAT_TEMPLATE
    hf.save_pretrained(path)
    return hf


EngineFactory = Callable[..., TrainingEngine]


def random_batch(
    seed: int, rows: int = 3, length: int = 10, prompt: int = 3, vocab: int = VOCAB
) -> Batch:
    """Rows of random tokens of varying length; the first `prompt` tokens are not trained."""
    gen = torch.Generator().manual_seed(seed)
    ids = [
        torch.randint(0, vocab, (length - (i % 3),), generator=gen).tolist() for i in range(rows)
    ]
    mask = [[0.0] * prompt + [1.0] * (len(r) - prompt) for r in ids]
    return Batch(input_ids=ids, loss_mask=mask)


def pg_batch(seed: int, rows: int = 4, length: int = 10) -> Batch:
    """A policy-gradient batch: rewards per row and off-policy sampling logprobs per token."""
    base = random_batch(seed, rows, length)
    gen = torch.Generator().manual_seed(seed + 1000)
    samp = [(-6.0 + torch.rand(len(r), generator=gen)).tolist() for r in base.input_ids]
    rewards = torch.rand(rows, generator=gen).tolist()
    return base.with_fields(sampling_logprobs=samp, rewards=rewards)


def dpo_batch(seed: int, pairs: int = 2, length: int = 10) -> Batch:
    """A preference batch: chosen rows plus rejected rows sharing their prompt."""
    chosen = random_batch(seed, pairs, length)
    other = random_batch(seed + 500, pairs, length + 1)
    rejected = [c[:3] + o[3:] for c, o in zip(chosen.input_ids, other.input_ids, strict=True)]
    return chosen.with_fields(rejected_input_ids=rejected, rejected_loss_mask=other.loss_mask)


def write_random_parent(engine: TrainingEngine, out: Path, lora: LoraSettings, seed: int) -> Path:
    """A PEFT adapter dir with random non-zero A and B (so every LoRA matrix gets gradients)."""
    tmp_id = f"__parent{seed}"
    st = engine.create_adapter(tmp_id, lora, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    for t in st.weights.values():
        t.copy_(0.2 * torch.randn(t.shape, generator=gen))
    engine.save_adapter(tmp_id, out)
    engine.drop_adapter(tmp_id)
    return out


def snapshot(engine: TrainingEngine, adapter_id: str) -> dict[str, torch.Tensor]:
    """Clones of every tensor of an adapter's state, keyed `<group>/<name>`."""
    st = engine.store.get(adapter_id)
    from trainer.adapter_store import TENSOR_GROUPS

    return {f"{g}/{n}": t.clone() for g in TENSOR_GROUPS for n, t in st.group(g).items()}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-qwen2")
    make_tiny_model(path)
    make_tokenizer(path)
    return path


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(tiny_model_dir)


@pytest.fixture
def make_engine(tiny_model_dir: Path) -> EngineFactory:
    """Engines on the tiny model: make_engine(multiplex=, dtype=, max_tokens=, merge_below=)."""

    def build(
        multiplex: bool = True,
        dtype: torch.dtype = torch.float32,
        max_tokens: int | None = 4096,
        merge_below: int | None = None,
    ) -> TrainingEngine:
        cfg = TrainerConfig(
            base_model_dir=tiny_model_dir,
            multiplex=multiplex,
            max_tokens_per_pass=max_tokens,
            merge_below_tokens=merge_below,
        )
        return TrainingEngine(device="cpu", dtype=dtype, config=cfg)

    return build
