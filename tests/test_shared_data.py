"""The ../shared rule itself: under ``CI=true`` a missing shared file fails the run and names the file; elsewhere
the tests that need it skip, naming it; with ``../shared`` beside a clone anywhere, nothing skips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import shared_data
from shared_data import needs_shared, shared_file

HERE = Path(__file__).resolve().parent

USER_TEST = '''
from shared_data import SHARED, needs_shared, shared_file

pytestmark = needs_shared(SHARED / "weights" / "model.pt")


def test_reads_the_weights():
    assert shared_file(SHARED / "weights" / "model.pt").read_text() == "w"
'''


@pytest.mark.parametrize(("ci", "raises"), [("true", FileNotFoundError), ("", None), ("false", None)])
def test_needs_shared_fails_only_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str,
                                          raises: type[Exception] | None) -> None:
    missing = tmp_path / "shared" / "weights" / "absent.pt"
    monkeypatch.setenv("CI", ci)
    if raises is not None:
        with pytest.raises(raises, match=re.escape("absent.pt missing: CI needs ../shared")):
            needs_shared(missing)
        return
    mark = needs_shared(missing)
    assert mark.args == (True,) and str(missing) in mark.kwargs["reason"]


def test_shared_file_fails_under_ci_and_skips_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "absent.jpg"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=re.escape("absent.jpg is missing: CI needs ../shared")):
        shared_file(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=re.escape("absent.jpg is missing")):
        shared_file(missing)
    present = tmp_path / "present.jpg"
    present.write_bytes(b"x")
    assert shared_file(present) == present


def _clone(root: Path, with_shared: bool) -> Path:
    """A checkout at ``root/clone`` with the helper and one test that reads ``../shared``."""
    tests = root / "clone" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(Path(shared_data.__file__), tests / "shared_data.py")
    (tests / "test_user.py").write_text(USER_TEST)
    if with_shared:
        (root / "shared" / "weights").mkdir(parents=True)
        (root / "shared" / "weights" / "model.pt").write_text("w")
    return root / "clone"


@pytest.mark.parametrize(("with_shared", "ci", "code", "said"), [
    (True, "true", 0, "1 passed"),
    (True, "", 0, "1 passed"),
    (False, "", 0, "1 skipped"),
    (False, "true", 2, "CI needs ../shared beside the checkout"),
])
def test_a_clone_anywhere(tmp_path: Path, with_shared: bool, ci: str, code: int, said: str) -> None:
    clone = _clone(tmp_path, with_shared)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(clone / "tests")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests"],
                         cwd=clone, env=env, capture_output=True, text=True, timeout=120, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == code, out
    assert said in out
    if not with_shared:
        assert str(tmp_path / "shared" / "weights" / "model.pt") in out  # the missing file is named
