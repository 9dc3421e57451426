"""docker-compose.yml, read as configuration (no Docker here): every clora service sees the
base model and the shared folders the loop passes work through, and recovers on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers.compose import load

FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
SECRETS = {"POSTGRES_PASSWORD": "pw", "CLORA_SECRET_KEY": "secret"}


def compose(**variables: str) -> dict[str, Any]:
    """The file as compose reads it with this `.env` (the required secrets always set)."""
    return load(FILE, {**SECRETS, **variables})


COMPOSE = compose()
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
    # The trainer knows the engine's share (it refuses a budget beyond what is left), from the
    # same `.env` variable.
    assert (
        SERVICES["trainer"]["environment"]["CLORA_ENGINE_GPU_SHARE"]
        == flags["gpu-memory-utilization"]
    )
    shared = compose(CLORA_ENGINE_GPU_SHARE="0.45")["services"]
    assert "--gpu-memory-utilization=0.45" in shared["vllm"]["command"]
    assert shared["trainer"]["environment"]["CLORA_ENGINE_GPU_SHARE"] == "0.45"
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


def test_the_base_model_and_its_tool_format_come_from_dot_env() -> None:
    """The bundled model and hermes by default; a `.env` naming a Llama 3.1 directory and
    its tool format changes every mount of the model, the engine's parser and the format the
    clora services parse rollouts with."""
    llama = compose(
        CLORA_BASE_MODEL_HOST_PATH="/models/llama-3.1-8b", CLORA_ENGINE_TOOL_PARSER="llama3_json"
    )
    for spec, host, parser in (
        (COMPOSE, "./weights/clora-tiny", "hermes"),
        (llama, "/models/llama-3.1-8b", "llama3_json"),
    ):
        services = spec["services"]
        for name in (*CLORA, "vllm"):
            assert f"{host}:/weights/base:ro" in services[name]["volumes"], name
        assert f"--tool-call-parser={parser}" in services["vllm"]["command"]
        for name in CLORA:
            assert services[name]["environment"]["CLORA_ENGINE_TOOL_PARSER"] == parser


def test_the_reasoning_parser_comes_from_dot_env_and_is_left_out_when_empty() -> None:
    """The vllm service's entrypoint script, run by a shell with the service's environment and
    arguments (the server replaced by printf): the flag appears only when `.env` names a parser
    (vLLM refuses an empty one)."""
    import subprocess

    for parser in ("", "qwen3"):
        vllm = compose(CLORA_ENGINE_REASONING_PARSER=parser)["services"]["vllm"]
        shell, flag, script, name = vllm["entrypoint"]
        server = "exec python3 -m vllm.entrypoints.openai.api_server"
        assert script.startswith(server)
        printed = subprocess.run(
            [shell, flag, script.replace(server, "printf '%s\\n'"), name, *vllm["command"]],
            env={"PATH": "/usr/bin:/bin", **vllm["environment"]},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        extra = [f"--reasoning-parser={parser}"] if parser else []
        assert printed == [*vllm["command"], *extra], parser


def test_the_gateway_runs_with_the_malloc_arenas_clora_up_gives_it() -> None:
    """The gateway gets the same environment as every clora service, plus the arena limit
    `clora up` gives its gateway (`GATEWAY_ENV`: its thread pool's memory stays flat)."""
    from app.runtime.stack import GATEWAY_ENV

    gateway, worker = SERVICES["gateway"]["environment"], SERVICES["worker"]["environment"]
    assert {k: gateway.get(k) for k in GATEWAY_ENV} == GATEWAY_ENV
    assert {k: v for k, v in gateway.items() if k not in GATEWAY_ENV} == worker
