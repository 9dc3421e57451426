"""Malformed adapters are refused before anything lands in the adapter store."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from sqlalchemy.orm import Session

from app.adapters.service import promote, publish, verify
from app.adapters.storage import ORPHANS, checksum, copy_from, write_version_folder
from app.agents.schemas import AgentIn
from app.agents.service import create_agent
from app.core.config import get_settings
from app.core.errors import InvalidRequest
from app.models.enums import AdapterStatus
from app.tenants.service import create_tenant
from tests.helpers.adapters import random_adapter


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_adapter(tmp_path_factory.mktemp("good"), seed=1)


def _variant(good: Path, change: Callable[[Path], None]) -> Callable[[Path], None]:
    def write(dest: Path) -> None:
        copy_from(good)(dest)
        change(dest)

    return write


def _config(**patch: object) -> Callable[[Path], None]:
    def change(dest: Path) -> None:
        config = json.loads((dest / "adapter_config.json").read_text())
        config.update(patch)
        (dest / "adapter_config.json").write_text(json.dumps(config))

    return change


def _weights(
    edit: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
) -> Callable[[Path], None]:
    def change(dest: Path) -> None:
        from safetensors.torch import load_file

        save_file(
            edit(load_file(dest / "adapter_model.safetensors")), dest / "adapter_model.safetensors"
        )

    return change


def _nan(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    name = next(iter(tensors))
    tensors[name] = tensors[name].clone()
    tensors[name][0, 0] = float("nan")
    return tensors


def _wrong_rank(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    name = next(n for n in tensors if "lora_A" in n)
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1])
    return tensors


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "no weights": (lambda d: (d / "adapter_model.safetensors").unlink(), "missing"),
    "no config": (lambda d: (d / "adapter_config.json").unlink(), "missing"),
    "config not JSON": (lambda d: (d / "adapter_config.json").write_text("{oops"), "not JSON"),
    "not a LoRA": (_config(peft_type="PREFIX_TUNING"), "not a LoRA"),
    "rank too large": (_config(r=4096), "rank"),
    "rank not a number": (_config(r="8"), "rank"),
    "weights not safetensors": (
        lambda d: (d / "adapter_model.safetensors").write_bytes(b"\x00" * 64),
        "safetensors",
    ),
    "weights empty": (_weights(lambda t: {}), "empty"),
    "NaN in weights": (_weights(_nan), "NaN"),
    "shape disagrees with rank": (_weights(_wrong_rank), "rank"),
    "foreign tensor": (
        _weights(lambda t: {**t, "lm_head.weight": torch.zeros(2, 2)}),
        "LoRA matrix",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_adapter_is_refused_and_nothing_is_written(
    good: Path, tmp_path: Path, case: str
) -> None:
    change, message = CASES[case]
    root = tmp_path / "store"
    with pytest.raises(InvalidRequest, match=message):
        write_version_folder(root, Path("t/a/v1"), _variant(good, change), max_rank=16)
    assert not (root / "t").exists()
    assert list((root / ".tmp").iterdir()) == []


def test_good_adapter_is_written_with_its_checksum(good: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    folder, digest = write_version_folder(root, Path("t/a/v1"), copy_from(good), max_rank=16)
    assert digest == checksum(folder) == checksum(good)
    assert list((root / ".tmp").iterdir()) == []
    shutil.rmtree(root)


def test_an_orphan_with_the_same_bytes_is_reused(good: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    first, digest = write_version_folder(root, Path("t/a/v1"), copy_from(good), max_rank=16)
    again, same = write_version_folder(root, Path("t/a/v1"), copy_from(good), max_rank=16)
    assert again == first and same == digest == checksum(first)
    assert not (root / ORPHANS).exists()
    assert list((root / ".tmp").iterdir()) == []


def test_an_orphan_with_other_bytes_is_moved_aside_and_kept(good: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    other = random_adapter(tmp_path / "other", seed=2)
    left, left_digest = write_version_folder(root, Path("t/a/v1"), copy_from(other), max_rank=16)
    folder, digest = write_version_folder(root, Path("t/a/v1"), copy_from(good), max_rank=16)
    assert folder == left and checksum(folder) == digest == checksum(good) != left_digest
    (aside,) = (root / ORPHANS).iterdir()
    assert aside.name.startswith("t__a__v1-") and checksum(aside) == left_digest


def test_a_publish_that_died_before_its_commit_does_not_block_the_agent(
    db: Session, good: Path, tmp_path: Path
) -> None:
    """The exact window: the folder is renamed into place, then the transaction never
    commits. The next publish of that agent takes the same number and succeeds."""
    settings = get_settings().model_copy(update={"data_dir": tmp_path / "data"})
    tenant = create_tenant(db, f"orphan-{uuid.uuid4().hex[:6]}")
    agent = create_agent(db, tenant.id, AgentIn(name="bot"))
    db.flush()
    dying = db.begin_nested()
    publish(db, settings, tenant, agent.id, copy_from(random_adapter(tmp_path / "lost", seed=3)))
    dying.rollback()
    assert (settings.adapter_dir / tenant.slug / "bot" / "v1").is_dir()
    version = publish(db, settings, tenant, agent.id, copy_from(good))
    assert version.number == 1 and verify(version)
    assert checksum(Path(version.path)) == checksum(good)
    assert promote(db, tenant.id, version.id).status == AdapterStatus.live
