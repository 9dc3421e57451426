"""`/v1/fine_tuning/jobs` bodies, shaped as OpenAI's (`openai.types.fine_tuning`)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EVENT_PREFIX = "ftevent-"
CHECKPOINT_PREFIX = "ftckpt-"

Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    """What the supervised and DPO methods take; "auto" picks from the file's size."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    n_epochs: int | Auto = "auto"
    batch_size: int | Auto = "auto"
    learning_rate_multiplier: float | Auto = "auto"

    @field_validator("n_epochs")
    @classmethod
    def _epochs(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 50:
            raise ValueError("n_epochs must be between 1 and 50")
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 256:
            raise ValueError("batch_size must be between 1 and 256")
        return v

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _lr(cls, v: float | str) -> float | str:
        if isinstance(v, float | int) and not 0 < v <= 100:
            raise ValueError("learning_rate_multiplier must be in (0, 100]")
        return v


class DpoHyperparameters(Hyperparameters):
    beta: float | Auto = "auto"

    @field_validator("beta")
    @classmethod
    def _beta(cls, v: float | str) -> float | str:
        if isinstance(v, float | int) and not 0 < v <= 10:
            raise ValueError("beta must be in (0, 10]")
        return v


class ReinforcementHyperparameters(Hyperparameters):
    compute_multiplier: float | Auto = "auto"
    """Scales the samples drawn per prompt (4 at 1.0, between 2 and 16)."""

    @field_validator("compute_multiplier")
    @classmethod
    def _compute(cls, v: float | str) -> float | str:
        if isinstance(v, float | int) and not 0 < v <= 4:
            raise ValueError("compute_multiplier must be in (0, 4]")
        return v


class StringCheckGrader(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    type: Literal["string_check"]
    name: str = Field(default="string_check", max_length=120)
    input: str = Field(max_length=2000)
    reference: str = Field(max_length=2000)
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarityGrader(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    type: Literal["text_similarity"]
    name: str = Field(default="text_similarity", max_length=120)
    input: str = Field(max_length=2000)
    reference: str = Field(max_length=2000)
    evaluation_metric: Literal["fuzzy_match"]
    pass_threshold: float | None = None
    """Accepted for OpenAI's shape; the reward is the similarity itself."""


class EnvironmentGrader(BaseModel):
    """clora's named grader: an RL environment plays the episode with its own tools and
    rewards the final answer against the line's ``answer`` field (e.g. ``calculator``)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["environment"]
    name: str = Field(max_length=120)


Grader = StringCheckGrader | TextSimilarityGrader | EnvironmentGrader


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class DpoMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: DpoHyperparameters = Field(default_factory=DpoHyperparameters)


class ReinforcementMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grader: Grader = Field(discriminator="type")
    hyperparameters: ReinforcementHyperparameters = Field(
        default_factory=ReinforcementHyperparameters
    )


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: ReinforcementMethod | None = None

    @model_validator(mode="after")
    def _one_method(self) -> Method:
        if self.type == "reinforcement" and self.reinforcement is None:
            raise ValueError(
                "method.reinforcement with a grader is required for type 'reinforcement'"
            )
        for other in ("supervised", "dpo", "reinforcement"):
            if other != self.type and getattr(self, other) is not None:
                raise ValueError(f"method.{other} given for a method of type '{self.type}'")
        return self


_SUFFIX = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(max_length=200)
    """One of the tenant's agents (``calculator``) or versions (``calculator@v3``)."""
    training_file: str = Field(max_length=100)
    validation_file: str | None = Field(default=None, max_length=100)
    hyperparameters: Hyperparameters | None = None
    """The older place for the supervised method's hyperparameters."""
    method: Method | None = None
    suffix: str | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None
    integrations: list[Any] | None = None

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, v: str | None) -> str | None:
        if v is not None and not _SUFFIX.match(v):
            raise ValueError("suffix is 1 to 64 letters, digits, '-', '_' or '.'")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None and (
            len(v) > 16 or any(len(k) > 64 or len(val) > 512 for k, val in v.items())
        ):
            raise ValueError(
                "metadata holds at most 16 pairs, keys up to 64 characters, values up to 512"
            )
        return v

    @field_validator("integrations")
    @classmethod
    def _no_integrations(cls, v: list[Any] | None) -> list[Any] | None:
        if v:
            raise ValueError("integrations (e.g. Weights & Biases) are not supported here")
        return v

    @model_validator(mode="after")
    def _hyperparameters_once(self) -> JobCreate:
        if self.hyperparameters is not None and self.method is not None:
            raise ValueError("give hyperparameters inside method, not both")
        return self


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class JobOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: dict[str, Any]
    model: str
    organization_id: str
    result_files: list[str] = Field(default_factory=list)
    seed: int
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
    trained_tokens: int | None
    training_file: str | None
    validation_file: str | None
    estimated_finish: int | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any]
    suffix: str | None = None
    """clora's additions below: the cycle that runs the job, and its progress (0..1)."""
    cycle_run_id: str | None = None
    progress: float = 0.0


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobOut]
    has_more: bool


class EventOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any] | None = None
    type: Literal["message", "metrics"] = "message"


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventOut]
    has_more: bool


class CheckpointOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    step_number: int


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CheckpointOut]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
