"""A sign-in flood: 200 wrong passwords in parallel against one account from one address.

The gateway runs as its own process so its peak memory (VmHWM) is its own. Each password
check is an argon2 hash of 64 MiB: unthrottled, 32 parallel guesses would hold 2 GiB. With the
throttle the attacker's door closes after five failures, the checks that do run wait for one of
two hashing slots, and the account's owner, from another address, still signs in.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen

import httpx
import pytest

from app.auth.throttle import BASE_DELAY_S, FREE_FAILURES, FREE_PER_ACCOUNT
from app.core.db import unit_of_work
from app.core.security import HASH_SLOTS
from app.models.enums import Role
from app.users.service import create_user
from tests.helpers.database import TEST_REDIS_URL
from tests.helpers.faults import gateway_env
from tests.helpers.gateway import free_port, make_tenant, start_gateway_process

pytestmark = pytest.mark.slow

ARGON2_MIB = 64


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@contextmanager
def _gateway_with_owner(database_url: str, folder: Path) -> Iterator[tuple[str, dict, Popen]]:
    """A gateway process of its own and an account on it: (sign-in URL, credentials, process)."""
    fx = make_tenant()
    email = f"owner-{uuid.uuid4().hex[:8]}@example.test"
    password = f"pw-{uuid.uuid4().hex}"
    with unit_of_work() as session:
        create_user(session, email, password, Role.admin, fx.tenant.id)
    env = gateway_env(database_url, TEST_REDIS_URL, "http://127.0.0.1:9", folder / "data")
    port = free_port()
    proc = start_gateway_process(env, port, folder / "gateway.log")
    try:
        yield (
            f"http://127.0.0.1:{port}/api/auth/login",
            {"email": email, "password": password},
            proc,
        )
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_login_flood_is_throttled_memory_stays_flat_and_the_owner_gets_in(
    database_url: str, tmp_path: Path
) -> None:
    with _gateway_with_owner(database_url, tmp_path) as (url, owner_login, proc):
        email, password = owner_login["email"], owner_login["password"]

        # uvicorn trusts X-Forwarded-For from loopback: each client gets its own address.
        def attempt(n: int) -> int:
            attacker = {"X-Forwarded-For": "198.51.100.66"}
            body = {"email": email, "password": f"guess-{n}"}
            return httpx.post(url, json=body, headers=attacker, timeout=120).status_code

        owner = {"X-Forwarded-For": "192.0.2.7"}
        warm = httpx.post(url, json={"email": email, "password": password}, headers=owner)
        assert warm.status_code == 200
        before = _peak_mib(proc.pid)
        started = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            statuses = list(pool.map(attempt, range(200)))
        lasted = time.monotonic() - started
        peak = _peak_mib(proc.pid)
        signed_in = httpx.post(url, json={"email": email, "password": password}, headers=owner)
        blocked = httpx.post(
            url,
            json={"email": email, "password": password},
            headers={"X-Forwarded-For": "198.51.100.66"},
        )
    assert set(statuses) <= {401, 429}
    # The door is checked again inside the hashing slot, so only the slot holders leak past
    # it; it reopens after 1, 2, 4, ... s, letting one more guess through each time.
    reopenings = 1 + math.ceil(math.log2(1 + lasted / BASE_DELAY_S))
    allowed = FREE_FAILURES + HASH_SLOTS + reopenings
    assert statuses.count(401) <= allowed, (statuses.count(401), lasted)
    assert statuses.count(429) >= 200 - allowed
    assert peak - before < (HASH_SLOTS + 2) * ARGON2_MIB, (before, peak)
    assert signed_in.status_code == 200 and signed_in.json()["email"] == email
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert blocked.json()["error"]["type"] == "rate_limit_error"


def test_a_flood_from_many_addresses_closes_the_account_except_where_its_owner_signs_in(
    database_url: str, tmp_path: Path
) -> None:
    """200 wrong passwords in parallel, each from an address of its own, so no address's door
    ever closes: the account's door does, after `FREE_PER_ACCOUNT` failures. Then the owner
    still signs in from an address they signed in from before (a new address waits while the
    door is closed: `tests/integration/test_login_throttle.py`)."""
    with _gateway_with_owner(database_url, tmp_path) as (url, owner_login, _):
        home = {"X-Forwarded-For": "192.0.2.7"}
        assert httpx.post(url, json=owner_login, headers=home).status_code == 200

        def attempt(n: int) -> int:
            spread = {"X-Forwarded-For": f"10.{n // 250}.{n % 250}.9"}
            body = {"email": owner_login["email"], "password": f"guess-{n}"}
            return httpx.post(url, json=body, headers=spread, timeout=120).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            statuses = list(pool.map(attempt, range(200)))
        lasted = time.monotonic() - started
        at_home = httpx.post(url, json=owner_login, headers=home)
    checked = statuses.count(401)
    # Each time the door reopens (after 1, 2, 4, ... s) every slot holder may pass its check
    # before the first of them counts its failure.
    reopenings = 1 + math.ceil(math.log2(1 + lasted / BASE_DELAY_S))
    allowed = FREE_PER_ACCOUNT + HASH_SLOTS * (1 + reopenings)
    print({"checked": checked, "allowed": allowed, "refused": statuses.count(429), "s": lasted})
    assert set(statuses) <= {401, 429}
    assert checked <= allowed, (checked, lasted)
    assert at_home.status_code == 200
