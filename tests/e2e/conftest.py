"""End-to-end tests: the whole loop as a user drives it (learning cycles, the web UI in
Chromium, `clora up`)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder `e2e`, so `-m e2e` selects the tier."""
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)
