"""The CLI answers bad input with one readable line, before it touches a database."""

from __future__ import annotations

from click.testing import CliRunner

from app.cli import main


def test_an_overlong_agent_name_is_a_usage_error_not_a_traceback() -> None:
    result = CliRunner().invoke(main, ["tenant", "agent", "demo", "a" * 64])
    assert result.exit_code == 2, result.output
    assert "at most 63 characters" in result.output
    assert "Traceback" not in result.output


def test_an_out_of_range_rank_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["tenant", "agent", "demo", "bot", "--rank", "0"])
    assert result.exit_code == 2, result.output
    assert "lora_rank" in result.output
