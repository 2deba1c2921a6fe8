"""The console's part of the ``sortloop`` command (the ``sortloop.commands`` entry point ``ui``).

Console commands: ``sortloop users create-admin`` (the first admin; there is no default password),
``users add|list|disable|enable|set-role|reset-password|unlock|sessions|end-sessions|end-session`` and
``sortloop audit`` (the audit log, as a table or CSV). The logic is ``ui.users``' (the console's Admin tab
runs the same); every change is audited and ends the user's sessions.
Registering also hooks the console's mount into ``sortloop run``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from station.cli import CONSOLE_HOOKS, ConfigOpt, app, fail

if TYPE_CHECKING:
    from ui.repo import ConsoleRepo
    from ui.users import UserAdmin

log = logging.getLogger(__name__)

users_app = typer.Typer(no_args_is_help=True, help="Console accounts (roles: operator, engineer, manager, admin).")
Role = Annotated[str, typer.Option("--role", "-r", help="operator | engineer | manager | admin")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin (scripts).")]


def _repo(config: Path | None) -> ConsoleRepo:
    from station.cli import _load
    from station.store import Store
    from ui.repo import ConsoleRepo

    return ConsoleRepo(Store.from_config(_load(config)))


def _password(username: str, from_stdin: bool) -> str:
    from ui.users import WeakPasswordError, check_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt(f"password for {username}", hide_input=True, confirmation_prompt=True)
    try:
        check_password(username, password)
    except WeakPasswordError as exc:
        raise fail(str(exc)) from None
    return password


def _admin(config: Path | None) -> UserAdmin:
    from station.cli_access import cli_actor
    from ui.users import UserAdmin

    return UserAdmin(_repo(config), cli_actor())


def _add(username: str, role: str, from_stdin: bool, config: Path | None) -> None:
    from station.store.models import ROLES
    from ui.users import UserChangeError

    if role not in ROLES:
        raise fail(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
    admin = _admin(config)
    password = _password(username, from_stdin)
    try:
        admin.add(username, role, password)
    except UserChangeError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"user {username} ({role}) created")


@users_app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(help="Admin user name.")] = "admin",
    password_stdin: PasswordStdin = False,
    config: ConfigOpt = None,
) -> None:
    """Create the first admin (asks for the password; there is no default one)."""
    if _repo(config).has_admin():
        raise fail("an admin exists already; add more with `sortloop users add NAME --role admin`")
    _add(username, "admin", password_stdin, config)


@users_app.command("add")
def add_user(
    username: Annotated[str, typer.Argument(help="User name.")],
    role: Role = "operator",
    password_stdin: PasswordStdin = False,
    config: ConfigOpt = None,
) -> None:
    """Add a console user with a role (asks for the password)."""
    _add(username, role, password_stdin, config)


@users_app.command("list")
def list_users(config: ConfigOpt = None) -> None:
    """List console users, their roles and states."""
    for u in _repo(config).users():
        marks = [m for m, on in (("disabled", u.disabled), ("locked", u.locked),
                                 ("must change password", u.must_change)) if on]
        typer.echo(f"{u.username}\t{u.role}" + "".join(f"  ({m})" for m in marks))


UserArg = Annotated[str, typer.Argument(help="User name.")]


def _change(action: str, username: str, config: Path | None, change: Callable[[UserAdmin], object],
            detail: str = "") -> None:
    """Apply a user change through ``ui.users`` (audited; it ends the user's sessions)."""
    from ui.users import UserChangeError

    try:
        change(_admin(config))
    except UserChangeError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{action}: {username}{f' ({detail})' if detail else ''}; their sessions are ended")


@users_app.command("disable")
def disable_user(username: UserArg, config: ConfigOpt = None) -> None:
    """Disable an account: it cannot log in and its sessions end now."""
    _change("user.disable", username, config, lambda a: a.disable(username))


@users_app.command("enable")
def enable_user(username: UserArg, config: ConfigOpt = None) -> None:
    """Enable a disabled account again."""
    _change("user.enable", username, config, lambda a: a.enable(username))


@users_app.command("set-role")
def set_role(username: UserArg, role: Role, config: ConfigOpt = None) -> None:
    """Change a user's role; their sessions end (the new role applies from the next login)."""
    _change("user.role", username, config, lambda a: a.set_role(username, role), role)


@users_app.command("reset-password")
def reset_password(username: UserArg, password_stdin: PasswordStdin = False, config: ConfigOpt = None) -> None:
    """Set a new password (asks for it) that the user must change at the next login; ends the user's sessions
    and lifts a lock."""
    password = _password(username, password_stdin)
    _change("user.password", username, config, lambda a: a.reset_password(username, password),
            "must change it at the next login")


@users_app.command("unlock")
def unlock_user(username: UserArg, config: ConfigOpt = None) -> None:
    """Lift the lock that too many failed logins put on an account."""
    _change("user.unlock", username, config, lambda a: a.unlock(username))


@users_app.command("sessions")
def list_sessions(username: Annotated[str | None, typer.Argument(help="Only this user's.")] = None,
                  config: ConfigOpt = None) -> None:
    """Live sessions: id, user, role, started, last seen, address."""
    from station.cli_access import when

    for s in _admin(config).sessions(username):
        typer.echo(f"{s.id}\t{s.username}\t{s.role}\tstarted {when(s.created_at)}\tseen {when(s.last_seen)}\t"
                   f"{s.address or '-'}")


@users_app.command("end-sessions")
def end_sessions(username: UserArg, config: ConfigOpt = None) -> None:
    """End every session of a user (they must log in again)."""
    _change("session.revoke", username, config, lambda a: a.end_sessions(username))


@users_app.command("end-session")
def end_session(session_id: Annotated[str, typer.Argument(help="Session id from `users sessions`.")],
                config: ConfigOpt = None) -> None:
    """End one session."""
    from ui.users import UserChangeError

    try:
        username = _admin(config).end_session(session_id)
    except UserChangeError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"session {session_id} of {username} ended")


