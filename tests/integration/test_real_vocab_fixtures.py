"""Real vocabularies (151,936 for Qwen3, 128,256 for Llama 3) through the trainer and the
engine: the trainer trains an adapter on a real-vocabulary fixture (`trainer.bundled.fixtures`)
with its chunked loss head, and vLLM serves the fixture and loads that adapter at runtime, the
adapter changing what it answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from transformers import AutoTokenizer

from app.sampler.launcher import EngineProcess, LoraSlots
from tests.helpers.engine import READY_TIMEOUT_S
from trainer.batch import Batch
from trainer.bundled.fixtures import FAMILIES, make_real_vocab_model
from trainer.config import LoraSettings, TrainerConfig
from trainer.engine import TrainingEngine
from trainer.objective import accumulate, sft_batch

CHAT = [
    {"role": "user", "content": "What is 12 times 5?"},
    {"role": "assistant", "content": "60"},
]


def _train_adapter(model: Path, out: Path) -> dict[str, float]:
    """Three optimiser steps of SFT at the fixture's vocabulary; the adapter in PEFT form."""
    engine = TrainingEngine(device="cpu", config=TrainerConfig(base_model_dir=model))
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    engine.create_adapter("tuned", LoraSettings(8, 16, ("q_proj", "v_proj")), seed=0)
    batch: Batch = sft_batch(tokenizer, [{"messages": CHAT}])
    losses = []
    for _ in range(3):
        losses.append(accumulate(engine, "tuned", {"sft": batch}, {"sft": 1.0})["sft"])
        engine.optim_step("tuned", 5e-2)
    engine.save_adapter("tuned", out)
    return {"vocab": engine.head.vocab, "first": losses[0], "last": losses[-1]}


def _logprobs(url: str, model: str, prompt: list[int]) -> list[Any]:
    body = {"model": model, "prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 1}
    reply = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["choices"][0]["logprobs"]["token_logprobs"])


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_real_vocabulary_trains_and_serves_with_runtime_adapters(
    family: str, tmp_path: Path
) -> None:
    model = make_real_vocab_model(tmp_path / family, family)
    trained = _train_adapter(model, tmp_path / "adapter")
    print(trained)  # shown when an assertion fails
    assert trained["vocab"] == FAMILIES[family].vocab_size
    assert trained["last"] < trained["first"]
    process = EngineProcess(
        model,
        served_model_name="fixture",
        loras=LoraSlots(max_loras=2, max_lora_rank=16),
        log_path=tmp_path / "engine.log",
    )
    process.start()
    try:
        process.wait_ready(READY_TIMEOUT_S)
        loaded = httpx.post(
            f"{process.url}/v1/load_lora_adapter",
            json={"lora_name": "tuned", "lora_path": str(tmp_path / "adapter")},
            timeout=120,
        )
        assert loaded.status_code == 200, loaded.text
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
        prompt = tokenizer.apply_chat_template(CHAT[:1], add_generation_prompt=True, tokenize=True)
        ids = prompt if isinstance(prompt, list) else list(prompt["input_ids"])
        base, tuned = _logprobs(process.url, "fixture", ids), _logprobs(process.url, "tuned", ids)
        print({"base": base, "tuned": tuned})
        assert len(base) == len(tuned) == 6
        assert base != tuned  # the adapter is applied
        # A chat with tools through the OpenAI client: the family's parsers take whatever the
        # random weights say (ids across the whole vocabulary decode) without an error.
        client = OpenAI(base_url=process.api_base, api_key="unused")
        reply = client.chat.completions.create(
            model="tuned",
            messages=[{"role": "user", "content": "What is 12 times 5?"}],
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "calculator",
                        "parameters": {
                            "type": "object",
                            "properties": {"expression": {"type": "string"}},
                        },
                    },
                }
            ],
            max_tokens=16,
            temperature=1.0,
            seed=3,
        )
        assert reply.choices[0].finish_reason in ("length", "stop", "tool_calls")
    finally:
        process.stop()
