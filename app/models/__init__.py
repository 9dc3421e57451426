"""ORM models; importing this package registers every table on ``Base.metadata``."""

from app.models.adapters import AdapterVersion
from app.models.base import Base
from app.models.experiments import Experiment, ExperimentStep
from app.models.fine_tuning import FineTuningEvent, FineTuningJob, TenantFile
from app.models.interactions import Feedback, Interaction
from app.models.learning import CycleRun, LearningSchedule, TrainingExample
from app.models.tenancy import Agent, ApiKey, PersonalAccessToken, Tenant, User
from app.models.training import TrainingJob, TrainingJobStep

__all__ = [
    "AdapterVersion",
    "Agent",
    "ApiKey",
    "Base",
    "CycleRun",
    "Experiment",
    "ExperimentStep",
    "Feedback",
    "FineTuningEvent",
    "FineTuningJob",
    "Interaction",
    "LearningSchedule",
    "PersonalAccessToken",
    "Tenant",
    "TenantFile",
    "TrainingExample",
    "TrainingJob",
    "TrainingJobStep",
    "User",
]
