"""Who may read /metrics."""

from __future__ import annotations

from app.serving.metrics import may_scrape


def test_with_a_token_only_the_token_opens_it_from_anywhere() -> None:
    assert may_scrape("203.0.113.9", "Bearer s3cret", "s3cret")
    assert may_scrape("127.0.0.1", "bearer s3cret", "s3cret")
    assert not may_scrape("127.0.0.1", "", "s3cret")
    assert not may_scrape("127.0.0.1", "Bearer wrong", "s3cret")
    assert not may_scrape("127.0.0.1", "Basic s3cret", "s3cret")


def test_without_a_token_only_this_host() -> None:
    assert may_scrape("127.0.0.1", "", None)
    assert may_scrape("::1", "", None)
    assert not may_scrape("203.0.113.9", "", None)
    assert not may_scrape(None, "", None)


def test_a_forwarded_request_is_never_this_host_without_the_token() -> None:
    """Proxy headers are the caller's word: "X-Forwarded-For: 127.0.0.1" must not open it."""
    assert not may_scrape("127.0.0.1", "", None, forwarded=True)
    assert may_scrape("127.0.0.1", "Bearer s3cret", "s3cret", forwarded=True)
