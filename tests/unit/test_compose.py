"""docker-compose.yml, read as configuration (no Docker here): every clora service sees the
base model and the shared folders the loop passes work through, and recovers on its own."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
CLORA = [name for name, svc in SERVICES.items() if svc.get("build") and name != "migrate"]


def mounts(name: str) -> dict[str, str]:
    """Container path -> source of each volume of a service."""
    out = {}
    for volume in SERVICES[name].get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


def test_every_clora_service_mounts_the_base_model_where_its_settings_point() -> None:
    assert set(CLORA) == {"gateway", "worker", "beat", "trainer"}
    for name in CLORA:
        base = SERVICES[name]["environment"]["CLORA_BASE_MODEL_PATH"]
        assert base in mounts(name), (name, base)


def test_trainer_and_worker_share_the_folders_training_results_pass_through() -> None:
    data = SERVICES["trainer"]["environment"]["CLORA_DATA_DIR"]
    for folder in ("adapters", "staging", "trainer"):
        target = f"{data}/{folder}"
        sources = {mounts(name).get(target) for name in ("trainer", "worker", "gateway")}
        assert len(sources) == 1 and None not in sources, (folder, sources)
        assert next(iter(sources)) in COMPOSE["volumes"], folder  # a named, persistent volume


def test_long_running_services_restart_wait_for_migrations_and_report_health() -> None:
    for name, svc in SERVICES.items():
        if name == "migrate":
            continue
        assert svc.get("restart") == "unless-stopped", name
        if name != "beat":
            assert "healthcheck" in svc, name
    for name in CLORA:
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        ), name
    assert ":latest" not in SERVICES["vllm"]["image"]


def test_vllm_is_pinned_with_the_gpu_extra_and_shares_the_gpu_with_the_trainer() -> None:
    import re
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    (pin,) = project["project"]["optional-dependencies"]["gpu"]
    version = pin.split("==")[1]
    assert SERVICES["vllm"]["image"] == f"vllm/vllm-openai:v{version}"
    flags = dict(
        re.match(r"--([a-z-]+)=(.*)", arg).groups()  # type: ignore[union-attr]
        for arg in SERVICES["vllm"]["command"]
        if "=" in arg
    )
    assert 0 < float(flags["gpu-memory-utilization"]) < 1  # the rest is the trainer's
    for name in ("vllm", "trainer"):
        (device,) = SERVICES[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["count"] == 1, name
    assert SERVICES["redis"]["command"][-4:] == ["--appendonly", "yes", "--appendfsync", "everysec"]


def test_beat_keeps_its_schedule_in_the_data_folder() -> None:
    """Beat writes its schedule file where --schedule says; in the working dir (the default)
    it landed in the checkout and was committed."""
    command = SERVICES["beat"]["command"]
    data = SERVICES["beat"]["environment"]["CLORA_DATA_DIR"]
    (schedule,) = [c.split("=", 1)[1] for c in command if c.startswith("--schedule=")]
    assert schedule.startswith(f"{data}/"), command
