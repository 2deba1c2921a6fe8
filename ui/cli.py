"""The ``sortloop`` command: the runtime's commands, plus training and console commands.

Console commands: ``sortloop users create-admin`` (the first admin; there is no default password),
``users add`` and ``users list``. Registering also hooks the console's mount into ``sortloop run``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from station.cli import CONSOLE_HOOKS, ConfigOpt, app, fail

if TYPE_CHECKING:
    from ui.repo import ConsoleRepo

users_app = typer.Typer(no_args_is_help=True, help="Console accounts (roles: operator, engineer, manager, admin).")
Role = Annotated[str, typer.Option("--role", "-r", help="operator | engineer | manager | admin")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin (scripts).")]


def _repo(config: Path | None) -> ConsoleRepo:
    from station.cli import _load
    from station.store import Store
    from ui.repo import ConsoleRepo

    return ConsoleRepo(Store.from_config(_load(config)))


def _password(username: str, from_stdin: bool) -> str:
    from ui.auth import WeakPasswordError, check_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt(f"password for {username}", hide_input=True, confirmation_prompt=True)
    try:
        check_password(username, password)
    except WeakPasswordError as exc:
        raise fail(str(exc)) from None
    return password


def _add(username: str, role: str, from_stdin: bool, config: Path | None) -> None:
    from station.store.models import ROLES
    from ui.auth import hash_password
    from ui.repo import UserExistsError

    if role not in ROLES:
        raise fail(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
    repo = _repo(config)
    password = _password(username, from_stdin)
    try:
        repo.add_user(username, hash_password(password), role)
    except UserExistsError as exc:
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
    """List console users and their roles."""
    for u in _repo(config).users():
        typer.echo(f"{u.username}\t{u.role}{'  (disabled)' if u.disabled else ''}")


def register_console() -> None:
    """Add the ``users`` commands and hook the console into ``sortloop run`` (once)."""
    from ui.app import console_hook

    if not any(g.name == "users" for g in app.registered_groups):
        app.add_typer(users_app, name="users")
    if console_hook not in CONSOLE_HOOKS:
        CONSOLE_HOOKS.append(console_hook)


def _register() -> None:
    from training.cli import register as register_training
    from ui.report_cli import register_report_command

    register_training(app)
    register_console()
    register_report_command(app)


def main() -> None:
    _register()
    app()
