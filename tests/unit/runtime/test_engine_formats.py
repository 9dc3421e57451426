"""The engine reads each base model in its family's formats: dtype, tool calls, reasoning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.sampler.formats import engine_formats
from app.sampler.launcher import EngineProcess

BUNDLED = Path(__file__).resolve().parents[3] / "weights" / "clora-tiny"


def _model(tmp_path: Path, model_type: str) -> Path:
    folder = tmp_path / model_type
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


def _flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


@pytest.mark.parametrize(
    "family, tools, reasoning",
    [
        ("qwen2", "hermes", None),
        ("qwen3", "hermes", "qwen3"),
        ("llama", "llama3_json", None),
        ("mistral", "mistral", None),
        ("gpt_bigcode", "hermes", None),
    ],
)
def test_the_model_family_picks_the_parsers(
    tmp_path: Path, family: str, tools: str, reasoning: str | None
) -> None:
    command = EngineProcess(_model(tmp_path, family), port=1).command()
    assert _flag(command, "--tool-call-parser") == tools
    assert _flag(command, "--reasoning-parser") == reasoning
    assert _flag(command, "--dtype") == "float32"  # the CPU engine


def test_settings_win_and_an_accelerator_gets_the_models_dtype(tmp_path: Path) -> None:
    qwen3 = _model(tmp_path, "qwen3")
    gpu = engine_formats(qwen3, accelerator=True)
    assert (gpu.dtype, gpu.tool_parser, gpu.reasoning_parser) == ("auto", "hermes", "qwen3")
    chosen = engine_formats(
        qwen3, dtype="bfloat16", tool_parser="pythonic", reasoning_parser="", accelerator=True
    )
    assert (chosen.dtype, chosen.tool_parser, chosen.reasoning_parser) == (
        "bfloat16",
        "pythonic",
        None,
    )
    command = EngineProcess(qwen3, port=1, formats=chosen).command()
    assert _flag(command, "--dtype") == "bfloat16" and "--reasoning-parser" not in command


def test_the_bundled_model_keeps_what_it_was_started_with() -> None:
    command = EngineProcess(BUNDLED, port=1).command()
    assert (_flag(command, "--dtype"), _flag(command, "--tool-call-parser")) == (
        "float32",
        "hermes",
    )
    assert "--reasoning-parser" not in command
