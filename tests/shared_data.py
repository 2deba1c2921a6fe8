"""Where the tests find ``../shared`` (beside the checkout, as CI has it), and what a missing file does: under
``CI=true`` it fails the run, naming the file; elsewhere the tests that need it skip, saying why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _missing(paths: tuple[Path, ...]) -> list[Path]:
    return [p for p in paths if not p.exists()]


def needs_shared(*paths: Path) -> pytest.MarkDecorator:
    """A skip mark for tests that read ``paths``; under CI a missing one is an error when the module loads."""
    missing = _missing(paths)
    if missing and os.environ.get("CI") == "true":
        raise FileNotFoundError(f"{', '.join(map(str, missing))} missing: CI needs ../shared beside the checkout")
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(map(str, missing))} missing (../shared)")


def shared_file(path: Path) -> Path:
    """``path`` when it is there; inside a test, a missing one fails under CI and skips elsewhere."""
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: CI needs ../shared beside the checkout")
        pytest.skip(f"{path} is missing (../shared beside the checkout)")
    return path
