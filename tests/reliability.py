"""Figures the reliability suite produces for docs/RELIABILITY.md.

Each test that measures something calls `record(section, figures)`; the figures are merged
into `bench/results/reliability.json` (one key per section, replaced on each run), which
`python -m bench.reliability` turns into the tables of docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

RESULTS = Path(
    os.environ.get(
        "CLORA_RELIABILITY_OUT",
        Path(__file__).resolve().parents[1] / "bench" / "results" / "reliability.json",
    )
)


def record(section: str, figures: dict[str, Any]) -> None:
    """Replace ``section`` in the results file with ``figures`` (plus when it was measured)."""
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
