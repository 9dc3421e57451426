"""Starts and stops the embedded vLLM OpenAI server (the sampler) as a subprocess.

The engine runs as ``python -m vllm.entrypoints.openai.api_server`` in its own process
group with LoRA enabled, the Hermes tool-call parser and runtime adapter loading, so the
gateway can serve every tenant's adapter from one warm base model. Plain arguments only:
the app passes values from its settings; nothing here touches the database.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from app.sampler.formats import EngineFormats, engine_formats

#: Environment every engine gets (see shared VLLM-CPU-NOTES): fast in-process engine core,
#: a small KV cache, runtime LoRA loading, and never any network access to a model hub.
ENGINE_ENV: dict[str, str] = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def omp_threads(bind: str | None) -> int:
    """OpenMP threads for an engine bound to the cores in ``bind`` (vLLM's
    ``VLLM_CPU_OMP_THREADS_BIND``: "0", "0-3", "0,2"); every core otherwise. vLLM binds its
    compute thread to those cores, but torch still starts one OpenMP thread per core of the
    machine: on 2 cores with the engine bound to core 0, a probe here saw the extra thread burn
    0.7 of the other core (the trainer's) for no throughput."""
    if not bind or bind in ("auto", "nobind"):
        return os.cpu_count() or 1
    cores: set[int] = set()
    for part in bind.split("|")[0].split(","):
        low, _, high = part.partition("-")
        if low.strip().isdigit():
            cores.update(range(int(low), int(high or low) + 1))
    return max(1, len(cores))


class EngineError(RuntimeError):
    """Base class for engine process failures."""


class EngineStartError(EngineError):
    """The engine did not become ready; carries the last lines of its log."""

    def __init__(self, message: str, log_tail: str) -> None:
        """Keep the log tail both as an attribute and in the message."""
        super().__init__(f"{message}\n--- last engine log lines ---\n{log_tail}")
        self.log_tail = log_tail


class EngineExitedError(EngineStartError):
    """The engine process exited before it was ready."""


class EngineTimeoutError(EngineStartError):
    """The engine was still not ready when the timeout ran out."""


SERVER_PORTS = 12_000
"""How many ports below the kernel's ephemeral range `free_port` picks from."""


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux's default range starts at
    32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, for a server that binds it later.

    It comes from just below the kernel's ephemeral range: a port from inside it (``bind(0)``)
    can be handed to any outgoing connection in the seconds before the server binds it (a
    gateway lost its port that way while a second test suite ran beside it, and died with
    EADDRINUSE). It is drawn at random, so two processes choosing at once rarely choose alike."""
    high = _ephemeral_low()
    ports = range(max(1024, high - SERVER_PORTS), high)
    draw = random.SystemRandom()
    for _ in range(200):
        port = draw.choice(ports)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LoraSlots:
    """How many adapters the engine serves at once (``max_loras``, in one batch), up to which
    rank, and how many it caches in host memory (``max_cpu_loras``, at least ``max_loras``;
    by default ``max_loras``)."""

    max_loras: int = 4
    max_lora_rank: int = 16
    max_cpu_loras: int | None = None


@dataclass(frozen=True)
class EngineRuntime:
    """How the engine process runs: its host, context length, KV-cache block (the unit prefix
    caching shares), interpreter, extra environment, and arguments appended to the vLLM
    command line as given."""

    host: str = "127.0.0.1"
    max_model_len: int = 1024
    block_size: int = 32
    python: str = sys.executable
    env: Mapping[str, str] = field(default_factory=dict)
    extra_args: Sequence[str] = ()


class EngineProcess:
    """One vLLM OpenAI-compatible server subprocess serving a base model and its LoRAs."""

    def __init__(
        self,
        model_dir: str | Path,
        port: int | None = None,
        served_model_name: str = "clora-tiny",
        loras: LoraSlots = LoraSlots(),
        log_path: str | Path | None = None,
        *,
        formats: EngineFormats | None = None,
        runtime: EngineRuntime = EngineRuntime(),
    ) -> None:
        """Configure (not start) the engine; ``port=None`` picks a free port. ``formats``
        (dtype, tool-call and reasoning parsers) default to the model family's choice on this
        host (`app.sampler.formats`)."""
        self.model_dir = Path(model_dir)
        self.host = runtime.host
        self.port = port if port is not None else free_port(self.host)
        self.served_model_name = served_model_name
        self.max_loras = loras.max_loras
        self.max_lora_rank = loras.max_lora_rank
        self.max_cpu_loras = max(loras.max_cpu_loras or loras.max_loras, loras.max_loras)
        self.max_model_len = runtime.max_model_len
        self.block_size = runtime.block_size
        self.log_path = Path(log_path) if log_path else Path(f"/tmp/clora-engine-{self.port}.log")
        self.extra_args = list(runtime.extra_args)
        self.extra_env = dict(runtime.env)
        self.python = runtime.python
        self.formats = formats or engine_formats(self.model_dir)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Root URL of the server, e.g. ``http://127.0.0.1:8001``."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """Base URL for OpenAI clients (``url`` + ``/v1``)."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        """Process id of the server while it runs."""
        return self._process.pid if self._process else None

    def command(self) -> list[str]:
        """The full command line the engine is started with."""
        return [
            self.python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_model_name,
            "--dtype",
            self.formats.dtype,
            "--max-model-len",
            str(self.max_model_len),
            "--enable-lora",
            "--max-loras",
            str(self.max_loras),
            "--max-lora-rank",
            str(self.max_lora_rank),
            "--max-cpu-loras",
            str(self.max_cpu_loras),
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            self.formats.tool_parser,
            *(
                ["--reasoning-parser", self.formats.reasoning_parser]
                if self.formats.reasoning_parser
                else []
            ),
            "--seed",
            "0",
            # Whole prompts only: vLLM's CPU sampler crashes when it rewinds the generator of a
            # seeded request whose prefill was split ("CPU Generator does not use offset").
            "--no-enable-chunked-prefill",
            # Prefix caching shares whole blocks only. vLLM's CPU default of 128 tokens is
            # longer than most agent prompts, so nothing was ever shared (0% hit rate); at 32
            # the system prompt, tools, the G samples' common prompt and earlier turns are
            # reused (a probe of 8 experiments' rollouts here: about 2x the tok/s).
            "--block-size",
            str(self.block_size),
            "--max-num-batched-tokens",
            str(max(8192, self.max_model_len)),
            "--disable-uvicorn-access-log",
            "--host",
            self.host,
            "--port",
            str(self.port),
            *self.extra_args,
        ]

    def is_running(self) -> bool:
        """Whether the subprocess has been started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Launch the server (returns at once; call :meth:`wait_ready` next)."""
        if self.is_running():
            raise EngineError(f"engine already running (pid {self.pid})")
        if not (self.model_dir / "config.json").is_file():
            raise EngineError(f"no model at {self.model_dir} (config.json missing)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **ENGINE_ENV, **self.extra_env}
        env.setdefault("OMP_NUM_THREADS", str(omp_threads(env.get("VLLM_CPU_OMP_THREADS_BIND"))))
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} {' '.join(self.command())}\n".encode())
            log.flush()
            # Own process group: stop() signals the whole group, so no child outlives us.
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the engine log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Block until ``/v1/models`` answers; raise :class:`EngineStartError` otherwise."""
        if self._process is None:
            raise EngineError("engine not started")
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise EngineExitedError(f"engine exited with code {code}", self.log_tail())
                try:
                    if client.get(f"{self.api_base}/models").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise EngineTimeoutError(
                        f"engine not ready after {timeout:.0f}s", self.log_tail()
                    )
                time.sleep(0.5)

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server's process group, then kill it if it does not exit."""
        process = self._process
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        # The leader may be gone while children linger in its group: make sure they go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self._process = None

    def __enter__(self) -> EngineProcess:
        """Start and wait until ready; stop on any failure."""
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the engine."""
        self.stop()
