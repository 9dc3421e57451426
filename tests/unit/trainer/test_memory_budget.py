"""A memory budget sets the trainer's tokens per pass from the model's shape, and a budget or a
GPU split that cannot fit is refused at startup with the settings named (`trainer.memory`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.config import TrainerConfig
from trainer.engine import TrainingEngine
from trainer.memory import (
    GIB,
    MARGIN,
    MemoryBudgetError,
    Shape,
    bytes_per_token,
    tokens_per_pass,
    trainer_share,
)

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results" / "trainer_memory.json"


def test_the_activation_estimate_follows_the_measured_growth_per_token() -> None:
    """bench/trainer_memory.py measured peak memory at 2,048 and 8,192 tokens a pass on its
    model (Qwen3 architecture, 2 layers, hidden 64, 2 heads of 64, 1 KV head, MLP 128, rows of
    512) at the 506-token vocabulary, where the whole head costs little per token."""
    cells = json.loads(RESULTS.read_text())["cells"]
    peak = {
        c["tokens"]: c["peak_mb"][0] for c in cells if c["vocab"] == 506 and c["head"] == "whole"
    }
    measured = (peak[8192] - peak[2048]) * 2**20 / (8192 - 2048)
    shape = Shape(layers=2, hidden=64, kv=64, intermediate=128, heads=2)
    estimate = bytes_per_token(shape, 4, checkpointing=False, row_tokens=512, full_attention=True)
    head = 506 * 4 * 3  # the whole head's logits, softmax and gradient per token
    print({"measured": measured, "estimate": estimate, "head": head})
    assert abs(estimate + head - measured) <= 0.25 * measured
    assert estimate * MARGIN >= measured - head


def test_a_budget_sets_the_tokens_per_pass(tiny_model_dir: Path) -> None:
    def engine(budget_mb: int, checkpointing: bool = False) -> TrainingEngine:
        config = TrainerConfig(
            base_model_dir=tiny_model_dir,
            device="cpu",
            memory_budget_bytes=budget_mb * 2**20,
            logit_chunk_bytes=2**20,
            gradient_checkpointing=checkpointing,
        )
        return TrainingEngine(config=config)

    small, large = engine(64), engine(256)
    config = small.base.model.config
    per_token = bytes_per_token(
        Shape.of(config),
        4,
        checkpointing=False,
        row_tokens=min(config.max_position_embeddings, 2048),
        full_attention=True,
    )
    weights = sum(p.numel() * p.element_size() for p in small.base.model.parameters())
    vocab = small.head.vocab
    assert small.max_tokens_per_pass == tokens_per_pass(
        64 * 2**20, weights, 2**20, per_token, vocab
    )
    assert large.max_tokens_per_pass > 3 * small.max_tokens_per_pass
    # Checkpointing keeps one hidden state a layer: more tokens in the same budget.
    assert engine(64, checkpointing=True).max_tokens_per_pass > small.max_tokens_per_pass
    # An explicit tokens-per-pass setting wins over the budget.
    fixed = TrainerConfig(
        base_model_dir=tiny_model_dir,
        device="cpu",
        memory_budget_bytes=64 * 2**20,
        max_tokens_per_pass=512,
    )
    assert TrainingEngine(config=fixed).max_tokens_per_pass == 512


def test_a_budget_that_cannot_hold_the_model_and_a_pass_is_refused(tiny_model_dir: Path) -> None:
    config = TrainerConfig(base_model_dir=tiny_model_dir, device="cpu", memory_budget_bytes=2**20)
    with pytest.raises(MemoryBudgetError, match="CLORA_TRAINER_MEMORY_GB=0.00 cannot hold"):
        TrainingEngine(config=config)


def test_a_gpu_split_that_cannot_fit_is_refused() -> None:
    total = 80 * GIB
    # Unset: what the engine leaves, less 5% for the CUDA context.
    assert trainer_share(total, 0.6, None) == int(total * 0.35)
    assert trainer_share(total, 0.0, 20 * GIB) == 20 * GIB
    with pytest.raises(MemoryBudgetError) as refused:
        trainer_share(total, 0.6, 40 * GIB)
    message = str(refused.value)
    assert "CLORA_TRAINER_MEMORY_GB=40.0" in message and "CLORA_ENGINE_GPU_SHARE=0.6" in message
    assert "28.0 GB" in message
    with pytest.raises(MemoryBudgetError, match="not in"):
        trainer_share(total, 1.0, None)


def test_the_budget_settings_reach_the_daemons_engine(tiny_model_dir: Path) -> None:
    from app.core.config import Settings
    from app.training.daemon import trainer_config

    settings = Settings(
        base_model_path=tiny_model_dir,
        trainer_device="cpu",
        trainer_memory_gb=0.25,
        engine_gpu_share=0.5,
    )
    engine = TrainingEngine(config=trainer_config(settings))
    assert engine.memory_budget == GIB // 4 and engine.config.engine_gpu_share == 0.5
    assert engine.max_tokens_per_pass != 1024  # derived from the budget, not the CPU default


def test_an_empty_budget_from_compose_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.config import Settings

    monkeypatch.setenv(
        "CLORA_TRAINER_MEMORY_GB", ""
    )  # an unset `.env` variable, as compose passes it
    assert Settings().trainer_memory_gb is None
    monkeypatch.setenv("CLORA_TRAINER_MEMORY_GB", "12")
    assert Settings().trainer_memory_gb == 12.0


def test_the_sizing_table_of_trainer_md_is_this_arithmetic() -> None:
    """docs/TRAINER.md quotes tokens per pass for two real shapes on an 80 GB GPU with vLLM at
    0.6; they are what `trainer.memory` computes (bf16 weights: 8.0 and 16.1 GB)."""
    shapes = {
        "Qwen3-4B": (Shape(36, 2560, 1024, 9728, 32), 8.0e9, 151_936),
        "Llama-3.1-8B": (Shape(32, 4096, 1024, 14336, 32), 16.1e9, 128_256),
    }
    budget = trainer_share(80 * GIB, 0.6, None)
    doc = (RESULTS.parents[2] / "docs" / "TRAINER.md").read_text()
    for name, (shape, weights, vocab) in shapes.items():
        figures = []
        for checkpointing in (False, True):
            per_token = bytes_per_token(
                shape, 2, checkpointing=checkpointing, row_tokens=4096, full_attention=False
            )
            figures.append(tokens_per_pass(budget, int(weights), 256 * 2**20, per_token, vocab))
        print(name, figures)
        row = next(line for line in doc.splitlines() if line.startswith(f"| {name} "))
        assert [int(c.replace(",", "")) for c in row.split("|")[2:4]] == figures, row
