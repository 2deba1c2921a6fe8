"""A station-only install: the wheel, built from this checkout, installed into a fresh virtual environment without
extras (no system site-packages, so a missing dependency or package file cannot hide), runs the station, its API
and the simulator; the training and console commands are listed and say which extra to install; one OpenCV wheel,
no torch, Gradio or psutil. Slow (a few minutes: the dependencies are installed); `make test-install` runs it and
`.ci/run` runs that."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "station", "training", "ui",
           "datasets", "configs")
MODELS = ("sortloop-default.onnx", "sortloop-crops.onnx")


def _env() -> dict[str, str]:
    """The environment without this checkout on the path nor the test's virtual environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(*args: str | Path, cwd: Path, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed, no extras; returns its bin folder."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    for name in SOURCES:  # a copy: building writes build/ and *.egg-info beside the sources
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", tmp / "dist", src, cwd=tmp)
    wheels = sorted((tmp / "dist").glob("sortloop-*.whl"))
    assert len(wheels) == 1, wheels
    _run(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp)
    bin_dir = tmp / "venv" / "bin"
    _run(bin_dir / "python", "-m", "pip", "install", "-q", wheels[0], cwd=tmp)
    return bin_dir


@pytest.fixture(scope="module")
def site(fresh: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A station's folder: the shipped models, nothing else (no configs/, no datasets/)."""
    folder = tmp_path_factory.mktemp("site")
    (folder / "models").mkdir()
    for name in MODELS:
        shutil.copy2(ROOT / "models" / name, folder / "models" / name)
    return folder


def test_one_opencv_and_no_training_or_console_packages(fresh: Path, site: Path) -> None:
    listed = _run(fresh / "python", "-m", "pip", "list", "--format", "json", cwd=site).stdout
    names = {p["name"].lower(): p["version"] for p in json.loads(listed)}
    opencv = sorted(n for n in names if "opencv" in n)
    print("pip list | grep -i opencv:", *(f"{n} {names[n]}" for n in opencv))
    assert opencv == ["opencv-python"], f"one cv2 wheel expected, found {opencv}"
    for heavy in ("torch", "ultralytics", "gradio", "argon2-cffi", "psutil"):
        assert heavy not in names, f"{heavy} is installed without any extra"


def test_help_lists_every_part(fresh: Path, site: Path) -> None:
    out = _run(fresh / "sortloop", "--help", cwd=site).stdout
    for command in ("run", "detect", "sim", "config", "tokens", "train", "data", "users", "report"):
        assert f" {command} " in out, f"`sortloop --help` does not list {command}:\n{out}"


@pytest.mark.parametrize(("args", "extra"), [
    (("data", "build", "out"), "training"),
    (("train",), "training"),
    (("users", "list"), "ui"),
    (("report", "--from", "2026-11-01", "--to", "2026-11-30"), "ui"),
])
def test_missing_extras_are_named(fresh: Path, site: Path, args: tuple[str, ...], extra: str) -> None:
    done = _run(fresh / "sortloop", *args, cwd=site, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"needs the {extra} extra: pip install 'sortloop[{extra}]'" in done.stderr


def test_headless_simulator_run_scores(fresh: Path, site: Path) -> None:
    done = _run(fresh / "sortloop", "run", "--headless", "--duration", "5", cwd=site, timeout=120)
    card = json.loads(done.stdout[done.stdout.index("{"):])
    assert card["items"] > 0 and card["decided"] > 0, card
    # relative paths land in the station's folder; a scored run keeps its own store, apart from the live one
    assert [p.relative_to(site).parts[:2] for p in site.glob("var/runs/*/sortloop.db")] == [("var", "runs")]
    assert not (site / "var" / "sortloop.db").exists()


def test_config_and_taxonomy_ship_in_the_wheel(fresh: Path, site: Path) -> None:
    code = ("from station.resources import shipped_file; from station.taxonomy import load_taxonomy; "
            "import station; print(shipped_file('station.yaml')); print(shipped_file('taxonomy.yaml')); "
            "print(len(load_taxonomy().names))")
    out = _run(fresh / "python", "-c", code, cwd=site).stdout.split()
    for path in out[:2]:
        assert "site-packages/station/shipped/" in path, out
    assert int(out[2]) > 0
    assert _run(fresh / "sortloop", "config", "check", out[0], "--no-connect", cwd=site).returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_served_station_answers(fresh: Path, site: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([str(fresh / "sortloop"), "run", "--duration", "20", "--port", str(port)], cwd=site,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, body = time.monotonic() + 60, b""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    body = resp.read()
                break
            except OSError:
                time.sleep(0.5)
        assert json.loads(body) == {"ok": True}
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "the operator console is not mounted: needs the ui extra" in out, out
