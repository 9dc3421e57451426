"""Settings refuse missing or placeholder secrets outside development."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.core.config import ConfigError, Settings


@pytest.mark.parametrize("secret", [None, "changeme", "", "secret"])
def test_production_refuses_missing_or_placeholder_secret(secret: str | None) -> None:
    kwargs = {} if secret is None else {"secret_key": secret}
    with pytest.raises(ConfigError, match="CLORA_SECRET_KEY must be set"):
        Settings(environment="production", **kwargs)


def test_production_accepts_real_secret() -> None:
    settings = Settings(environment="production", secret_key="x7Hq2vL9pQ3rT8wZ1yK4mN6bV0cX5aS")
    assert settings.secret_key is not None


def test_development_gets_a_development_secret() -> None:
    assert Settings(environment="development").secret_key is not None


def test_cli_prints_readable_message_not_traceback() -> None:
    env = {"CLORA_ENVIRONMENT": "production", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "up", "--no-engine"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "CLORA_SECRET_KEY must be set" in result.stderr
    assert "Traceback" not in result.stderr
