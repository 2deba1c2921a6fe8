"""Test helpers for the access policy: users with a live session, without the console or a password hash."""

from __future__ import annotations

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
