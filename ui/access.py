"""Server-side permission checks for the console's tab handlers (reports, engineer view).

The permissions themselves are ``ui.auth``'s (``GRANTS``); this only reads the logged-in user out of the
tab's ``user_state`` and refuses, so a handler never trusts that a hidden tab could not be reached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ui.auth import DOING, ConsoleUser, NotLoggedInError, Perm, forbidden, roles_with


def as_user(value: object) -> ConsoleUser | None:
    """The ``ConsoleUser`` in a user state: the user, a mapping or a (username, role) pair; else None."""
    if value is None or isinstance(value, ConsoleUser):
        return value
    if isinstance(value, Mapping):
        name, role = value.get("username"), value.get("role")
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        name, role = value[0], value[1]
    else:
        name, role = getattr(value, "username", None), getattr(value, "role", None)
    return ConsoleUser(str(name), str(role)) if name and role else None


def require(value: object, perm: Perm) -> ConsoleUser:
    """The logged-in user if their role grants ``perm``; else ``NotLoggedInError`` or ``ForbiddenError``."""
    user = as_user(value)
    if user is None:
        raise NotLoggedInError(f"not logged in (401): log in to {DOING[perm]} (roles: "
                               f"{', '.join(roles_with(perm))})")
    if not user.can(perm):
        raise forbidden(user, perm)
    return user
