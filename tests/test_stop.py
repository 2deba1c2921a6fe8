"""Stopping the station with Ctrl-C or SIGTERM is a clean stop: workers joined, a shutdown line, exit 0, no
abort from a native thread left running (``terminate called without an active exception``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from servers import HOST, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("served", "sig"), [(True, signal.SIGINT), (True, signal.SIGTERM),
                                             (False, signal.SIGTERM)], ids=["served-int", "served-term",
                                                                            "headless-term"])
def test_a_signal_stops_the_station_cleanly(tmp_path: Path, served: bool, sig: signal.Signals) -> None:
    port = free_port()
    cfg = {"source": {"kind": "simulator", "realtime": True}, "model": {"watch_registry": False},
           "store": {"url": f"sqlite:///{tmp_path}/station.db", "evidence_dir": str(tmp_path / "evidence")},
           "api": {"host": HOST, "port": port}}
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    args = [sys.executable, "-m", "station", "run", "--config", str(path), *([] if served else ["--headless"])]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "YOLO_OFFLINE": "1"})
    try:
        if served:
            wait_for_port(HOST, port, timeout_s=90, alive=lambda: proc.poll() is None)
        time.sleep(8)  # frames flowing through every worker
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "terminate called" not in out and "Traceback" not in out, out[-2000:]
    assert proc.returncode == 0, out[-2000:]
    assert "station station-1 stopped" in out, out[-2000:]
