"""`make run` sets up what the station needs and nothing of the tests: read from `make -n -B` (every target
printed as if out of date, nothing run), so the check holds on a fresh clone as on a set-up one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_ONLY = ("chromium", "mosquitto", "[training,ui,dev,postgres]", "torch==", "playwright")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def dry_run(target: str, tmp_path: Path) -> str:
    out = subprocess.run(["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return out.stdout


@pytest.mark.parametrize(("target", "present", "absent"), [
    ("run", ("pip install -q -e '.[ui]'", "sortloop run --config configs/station.yaml", "libgl1"), TEST_ONLY),
    ("test", (*TEST_ONLY[:3], "pytest -q", "ruff check"), ()),
])
def test_run_installs_the_station_only_and_test_adds_the_test_tools(tmp_path: Path, target: str,
                                                                    present: tuple[str, ...],
                                                                    absent: tuple[str, ...]) -> None:
    plan = dry_run(target, tmp_path)
    for text in present:
        assert text in plan, f"`make {target}` should run {text!r}"
    for text in absent:
        assert text not in plan, f"`make {target}` should not reach {text!r}"
