"""The personal access token format: told apart from API keys, parsed whatever its secret holds."""

from __future__ import annotations

from app.users.tokens import _prefix, is_token


def test_the_secret_part_may_hold_underscores() -> None:
    assert _prefix("clorapat_0123456789ab_se_cr_et") == "clorapat_0123456789ab"


def test_malformed_tokens_and_api_keys_are_not_tokens() -> None:
    assert _prefix("clorapat_short_secret") is None  # the prefix is 12 hex characters
    assert _prefix("clorapat_0123456789ab") is None  # no secret
    assert _prefix("clorapat_0123456789ab_" + "x" * 300) is None  # too long to be one
    assert not is_token("clora_0123456789ab_secret")  # an API key
    assert not is_token(None) and is_token("clorapat_0123456789ab_secret")
