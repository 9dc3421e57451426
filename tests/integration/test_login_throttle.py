"""The sign-in doors on a real Redis (`app/auth/throttle.py`): a guess spread over many
addresses closes the account's door, which every address then meets before any hash, except
the addresses the account signed in from before."""

from __future__ import annotations

import uuid

import pytest
import redis

from app.auth.throttle import FREE_PER_ACCOUNT, LoginThrottle
from app.core.errors import RateLimited
from tests.helpers.database import TEST_REDIS_URL


def test_many_addresses_close_the_account_but_not_where_its_owner_signs_in() -> None:
    throttle = LoginThrottle(redis.Redis.from_url(TEST_REDIS_URL))
    email = f"owner-{uuid.uuid4().hex[:8]}@example.test"
    throttle.succeeded(email, "192.0.2.7")  # where the owner signed in before
    refused_at = None
    for n in range(3 * FREE_PER_ACCOUNT):
        address = f"10.9.{n}.{uuid.uuid4().int % 250}"  # one guess each: no address door closes
        try:
            throttle.check(email, address)
        except RateLimited:
            refused_at = n
            break
        throttle.failed(email, address)
    assert refused_at == FREE_PER_ACCOUNT  # the guess after the allowance meets a closed door
    throttle.check(email, "192.0.2.7")  # the owner's address passes
    with pytest.raises(RateLimited) as closed:
        throttle.check(email, "203.0.113.5")  # a new address waits, the owner's too
    assert 0 < (closed.value.retry_after_s or 0) <= 1.0
    throttle.check(f"other-{email}", "203.0.113.5")  # another account is untouched
