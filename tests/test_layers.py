"""The package boundaries (STYLE.md, "Package boundaries"), read from the source: ``station`` imports neither
``training`` nor ``ui`` (not even inside a function), ``training`` never imports ``ui``, and no module is loaded
from a string. Every import statement of every module counts, wherever it stands; no module is executed."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("station", "training", "ui")


@dataclass(frozen=True)
class Import:
    module: str
    """The imported module, absolute (``ui.app``)."""
    where: str
    """``path:line`` of the statement."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module an ``from … import`` names, relative imports resolved against ``path``'s package."""
    if node.level == 0:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path) -> list[Import]:
    """Every module ``path`` imports, at the top, inside functions or under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, where) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, path)
            found.append(Import(module, where))
            # ``from station import api`` imports station.api
            found.extend(Import(f"{module}.{alias.name}", where) for alias in node.names)
    return found


def _string_loads(path: Path) -> list[str]:
    """Calls that load a module named by a computed string: ``importlib.import_module(x)``, ``__import__(x)``."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in {"import_module", "__import__"} and not isinstance(node.args[0], ast.Constant):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{imp.where}: imports {imp.module}" for path in modules(package) for imp in imports_of(path)
            if imp.module.split(".")[0] in forbidden]


@pytest.mark.parametrize(("package", "forbidden"), [
    ("station", ("training", "ui")),
    ("training", ("ui",)),
])
def test_layer_imports(package: str, forbidden: tuple[str, ...]) -> None:
    assert modules(package), f"no modules found under {ROOT / package}"
    bad = _violations(package, forbidden)
    assert not bad, f"{package} must not import {' or '.join(forbidden)}:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", ["pipeline", "health", "decide", "track", "route", "record", "runtime"])
def test_the_runtime_does_not_import_the_web_layer(module: str) -> None:
    """The frame loop and its status types stand without the web app (station.api, FastAPI, uvicorn)."""
    bad = [f"{i.where}: imports {i.module}" for i in imports_of(ROOT / "station" / f"{module}.py")
           if i.module.split(".")[0] in ("fastapi", "uvicorn", "starlette") or i.module.startswith("station.api")]
    assert not bad, "\n".join(bad)


def test_no_module_is_loaded_from_a_string() -> None:
    bad = [hit for package in PACKAGES for path in modules(package) for hit in _string_loads(path)]
    assert not bad, "modules loaded from a string (import them by name, or use an entry point):\n" + "\n".join(bad)


# ------------------------------------------------------------------------------------- the checker itself

@pytest.mark.parametrize(("source", "name", "expected"), [
    ("import ui.app\n", "station/x.py", {"ui.app"}),
    ("def f():\n    from training.train import train\n", "station/x.py", {"training.train", "training.train.train"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ui import repo\n", "station/x.py",
     {"typing", "typing.TYPE_CHECKING", "ui", "ui.repo"}),
    ("from . import api\n", "station/x.py", {"station", "station.api"}),
    ("from ..ui import app\n", "station/sub/x.py", {"station.ui", "station.ui.app"}),
    ("from .. import cli\n", "station/sub/__init__.py", {"station", "station.cli"}),
])
def test_imports_are_found_wherever_they_stand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str,
                                               name: str, expected: set[str]) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    assert {i.module for i in imports_of(path)} == expected


@pytest.mark.parametrize(("source", "flagged"), [
    ("import importlib\nimportlib.import_module(name)\n", True),
    ("from importlib import import_module\nimport_module(f'ui.{x}')\n", True),
    ("__import__(name)\n", True),
    ("import importlib\nimportlib.import_module('json')\n", False),
    ("__import__('json')\n", False),
])
def test_string_loads_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, flagged: bool) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    path = tmp_path / "m.py"
    path.write_text(source)
    assert bool(_string_loads(path)) == flagged
