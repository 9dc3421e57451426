"""Sign-in throttling: a password guess costs the guesser time, and a flood costs bounded memory.

Two doors are watched in Redis (so every gateway replica sees the same counts): one email from
one address (``FREE_FAILURES`` failures allowed within ``WINDOW_S``), and one address whatever
the email (``FREE_PER_ADDRESS``, larger: many people may share an address). Past its
allowance a door closes for a delay that doubles with each further failure, up to
``MAX_DELAY_S``; a closed door answers 429 with ``Retry-After`` before any hash is computed.
A success opens the email's door from that address again. The same email from another
address is not held back by that door.

A third door watches the account whatever the address (``FREE_PER_ACCOUNT`` failures within
the window): a flood spread over many addresses, each under its own allowance, closes it, and
then every address is refused before any hash, except the addresses this account signed in
from before (``KNOWN_FOR_S``, 30 days): a distributed flood cannot guess on, and cannot lock
the owner out where they usually sign in. From a new address during such a flood the owner
waits like everyone else.

Every password check (argon2, 64 MiB each) also waits for one of the process-wide hashing
slots (`app.core.security.hash_slot`), so a flood that gets past the doors (many addresses)
still uses at most ``HASH_SLOTS`` x 64 MiB; a check that waits longer than ``HASH_WAIT_S`` is
refused with 429.
With Redis down the doors stay open (sign-in keeps working); the slots still hold.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import suppress

import redis

from app.core.errors import RateLimited

log = logging.getLogger(__name__)

FREE_FAILURES = 5
FREE_PER_ADDRESS = 100
FREE_PER_ACCOUNT = 20
KNOWN_FOR_S = 30 * 24 * 3600
WINDOW_S = 15 * 60
BASE_DELAY_S = 1.0
MAX_DELAY_S = 15 * 60.0


def _who(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def _doors(email: str, address: str) -> list[str]:
    who = _who(email)
    return [f"clora:login:{address}:{who}", f"clora:login:{address}"]


def _account(email: str) -> str:
    return f"clora:login:account:{_who(email)}"


def delay_after(failures: int) -> float:
    """How long a door stays closed after this many failures in the window."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (failures - FREE_FAILURES))


class LoginThrottle:
    """The doors of one Redis; see the module's description."""

    def __init__(self, client: redis.Redis, free_per_address: int = FREE_PER_ADDRESS) -> None:
        self.redis = client
        self.free_per_address = free_per_address

    def check(self, email: str, address: str) -> None:
        """Refuse with 429 while either door is closed."""
        try:
            waits = [self.redis.pttl(f"{door}:closed") for door in _doors(email, address)]
            account = _account(email)
            closed = self.redis.pttl(f"{account}:closed")
            if closed > 0 and not self.redis.sismember(f"{account}:known", address):
                waits.append(closed)
        except redis.RedisError:
            log.warning("sign-in throttle unavailable; admitting the attempt")
            return
        wait_ms = max(waits)
        if wait_ms > 0:
            raise RateLimited(
                "too many failed sign-ins; try again later",
                param="password",
                retry_after_s=wait_ms / 1000,
            )

    def failed(self, email: str, address: str) -> None:
        """Count a failure on both doors and close each one that is over its allowance."""
        pair, per_address = _doors(email, address)
        doors = (
            (pair, FREE_FAILURES),
            (per_address, self.free_per_address),
            (_account(email), FREE_PER_ACCOUNT),
        )
        try:
            for door, free in doors:
                pipe = self.redis.pipeline()
                pipe.incr(f"{door}:failures")
                pipe.expire(f"{door}:failures", WINDOW_S)
                failures = int(pipe.execute()[0])
                wait = delay_after(failures - free + FREE_FAILURES)
                if wait > 0:
                    self.redis.set(f"{door}:closed", 1, px=int(wait * 1000))
        except redis.RedisError:
            log.warning("sign-in throttle unavailable; failure not counted")

    def succeeded(self, email: str, address: str) -> None:
        """Open the email's door from this address, and know the address for the account."""
        pair, known = _doors(email, address)[0], f"{_account(email)}:known"
        with suppress(redis.RedisError):
            pipe = self.redis.pipeline()
            pipe.delete(f"{pair}:failures", f"{pair}:closed")
            pipe.sadd(known, address)
            pipe.expire(known, KNOWN_FOR_S)
            pipe.execute()
