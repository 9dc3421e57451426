"""A training job run as its own process by test_crash_resume: checkpoints after every step.

Usage: crash_job.py MODEL_DIR CKPT_DIR OUT_FILE STEPS [PAUSE_AT] [PAUSE_WHERE]

On start it resumes from CKPT_DIR when a checkpoint is there (steps already applied are
skipped by their ids), runs the remaining steps, and writes the final master weights to
OUT_FILE. With PAUSE_AT the process announces that step and sleeps so the test can kill -9 it
at a known point: PAUSE_WHERE "before_save" (step applied in memory, not yet durable) or
"after_save".
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.helpers.tiny import SMALL_LORA, random_batch
from trainer.checkpoint import STATE_FILE
from trainer.config import TrainerConfig
from trainer.engine import TrainingEngine
from trainer.losses import LossSpec


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    model_dir, ckpt, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    steps = int(argv[3])
    pause_at = int(argv[4]) if len(argv) > 4 else -1
    pause_where = argv[5] if len(argv) > 5 else "after_save"
    engine = TrainingEngine(device="cpu", config=TrainerConfig(base_model_dir=model_dir))
    if (ckpt / STATE_FILE).exists():
        engine.load_state("a", ckpt)
    else:
        engine.create_adapter("a", SMALL_LORA, seed=1)
    state = engine.store.get("a")
    applied = -1 if state.last_step_id is None else int(state.last_step_id.split("/")[1])
    for k in range(applied + 1, steps):
        engine.forward_backward([("a", random_batch(k, rows=4))], LossSpec("sft"))
        engine.optim_step("a", lr=1e-2, step_id=f"job/{k}")
        if k == pause_at and pause_where == "before_save":
            print(f"PAUSED {k}", flush=True)
            time.sleep(600)
        engine.save_state("a", ckpt)
        print(f"STEP {k}", flush=True)
        if k == pause_at:
            print(f"PAUSED {k}", flush=True)
            time.sleep(600)
    save_file({n: t.contiguous() for n, t in state.master.items()}, str(out))


if __name__ == "__main__":
    main(sys.argv[1:])
