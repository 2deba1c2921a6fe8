"""The files the station ships: its taxonomy and its default config.

The repository keeps the one copy of each (``datasets/taxonomy.yaml``, ``configs/station.yaml``). Building the
wheel copies them into the package as ``station/shipped/`` (``setup.py``, the one thing ``pyproject.toml`` cannot
say), where an installed station reads them through ``importlib.resources``; a source checkout has no such copy
and reads the repository's own.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SHIPPED = {"taxonomy.yaml": "datasets/taxonomy.yaml", "station.yaml": "configs/station.yaml"}
"""Shipped name → the repository's file (setup.py copies them into the wheel)."""

_HERE = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The source checkout the station runs from (``pyproject.toml`` beside the package), else None."""
    root = _HERE.parent
    return root if (root / "pyproject.toml").is_file() and (root / "datasets").is_dir() else None


def shipped_file(name: str) -> Path:
    """A shipped file (a key of ``SHIPPED``): the installed package's copy, or in a checkout the repository's."""
    if name not in SHIPPED:
        raise KeyError(f"{name!r} is not a shipped file (known: {', '.join(SHIPPED)})")
    packaged = files("station") / "shipped" / name
    if isinstance(packaged, Path) and packaged.is_file():
        return packaged
    root = checkout_root()
    if root is None:
        raise FileNotFoundError(f"{name} is not installed with the station package ({packaged}); reinstall "
                                "sortloop from a wheel or a source checkout")
    return root / SHIPPED[name]
