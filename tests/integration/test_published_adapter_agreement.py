"""A version the trainer publishes loads in vLLM and decodes exactly like transformers + PEFT."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from app.sampler.launcher import EngineProcess
from tests.helpers.engine import MODEL_DIR
from trainer.batch import encode_chat
from trainer.config import LoraSettings
from trainer.engine import TrainingEngine
from trainer.losses import LossSpec

pytestmark = pytest.mark.slow

PROMPTS = ["What is 3 plus 4?", "Tom has 12 apples and eats 5. How many are left?", "hello"]


def test_trained_adapter_agrees_between_vllm_and_peft(
    engine: EngineProcess, tmp_path: Path
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    trainer = TrainingEngine(MODEL_DIR)
    trainer.create_adapter("agree", LoraSettings(rank=8, alpha=16), seed=0)
    chats = [
        [{"role": "user", "content": p}, {"role": "assistant", "content": "The answer is 42."}]
        for p in PROMPTS
    ]
    rows = [encode_chat(tokenizer, c) for c in chats]
    from trainer.batch import Batch

    batch = Batch(input_ids=[r[0] for r in rows], loss_mask=[r[1] for r in rows])
    for _ in range(5):
        trainer.forward_backward([("agree", batch)], LossSpec(kind="sft"))
        trainer.optim_step("agree", 5e-3)
    out = tmp_path / "adapter"
    trainer.save_adapter("agree", out)

    resp = httpx.post(
        f"{engine.url}/v1/load_lora_adapter",
        json={"lora_name": "agree-test", "lora_path": str(out)},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    base = AutoModelForCausalLM.from_pretrained(
        MODEL_DIR, local_files_only=True, dtype=torch.float32
    )
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    changed = 0
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        served = httpx.post(
            f"{engine.url}/v1/chat/completions",
            json={
                "model": "agree-test",
                "messages": messages,
                "temperature": 0,
                "max_tokens": 12,
                "return_token_ids": True,
            },
            timeout=60,
        ).json()
        served_ids = served["choices"][0]["token_ids"]
        ids = torch.tensor([served["prompt_token_ids"]])
        with torch.no_grad():
            reference = peft_model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=12,
                eos_token_id=end,
                pad_token_id=end,
            )
        assert served_ids == reference[0, ids.shape[1] :].tolist()
        with torch.no_grad(), peft_model.disable_adapter():
            plain = peft_model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=12,
                eos_token_id=end,
                pad_token_id=end,
            )
        changed += int(plain[0].tolist() != reference[0].tolist())
    assert changed >= 1, "training did not change any output; the comparison proves nothing"
