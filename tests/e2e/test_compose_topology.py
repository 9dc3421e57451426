"""docker-compose.yml, run without Docker (tests/helpers/compose.py): every service as its own
process with its own environment, filesystem root and address, the CPU engine in place of the
GPU image. The whole loop must pass that way, driven as an admin would drive a deployment
(`docker compose run --rm gateway clora ...` for the first admin and a personal access token,
then `clora --url --token` from outside the stack): chat, correction, cycle, the new version
served by the engine from the shared adapter volume. And a mount mistake fails: a gateway without the
base model's mount cannot answer an agent that has no version yet.

Where Debian's packages provide the compose CLI, `docker compose config` validates the file too
(this machine has none: that check is skipped, and says so)."""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers.browser import PASSWORD
from tests.helpers.compose import REPO, Service, Topology, topology
from tests.helpers.worker import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

QUESTION = [{"role": "user", "content": "What is 12 times 5?"}]


def compose_cli() -> list[str] | None:
    """Debian's `docker-compose` (installed by `make chromium`), or Docker's `docker compose`."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    return None


def test_the_compose_file_validates_with_the_compose_cli_where_it_exists() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no compose CLI on this machine (Debian: apt-get install docker-compose)")

    def config(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, "-f", str(REPO / "docker-compose.yml"), "config", "--quiet"],
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
        )

    done = config(POSTGRES_PASSWORD="x", CLORA_SECRET_KEY="y" * 40)
    assert done.returncode == 0, done.stderr
    refused = config(CLORA_SECRET_KEY="y" * 40)  # no default secret: it refuses to start
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD" in refused.stderr


def without_model_mount(topo: Topology) -> Service:
    """A second gateway from the same file, less its base-model mount (the mistake the file
    once had), on an address of its own."""
    spec = copy.deepcopy(topo.services["gateway"].spec)
    spec["volumes"] = [v for v in spec["volumes"] if not v.endswith(":/weights/base:ro")]
    service = Service(
        "gateway-no-model",
        spec,
        "127.0.0.99",
        topo.folder / "roots" / "gateway-no-model",
        topo.folder / "gateway-no-model.log",
    )
    topo.services[service.name] = service
    gateway = topo.services["gateway"].address
    argv = [service.address if a == gateway else a for a in topo.command_of("gateway")]
    service.proc = topo.launch(service, argv, topo.env_of("gateway"))
    return service


class Laptop:
    """`clora --url URL --token TOKEN ...` run on this machine, outside every service's root,
    with no database or Redis settings at all."""

    def __init__(self, url: str, token: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLORA_")}
        self.env.update(CLORA_URL=url, CLORA_TOKEN=token)

    def __call__(self, *argv: str) -> str:
        done = subprocess.run(
            [str(REPO / ".venv" / "bin" / "clora"), *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        return done.stdout


def chat(base: str, key: str, model: str) -> Any:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=120)
    return client.chat.completions.with_raw_response.create(
        model=model, messages=QUESTION, max_tokens=8, temperature=0
    )


def test_the_compose_file_runs_the_whole_learning_loop(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    variables = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "CLORA_SECRET_KEY": secrets.token_urlsafe(32),
    }
    with topology(tmp_path_factory.mktemp("compose"), variables) as topo:
        admin = lambda *argv: topo.run("gateway", ["clora", *argv])  # noqa: E731
        admin("tenant", "create", "acme")
        admin("tenant", "agent", "acme", "bot", "--rank", "8")
        key = admin("tenant", "key", "acme").strip().splitlines()[-1]
        gateway = f"http://{topo.services['gateway'].address}:8000"
        # The first admin, and a personal access token for the admin's laptop (DEPLOY.md).
        email = "root@example.test"
        admin("user", "create", email, "--role", "platform_admin", "--password", PASSWORD)
        token = admin("user", "token", email, "--name", "laptop").strip().splitlines()[-1]
        laptop = Laptop(gateway, token)

        # The mistake first (nothing has written the base model's identity adapter yet).
        broken = without_model_mount(topo)
        wait_for(lambda: _up_or_dead(broken), timeout_s=120)
        if broken.proc.poll() is None:  # type: ignore[union-attr]
            with pytest.raises(openai.APIStatusError) as info:
                chat(f"http://{broken.address}:8000", key, "bot")
            assert info.value.status_code >= 500
            broken.proc.terminate()  # type: ignore[union-attr]
        log = broken.log.read_text(errors="replace")
        assert "/weights/base" in log, log[-2000:]  # the failure names the missing model

        # The loop, as the file deploys it.
        first = chat(gateway, key, "bot")
        assert first.status_code == 200
        reply = first.parse()
        assert reply.choices[0].message.content is not None
        resp = httpx.post(
            f"{gateway}/v1/feedback",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "interaction_id": reply.id,
                "kind": "correction",
                "correction": {"content": "60"},
            },
            timeout=60,
        )
        assert resp.status_code == 201, resp.text
        # The worker compiles it into a training example.
        # From here the admin works from the laptop: `clora --url --token`, no database access.
        wait_for(lambda: '"60"' in laptop("dataset", "export", "bot", "--tenant", "acme"), 180, 2)
        # The cycle trains in the trainer's container and publishes from the worker's.
        cycle = laptop("cycle", "run", "bot", "--tenant", "acme")  # follows it to its end
        assert "status " in cycle, cycle
        versions = laptop("adapter", "list", "bot", "--tenant", "acme")
        assert versions.lstrip().startswith("v1"), (cycle, versions)
        if "live" not in versions.splitlines()[0]:
            # A first correction is too little to evaluate on (needs_evaluation): the admin
            # promotes the candidate over the gate, as docs/LEARNING.md says.
            laptop("adapter", "promote", "bot", "1", "--tenant", "acme", "--force")
        # The engine loads v1 from the adapter volume it shares read-only, and serves it.
        served = wait_for(
            lambda: (
                (r := chat(gateway, key, "bot")).headers.get("x-clora-adapter-version")
                == "acme/bot@v1"
                and r
            ),
            timeout_s=120,
            interval_s=2,
        )
        assert served.parse().system_fingerprint == "acme/bot@v1"
        models = httpx.get(f"http://{topo.services['vllm'].address}:8000/v1/models").json()
        roots = {m["id"]: m.get("root") for m in models["data"]}
        assert any(
            name.endswith("bot@v1") and str(root).startswith("/data/adapters/")
            for name, root in roots.items()
        ), json.dumps(roots)
        # The trainer's checkpoints and the staging folder live on their named volumes.
        volumes = topo.folder / "volumes"
        assert any((volumes / "trainer-state").rglob("*")), "no trainer state on its volume"
        assert any((volumes / "adapters").rglob("adapter_config.json"))


def _up_or_dead(service: Service) -> bool:
    """Whether the service answers HTTP on port 8000, or has exited."""
    if service.proc is None or service.proc.poll() is not None:
        return True
    try:
        httpx.get(f"http://{service.address}:8000/readyz", timeout=2)
        return True
    except httpx.HTTPError:
        return False


def test_compose_topology_reads_paths_only_through_mounts(tmp_path: Path) -> None:
    """The harness itself: a path a service does not mount does not exist in its root."""
    compose = {
        "services": {
            "probe": {
                "build": ".",
                # The host's own folder of this test exists, but not in the service's root.
                "command": ["sh", "-c", f"ls /data/shared && ! ls {tmp_path}"],
                "volumes": ["shared:/data/shared"],
            }
        },
        "volumes": {"shared": None},
    }
    topo = Topology(compose, tmp_path)
    (tmp_path / "volumes" / "shared").mkdir(parents=True)
    (tmp_path / "volumes" / "shared" / "marker").write_text("x")
    topo.start("probe")
    proc = topo.services["probe"].proc
    assert proc is not None and proc.wait(60) == 0, topo.services["probe"].log.read_text()
    assert "marker" in topo.services["probe"].log.read_text()
