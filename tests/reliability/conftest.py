"""Reliability tests: kill -9, outages, fuzzing and soak; their figures go to
bench/results/reliability.json only when CLORA_WRITE_FIGURES=1."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder `reliability`, so `-m reliability` selects the tier."""
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)
