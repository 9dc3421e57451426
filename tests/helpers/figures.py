"""Figures the reliability suite produces for docs/RELIABILITY.md.

Each test that measures something calls `record(section, figures)`. With
`CLORA_WRITE_FIGURES=1` the figures are merged into `bench/results/reliability.json` (one key
per section, replaced on each run), which `python -m bench.reliability` turns into the tables of
docs/RELIABILITY.md, and the UI test writes its screenshots to docs/screenshots; without it a
test run writes no tracked file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

WRITE_FIGURES = os.environ.get("CLORA_WRITE_FIGURES") == "1"
"""Whether this run writes figures and screenshots into tracked files."""
RESULTS = Path(
    os.environ.get(
        "CLORA_RELIABILITY_OUT",
        Path(__file__).resolve().parents[2] / "bench" / "results" / "reliability.json",
    )
)


def record(section: str, figures: dict[str, Any]) -> None:
    """Replace ``section`` in the results file with ``figures`` (plus when it was measured),
    when the run asks for figures (`WRITE_FIGURES`)."""
    if not WRITE_FIGURES:
        return
    data: dict[str, Any] = {}
    if RESULTS.is_file():
        try:
            data = json.loads(RESULTS.read_text())
        except json.JSONDecodeError:
            data = {}
    data[section] = {
        **figures,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(RESULTS)
