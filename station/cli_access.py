"""``sortloop tokens create|list|revoke``: service tokens for machines (a Prometheus scraper, a wall screen, a
PLC gateway that acknowledges alarms). A token is shown once; the station keeps only its hash."""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from station.store.access import AccessRepo

tokens_app = typer.Typer(no_args_is_help=True, help="Service tokens for machines (scopes: metrics, read, ack).")
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Station config YAML.")]


def access_repo(config: Path | None) -> AccessRepo:
    from station.cli import _load
    from station.store import Store
    from station.store.access import AccessRepo

    return AccessRepo(Store.from_config(_load(config)))


def cli_actor() -> str:
    """Who runs the command, as the audit log names them."""
    return f"cli:{getpass.getuser()}"


def when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@tokens_app.command("create")
def create_token(
    name: Annotated[str, typer.Option("--name", help="What uses the token, e.g. prometheus.")],
    scope: Annotated[str, typer.Option("--scope", help="metrics (/metrics) | read (items, throughput, alarms, "
                                                       "live view) | ack (read alarms and acknowledge them)")],
    config: ConfigOpt = None,
) -> None:
    """Create a token and print it once (send it as ``Authorization: Bearer <token>``)."""
    from station.cli import fail
    from station.store.access import TokenExistsError

    repo = access_repo(config)
    try:
        record, secret = repo.create_token(name, scope)
    except (ValueError, TokenExistsError) as exc:
        raise fail(str(exc)) from None
    repo.audit("token.create", cli_actor(), record.name, record.scope)
    typer.echo(secret)
    typer.echo(f"token {record.name} ({record.scope}) created; it is shown only now: keep it in the client's "
               "secret store", err=True)


@tokens_app.command("list")
def list_tokens(config: ConfigOpt = None) -> None:
    """Tokens with their scope, creation and last use (the secrets are not kept)."""
    for t in access_repo(config).tokens():
        state = f"revoked {when(t.revoked_at)}" if t.revoked_at else "active"
        typer.echo(f"{t.name}\t{t.scope}\tcreated {when(t.created_at)}\tlast used {when(t.last_used_at)}\t{state}")


@tokens_app.command("revoke")
def revoke_token(name: Annotated[str, typer.Argument(help="Token name.")], config: ConfigOpt = None) -> None:
    """Revoke a token: the next request with it is refused."""
    from station.cli import fail
    from station.store import NotFoundError

    repo = access_repo(config)
    try:
        record = repo.revoke_token(name)
    except NotFoundError as exc:
        raise fail(str(exc)) from None
    repo.audit("token.revoke", cli_actor(), record.name, record.scope)
    typer.echo(f"token {record.name} revoked")
