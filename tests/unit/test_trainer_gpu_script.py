"""The prepared GPU benchmark runs its whole code path (here on CPU, with a tiny Qwen3 shape)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_trainer_gpu_script_measures_both_modes_and_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "trainer_gpu.json"
    cmd = [
        sys.executable,
        str(REPO / "bench" / "trainer_gpu.py"),
        *("--device", "cpu", "--tiny", "--ranks", "16", "--adapters", "1", "2"),
        *("--workloads", "small", "--rounds", "1", "--out", str(out)),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["meta"]["base"]["family"] in ("Qwen3", "Qwen2")
    assert data["meta"]["stopped_early"] is False
    rows = data["results"]
    assert [(r["rank"], r["workload"], r["adapters"]) for r in rows] == [
        (16, "small", 1),
        (16, "small", 2),
    ]
    for r in rows:
        assert r["sequential_s"] > 0 and r["multiplexed_s"] > 0
        assert r["speedup"] == r["sequential_s"] / r["multiplexed_s"]


def test_a_cell_that_runs_out_of_memory_is_recorded_and_the_grid_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One cell's out-of-memory error (injected: this CPU never runs out) is written as that
    cell's result, and the cells after it are still measured."""
    sys.path.insert(0, str(REPO))
    import torch

    from bench import trainer_gpu

    measure = trainer_gpu.timed_rounds

    def first_cell_runs_out(engines, work, rounds):  # type: ignore[no-untyped-def]
        if len(work) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return measure(engines, work, rounds)

    monkeypatch.setattr(trainer_gpu, "timed_rounds", first_cell_runs_out)
    out = tmp_path / "trainer_gpu.json"
    argv = ["trainer_gpu.py", "--device", "cpu", "--tiny", "--ranks", "16", "--adapters", "1"]
    argv += ["2", "--workloads", "small", "--rounds", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    trainer_gpu.main()
    rows = json.loads(out.read_text())["results"]
    assert [r["adapters"] for r in rows] == [1, 2]
    assert "injected" in rows[0]["out_of_memory"] and "speedup" not in rows[0]
    assert rows[1]["speedup"] > 0 and "out_of_memory" not in rows[1]


@pytest.mark.slow
def test_the_prepared_gpu_cycle_trains_an_adapter_peft_loads(tmp_path: Path) -> None:
    """bench/gpu_cycle.py's whole code path on CPU (2 steps): the cycle's objective on the
    Qwen3 real-vocabulary fixture, an adapter that peft loads and that changes the logits."""
    out = tmp_path / "gpu_cycle.json"
    cmd = [sys.executable, str(REPO / "bench" / "gpu_cycle.py"), "--device", "cpu"]
    done = subprocess.run(
        [*cmd, "--steps", "2", "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text())
    print(data)
    assert data["steps"] == 2 and data["meta"]["tokens_per_pass"] > 0
    assert set(data["loss_first"]) >= {"sft", "dpo", "kl"}
    assert data["loss_last"]["sft"] < data["loss_first"]["sft"]
    assert data["adapter_logit_change"] > 0
