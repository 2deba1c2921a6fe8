"""The ``sortloop`` command's parts: the station's own commands, and those the ``sortloop.commands`` entry points
of pyproject.toml add; a command whose extra is not installed says which one to install."""

from __future__ import annotations

import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from station.cli import PLUGIN_GROUP, extra_missing, load_plugins, needs_extra
from station.resources import SHIPPED, checkout_root, shipped_file

ROOT = Path(__file__).resolve().parents[1]


def declared_plugins() -> list[EntryPoint]:
    """The entry points pyproject.toml declares (the installed metadata may be older than the checkout)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["sortloop"] == "station.cli:main"
    group = project["entry-points"][PLUGIN_GROUP]
    return [EntryPoint(name, value, PLUGIN_GROUP) for name, value in group.items()]


def test_declared_parts_register_their_commands() -> None:
    app = typer.Typer()

    @app.command("run")
    def run() -> None:
        """The station's own."""

    assert load_plugins(app, declared_plugins()) == ["training", "ui"]
    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert {"train", "export", "eval", "promote", "data", "users", "audit", "report"} <= commands


def test_a_missing_extra_is_named() -> None:
    assert extra_missing("training", ("json",)) is None
    why = extra_missing("training", ("json", "sortloop_no_such_module"))
    assert why == ("needs the training extra: pip install 'sortloop[training]' (not installed: "
                   "sortloop_no_such_module)")


def test_a_guarded_command_says_which_extra() -> None:
    app = typer.Typer()
    ran: list[str] = []

    @app.command("build")
    @needs_extra("training", ("sortloop_no_such_module",))
    def build(out: str) -> None:
        ran.append(out)

    @app.command("list")
    @needs_extra("ui", ("json",))
    def listing(out: str) -> None:
        ran.append(out)

    result = CliRunner().invoke(app, ["build", "x"])
    assert result.exit_code == 2 and "needs the training extra: pip install 'sortloop[training]'" in result.output
    assert CliRunner().invoke(app, ["list", "y"]).exit_code == 0
    assert ran == ["y"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_files_are_the_repository_copies_in_a_checkout(name: str) -> None:
    assert checkout_root() == ROOT
    assert shipped_file(name) == ROOT / SHIPPED[name]
    assert shipped_file(name).is_file()


def test_an_unknown_shipped_file_is_refused() -> None:
    with pytest.raises(KeyError, match="is not a shipped file"):
        shipped_file("training.yaml")
