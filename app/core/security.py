"""Slow hashes for passwords and API keys, and the API key format."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.core.errors import RateLimited

_password_hasher = PasswordHasher()
# API keys are long random strings, so a lighter argon2 cost still makes a stolen
# hash useless; verified keys are cached per process (see app.tenants.service).
_key_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)

KEY_SCHEME = "clora"


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check of a password against its argon2 hash."""
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class NewApiKey:
    """A freshly minted key: ``plaintext`` is shown once and never stored."""

    plaintext: str
    prefix: str
    key_hash: str


def mint_api_key() -> NewApiKey:
    prefix = f"{KEY_SCHEME}_{secrets.token_hex(6)}"
    plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(plaintext=plaintext, prefix=prefix, key_hash=_key_hasher.hash(plaintext))


def split_api_key(plaintext: str) -> str | None:
    """The visible prefix of a well-formed key, or None for anything else."""
    parts = plaintext.split("_")
    if len(parts) < 3 or parts[0] != KEY_SCHEME or len(parts[1]) != 12 or len(plaintext) > 200:
        return None
    return f"{parts[0]}_{parts[1]}"


def verify_api_key(key_hash: str, plaintext: str) -> bool:
    try:
        return _key_hasher.verify(key_hash, plaintext)
    except (VerificationError, InvalidHashError):
        return False


def fingerprint(plaintext: str) -> str:
    """A cache key for a verified secret; never logged or stored."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


HASH_SLOTS = 2
"""Password hashes (argon2, 64 MiB each) a process computes at once: sign-in, a new password."""
HASH_WAIT_S = 10.0

_slots = threading.BoundedSemaphore(HASH_SLOTS)


@contextmanager
def hash_slot() -> Iterator[None]:
    """Hold one of the process's password-hashing slots (429 after ``HASH_WAIT_S``)."""
    if not _slots.acquire(timeout=HASH_WAIT_S):
        raise RateLimited("sign-in is busy; try again shortly", retry_after_s=1.0)
    try:
        yield
    finally:
        _slots.release()
