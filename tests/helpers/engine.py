"""Pytest plugin: one real vLLM engine on the bundled model, shared by the whole session.

Use it from a test module or conftest with ``pytest_plugins = ["tests.helpers.engine"]``
and request the ``engine`` fixture (an :class:`EngineProcess` with ``url``, ``api_base``
and ``served_model_name``) or ``bundled_model_dir``. Tests that use it should be marked ``@pytest.mark.slow``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.sampler.launcher import EngineProcess, LoraSlots

#: The bundled model; CLORA_TEST_MODEL_DIR points the tests at another build of it.
MODEL_DIR = Path(
    os.environ.get(
        "CLORA_TEST_MODEL_DIR", Path(__file__).resolve().parents[2] / "weights" / "clora-tiny"
    )
)
SERVED_MODEL_NAME = "clora-tiny"
#: Cold start on the shared 2-core CPU: importing vLLM alone takes 8-10 s, a start about a
#: minute, and several times that beside a second suite. The wait ends as soon as the engine
#: answers, or at once when its process exits (`EngineProcess.wait_ready`), so a generous
#: bound costs nothing on a quiet machine.
READY_TIMEOUT_S = 600.0


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    """The bundled model directory (``weights/clora-tiny`` unless overridden)."""
    return MODEL_DIR


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """A running vLLM OpenAI server on the bundled model (LoRA enabled, hermes parser)."""
    log_path = tmp_path_factory.mktemp("engine") / "vllm.log"
    process = EngineProcess(
        model_dir=MODEL_DIR,
        loras=LoraSlots(max_loras=4, max_lora_rank=16, max_cpu_loras=8),
        served_model_name=SERVED_MODEL_NAME,
        log_path=log_path,
    )
    process.start()
    try:
        process.wait_ready(READY_TIMEOUT_S)
        yield process
    finally:
        process.stop()
