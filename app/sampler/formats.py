"""How vLLM should read a base model: its dtype, tool-call format and reasoning format.

The embedded engine used to be started with float32 and the Hermes tool parser whatever the
model. A setting wins when given (`CLORA_ENGINE_DTYPE`, `CLORA_ENGINE_TOOL_PARSER`,
`CLORA_ENGINE_REASONING_PARSER`); otherwise the model's family (``model_type`` in its
``config.json``) decides, with vLLM's parser names:

| family (`model_type`) | tool calls | reasoning |
|---|---|---|
| qwen2, qwen2_moe (and the bundled model) | hermes (`<tool_call>` JSON) | none |
| qwen3, qwen3_moe | hermes | qwen3 (`<think>` blocks) |
| llama | llama3_json | none |
| mistral, mixtral | mistral | none |
| anything else | hermes | none |

The dtype is float32 on the CPU (vLLM's CPU kernels and the bundled model's tests are fp32) and
``auto`` (the model's own, bf16 for today's releases) with an accelerator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

TOOL_PARSERS = {
    "qwen2": "hermes",
    "qwen2_moe": "hermes",
    "qwen3": "hermes",
    "qwen3_moe": "hermes",
    "llama": "llama3_json",
    "mistral": "mistral",
    "mixtral": "mistral",
}
REASONING_PARSERS = {"qwen3": "qwen3", "qwen3_moe": "qwen3"}


@dataclass(frozen=True)
class EngineFormats:
    dtype: str
    tool_parser: str
    reasoning_parser: str | None


def model_type(model_dir: Path) -> str | None:
    try:
        return str(json.loads((model_dir / "config.json").read_text()).get("model_type") or "")
    except (OSError, ValueError):
        return None


def engine_formats(
    model_dir: Path,
    *,
    dtype: str | None = None,
    tool_parser: str | None = None,
    reasoning_parser: str | None = None,
    accelerator: bool = False,
) -> EngineFormats:
    """The settings given, and the model family's choice for the rest (see the module doc);
    ``reasoning_parser=""`` turns reasoning parsing off whatever the family."""
    family = model_type(model_dir) or ""
    reasoning = REASONING_PARSERS.get(family) if reasoning_parser is None else reasoning_parser
    return EngineFormats(
        dtype=dtype or ("auto" if accelerator else "float32"),
        tool_parser=tool_parser or TOOL_PARSERS.get(family, "hermes"),
        reasoning_parser=reasoning or None,
    )
