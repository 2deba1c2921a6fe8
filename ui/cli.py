"""The ``sortloop`` command: the runtime's commands, plus training and console commands."""

from __future__ import annotations

from station.cli import app


def _register() -> None:
    from training.cli import register as register_training

    register_training(app)


def main() -> None:
    _register()
    app()
