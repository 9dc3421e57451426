"""Adapters are standard PEFT files: PEFT loads ours and computes what our layers compute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.helpers.tiny import (
    SMALL_LORA,
    EngineFactory,
    make_tiny_model,
    random_batch,
    write_random_parent,
)
from trainer.config import LoraSettings
from trainer.errors import AdapterMismatchError
from trainer.losses import LossSpec, token_logprobs


def _peft_logprobs(model: torch.nn.Module, ids: list[list[int]]) -> list[list[float]]:
    out = []
    with torch.no_grad():
        for row in ids:
            x = torch.tensor([row])
            out.append(token_logprobs(model(input_ids=x).logits, x)[0].tolist())
    return out


def test_saved_adapter_is_standard_peft(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = make_engine()
    engine.create_adapter("a", SMALL_LORA, seed=1)
    engine.forward_backward([("a", random_batch(1))], LossSpec("sft"))
    engine.optim_step("a", lr=1e-2)
    engine.save_adapter("a", tmp_path / "v1")
    cfg = json.loads((tmp_path / "v1" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "CAUSAL_LM"
    assert (cfg["r"], cfg["lora_alpha"]) == (4, 8.0)
    assert sorted(cfg["target_modules"]) == sorted(SMALL_LORA.target_modules)
    assert cfg["base_model_name_or_path"] == str(engine.base.model_dir)
    tensors = load_file(str(tmp_path / "v1" / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    assert tensors[key].shape == (4, 64)
    assert tensors[key.replace("lora_A", "lora_B")].shape == (64, 4)
    assert len(tensors) == 2 * 7 * 2  # two layers, seven modules, A and B


def test_peft_computes_what_the_engine_computes(
    make_engine: EngineFactory, tiny_model_dir: Path, tmp_path: Path
) -> None:
    engine = make_engine()
    parent = write_random_parent(engine, tmp_path / "p", SMALL_LORA, seed=5)
    engine.create_adapter("a", SMALL_LORA, parent_dir=parent)
    for _ in range(2):  # train a little so the saved weights are the engine's own
        engine.forward_backward([("a", random_batch(2))], LossSpec("sft"))
        engine.optim_step("a", lr=1e-2)
    engine.save_adapter("a", tmp_path / "v2")
    peft_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(tmp_path / "v2")
    ).eval()
    batch = random_batch(7, rows=3)
    ours = engine.sample_logprobs("a", batch)
    theirs = _peft_logprobs(peft_model, batch.input_ids)
    base = engine.sample_logprobs(None, batch)
    for o, t, b in zip(ours, theirs, base, strict=True):
        torch.testing.assert_close(torch.tensor(o), torch.tensor(t), rtol=1e-5, atol=1e-5)
        assert max(abs(x - y) for x, y in zip(o, b, strict=True)) > 1e-3  # the adapter matters


def test_engine_loads_an_adapter_peft_made(
    make_engine: EngineFactory, tiny_model_dir: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config)
    peft_model.save_pretrained(str(tmp_path / "peft"))
    engine = make_engine()
    lora = LoraSettings(rank=8, alpha=16.0, target_modules=("q_proj", "down_proj"))
    engine.create_adapter("p", lora, parent_dir=tmp_path / "peft")
    batch = random_batch(4, rows=2)
    ours = engine.sample_logprobs("p", batch)
    theirs = _peft_logprobs(peft_model.eval(), batch.input_ids)
    for o, t in zip(ours, theirs, strict=True):
        torch.testing.assert_close(torch.tensor(o), torch.tensor(t), rtol=1e-5, atol=1e-5)
    adopted = engine.create_adapter("p2", parent_dir=tmp_path / "peft")  # settings from parent
    assert adopted.lora == lora


def test_adapters_that_do_not_fit_are_refused(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = make_engine()
    with pytest.raises(AdapterMismatchError, match="c_attn"):
        engine.create_adapter("x", LoraSettings(rank=4, target_modules=("c_attn",)))
    parent = write_random_parent(engine, tmp_path / "r4", SMALL_LORA, seed=1)
    with pytest.raises(AdapterMismatchError, match="rank"):
        engine.create_adapter("x", LoraSettings(rank=8, alpha=8.0), parent_dir=parent)
    # A parent trained on a wider base: same names, other shapes.
    from trainer.config import TrainerConfig
    from trainer.engine import TrainingEngine

    wide = TrainingEngine(
        device="cpu", config=TrainerConfig(base_model_dir=make_tiny_model(tmp_path / "w", 96))
    )
    wide_parent = write_random_parent(wide, tmp_path / "wide", SMALL_LORA, seed=2)
    with pytest.raises(AdapterMismatchError, match="shape"):
        engine.create_adapter("x", SMALL_LORA, parent_dir=wide_parent)
    cfg_path = parent / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(AdapterMismatchError, match="use_dora"):
        engine.create_adapter("x", SMALL_LORA, parent_dir=parent)
    assert not engine.has_adapter("x")
