"""The prepared GPU benchmark runs its whole code path (here on CPU, with a tiny Qwen3 shape)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
