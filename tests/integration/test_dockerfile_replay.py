"""The Dockerfile, replayed without Docker: each stage starts from an empty folder holding
exactly what its COPY lines name (as the build context gives them, `.dockerignore` applied),
and its RUN steps run there. A file that a stage needs but does not copy fails here, as it
fails `docker compose build` (the UI stage once lacked `frontend/openapi.json`).

What stands in for what Docker would do:
- `npm ci` runs as written, `--prefer-offline` (the machine's npm cache);
- `pip install -e ".[gpu,trainer]"` builds the package's wheel from the copied files with no
  dependencies (the GPU set cannot install on a CPU machine; the checkout's environment
  provides them);
- then what the services run is run from the image's folder: `clora migrate` on an empty
  database, the gateway's CMD answering its health check and serving the UI, and the
  worker's and trainer's entry modules imported from there.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import httpx
import pytest

from tests.helpers.database import TEST_REDIS_URL, create_database, drop_database
from tests.helpers.gateway import free_port, start_gateway_process

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (instruction, arguments)


def stages(dockerfile: str) -> list[Stage]:
    found: list[Stage] = []
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = rest.split()
            found.append(Stage(words[2] if len(words) > 2 and words[1].upper() == "AS" else ""))
        else:
            found[-1].steps.append((instruction, rest.strip()))
    return found


def ignored(relative: PurePosixPath, patterns: list[str]) -> bool:
    """Whether `.dockerignore` leaves a path (or a folder above it) out of the context."""
    parts = relative.parts
    for pattern in patterns:
        anywhere = pattern.startswith("**/")
        bare = pattern.removeprefix("**/")
        for end in range(1, len(parts) + 1):
            if fnmatch.fnmatch("/".join(parts[:end]), bare):
                return True
            if anywhere and fnmatch.fnmatch(parts[end - 1], bare):
                return True
    return False


def copy_in(source: Path, target: Path, root: Path, patterns: list[str]) -> None:
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            relative = PurePosixPath(path.relative_to(root).as_posix())
            if path.is_file() and not ignored(relative, patterns):
                destination = target / path.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def run_step(command: str, cwd: Path, wheels: Path) -> None:
    words = shlex.split(command)
    if words[:2] == ["npm", "ci"]:
        words.append("--prefer-offline")
    elif words[:2] == ["pip", "install"]:
        words = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        words += ["--no-cache-dir", "-w", str(wheels), "."]
    env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    done = subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (
        f"RUN {command} in {cwd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )


def replay(dockerfile: str, into: Path, context: Path = REPO) -> dict[str, Path]:
    """Build each stage's folder; returns each stage's root by name, and "" the last stage's
    working directory (the image's)."""
    patterns = [
        p.strip()
        for p in (context / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    roots: dict[str, Path] = {}
    env: dict[str, str] = {}
    for number, stage in enumerate(stages(dockerfile)):
        root = into / f"stage{number}"
        root.mkdir(parents=True)
        workdir = root
        for instruction, rest in stage.steps:
            if instruction == "WORKDIR":
                workdir = root / rest.lstrip("/")
                workdir.mkdir(parents=True, exist_ok=True)
            elif instruction == "COPY":
                words = rest.split()
                source_root = context
                if words[0].startswith("--from="):
                    source_root = roots[words.pop(0).removeprefix("--from=")]
                *sources, target = words
                for source in sources:
                    base = source_root / source.lstrip("/")
                    relative = PurePosixPath(source.lstrip("/"))
                    if source_root == context and ignored(relative, patterns):
                        pytest.fail(f"COPY {source}: excluded by .dockerignore")
                    assert base.exists(), f"COPY {source}: not in the context"
                    into_dir = target.endswith("/") or len(sources) > 1
                    destination = workdir / target
                    if into_dir and base.is_file():
                        destination = destination / base.name
                    copy_in(
                        base, destination, source_root, patterns if source_root == context else []
                    )
            elif instruction == "RUN":
                run_step(rest, workdir, into / "wheels")
            elif instruction == "ENV":
                key, _, value = rest.partition("=")
                env[key] = value
        roots[stage.name] = root
        roots[""] = workdir
    (into / "env").write_text("\n".join(f"{k}={v}" for k, v in env.items()))
    return roots


def served(image: Path, database_url: str) -> None:
    """Run what the compose services run, from the image's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLORA_")}
    env.update(
        CLORA_ENVIRONMENT="production",
        CLORA_SECRET_KEY="a-real-secret-for-the-replay-test-only",
        CLORA_DATABASE_URL=database_url,
        CLORA_REDIS_URL=TEST_REDIS_URL,
        PYTHONPATH=str(image),
    )

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=image, env=env, capture_output=True, text=True, timeout=300
        )

    where = python("-c", "import app, trainer; print(app.__file__); print(trainer.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(image)) for line in where.stdout.split()), where.stdout
    migrated = python("-m", "app.cli", "migrate")  # the compose file's `clora migrate`
    assert migrated.returncode == 0, "clora migrate failed: " + migrated.stdout + migrated.stderr
    for module in ("app.runtime.worker", "app.training.__main__"):  # worker, beat, trainer
        found = python("-c", f"import importlib.util as u; assert u.find_spec({module!r})")
        assert found.returncode == 0, found.stderr
    model = python(
        "-c", "from app.core.config import get_settings as g; print(g().base_model_path)"
    )
    assert Path(model.stdout.strip()).joinpath("config.json").is_file(), model.stdout
    port = free_port()
    gateway = start_gateway_process(env, port, image.parent / "gateway.log", cwd=image)
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and '<div id="root">' in page.text, page.text[:300]
        script = page.text.split('src="', 1)[1].split('"', 1)[0]
        assert httpx.get(f"http://127.0.0.1:{port}{script}", timeout=10).status_code == 200
    finally:
        gateway.terminate()
        gateway.wait(30)


@pytest.fixture
def empty_database() -> object:
    url = create_database()
    yield url
    drop_database(url)


def test_every_stage_builds_from_what_it_copies_and_the_image_serves(
    tmp_path: Path, empty_database: str
) -> None:
    roots = replay((REPO / "Dockerfile").read_text(), tmp_path)
    assert list((tmp_path / "wheels").glob("clora-*.whl")), "the package did not build"
    assert (roots["ui"] / "ui" / "dist" / "index.html").is_file()
    served(roots[""], empty_database)


def test_a_file_a_stage_needs_but_does_not_copy_fails_the_replay(
    tmp_path: Path, empty_database: str
) -> None:
    """The service stage without its migrations: `clora migrate` cannot run from the image.
    (The UI stage without `frontend/openapi.json` fails its `npm run build` the same way;
    docs/DEPLOY.md.)"""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY migrations migrations\n" in dockerfile
    service_only = dockerfile.split("\nFROM python", 1)[1].replace(
        "COPY --from=ui /ui/dist frontend/dist\n", ""
    )
    broken = "FROM python" + service_only.replace("COPY migrations migrations\n", "")
    roots = replay(broken, tmp_path)
    with pytest.raises(AssertionError, match="clora migrate failed"):
        served(roots[""], empty_database)