def audit_command(
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the log as CSV to this file.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest entries to show.")] = 100,
    config: ConfigOpt = None,
) -> None:
    """The audit log: logins, failed logins, user and role changes, token use, acknowledgements."""
    from station.cli_access import access_repo, when
    from ui.audit import audit_csv

    rows = access_repo(config).audit_log(limit)
    if csv_out is not None:
        csv_out.write_text(audit_csv(rows))
        typer.echo(f"{len(rows)} entries written to {csv_out}")
        return
    for a in rows:
        typer.echo(f"{when(a.at)}\t{a.action}\t{a.actor}\t{a.target}\t{a.detail}\t{a.address}")


EXTRA_MODULES = ("gradio", "argon2", "reportlab")
"""What ``pip install 'sortloop[ui]'`` brings that the console and these commands need."""


def register_console() -> None:
    """Add the ``users`` and ``audit`` commands and hook the console into ``sortloop run`` (once)."""
    from ui.app import console_hook

    if not any(g.name == "users" for g in app.registered_groups):
        app.add_typer(users_app, name="users")
        app.command("audit")(audit_command)
    if console_hook not in CONSOLE_HOOKS:
        CONSOLE_HOOKS.append(console_hook)


def register(target: typer.Typer) -> None:
    """The ``sortloop.commands`` entry point: the console's commands (``users``, ``audit``, ``report``) and its
    mount into ``sortloop run``. Without the ui extra the commands are listed all the same and say which extra
    to install, and ``sortloop run`` serves the station's API alone (saying so)."""
    from station.cli import extra_missing, needs_extra
    from ui.report_cli import report_cmd

    why = extra_missing("ui", EXTRA_MODULES)
    guard = needs_extra("ui", EXTRA_MODULES)

    def users_need_extra() -> None:
        if why is not None:
            raise fail(why)

    if not any(g.name == "users" for g in target.registered_groups):
        target.add_typer(users_app, name="users", callback=users_need_extra)
        target.command("audit")(guard(audit_command))
        target.command("report")(guard(report_cmd))
    if why is not None:
        CONSOLE_HOOKS.append(lambda *_: log.warning("the operator console is not mounted: %s", why))
        return
    from ui.app import console_hook

    if console_hook not in CONSOLE_HOOKS:
        CONSOLE_HOOKS.append(console_hook)


def main() -> None:
    """The console script of installs made before the entry points (``sortloop = "ui.cli:main"``), kept so such a
    venv keeps working until it is reinstalled (``make setup``); the command is ``station.cli:main`` now."""
    from training.cli import register as register_training

    register_training(app)
    register(app)
    app()
