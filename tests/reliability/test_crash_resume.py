"""A training process killed with SIGKILL mid-job resumes and ends where an uninterrupted run ends.

Library level: the job runner is `crash_job.py` (checkpoint after every step, step ids). The
durable-queue service on top of it is tested with the service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import crash_job

REPO = Path(__file__).resolve().parents[2]
STEPS = 5


def _start(*args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tests.helpers.crash_job", *map(str, args)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)


def _run(*args: object) -> None:
    proc = _start(*args)
    proc.communicate(timeout=300)
    assert proc.returncode == 0


def _kill_when(proc: subprocess.Popen[str], marker: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == marker:
            break
    else:
        pytest.fail(f"job ended before printing {marker!r}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("where", ["before_save", "after_save", "anywhere"])
def test_killed_job_resumes_to_the_same_result(
    tiny_model_dir: Path, tmp_path: Path, where: str
) -> None:
    reference = tmp_path / "uninterrupted.safetensors"
    crash_job.main([str(tiny_model_dir), str(tmp_path / "ckpt_ref"), str(reference), str(STEPS)])
    resumed = tmp_path / "resumed.safetensors"
    ckpt = tmp_path / "ckpt"
    if where == "anywhere":  # kill as soon as step 1 is durable: somewhere inside step 2
        proc = _start(tiny_model_dir, ckpt, resumed, STEPS)
        _kill_when(proc, "STEP 1")
    else:  # kill at a known point of step 2
        proc = _start(tiny_model_dir, ckpt, resumed, STEPS, 2, where)
        _kill_when(proc, "PAUSED 2")
    assert not resumed.exists()
    _run(tiny_model_dir, ckpt, resumed, STEPS)
    want, got = load_file(str(reference)), load_file(str(resumed))
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
