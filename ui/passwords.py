"""Password hashing: argon2id at OWASP's minimum cost (m = 19 MiB, t = 2, p = 1), and the check a login runs.

Kept apart from ``ui.auth`` and light to import, because the check runs in ``ui.login``'s hash process (a
separate, low-priority process: the frame loop never waits on a hash). One lane (p = 1) and 19 MiB instead
of argon2-cffi's default 4 lanes and 64 MiB: on a 2-core station a hash then takes one core for a short
while, not both. Hashes made with older parameters are still verified (argon2 keeps them in the hash) and
are re-made with these at the next good login.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP Password Storage Cheat Sheet, argon2id minimum configuration: 19 MiB, 2 iterations, 1 lane
MEMORY_KIB = 19 * 1024
TIME_COST = 2
LANES = 1
HASHER = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=LANES, type=Type.ID)


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than ``HASHER``'s (or is not an argon2 hash)."""
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a real password, only for timing")


def check_login(password_hash: str | None, password: str) -> tuple[bool, str | None]:
    """(password right, a new hash when the stored one has older parameters). With no stored hash (an unknown
    user) a dummy one is verified, so the answer takes as long and does not tell which names exist."""
    ok = verify_password(password_hash or _dummy_hash(), password)
    if not ok or password_hash is None:
        return False, None
    return True, hash_password(password) if needs_rehash(password_hash) else None
