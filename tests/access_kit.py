"""Test helpers for the access policy: users with a live session, without the console or a password hash."""

from __future__ import annotations

import os
import time

from station.store import Store
from station.store.access import AccessRepo

NO_HASH = "$argon2id$not-a-hash"  # nobody logs in with the form as these users


def sign_in(store: Store, username: str, role: str, ttl_s: float = 3600.0) -> str:
    """Create ``username`` with ``role`` (once) and return the cookie value of a new session."""
    repo = AccessRepo(store)
    if username not in {s.username for s in repo.sessions()} and not _exists(repo, username):
        repo.add_user(username, NO_HASH, role)
    return repo.open_session(username, ttl_s)


def _exists(repo: AccessRepo, username: str) -> bool:
    from sqlalchemy import select

    from station.store.models import User

    with repo.store.engine.connect() as conn:
        return conn.execute(select(User.username).where(User.username == username)).first() is not None


def nap(seconds: float) -> tuple[float, float, int, int]:
    """A stand-in for a hash in ``ui.login.HashPool``: (start, end, process id, niceness) of a sleep."""
    start = time.time()
    time.sleep(seconds)
    return start, time.time(), os.getpid(), os.nice(0)
