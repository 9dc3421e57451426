"""Unit tests: pure logic and the training engine on tiny random models; no engine, no
gateway (`make test-fast` runs this tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder `unit`, so `-m unit` selects the tier."""
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.unit)
