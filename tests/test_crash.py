"""kill -9 the station at random moments: nothing committed is lost, no actuation is sent twice."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from servers import MqttSubscriber

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "sortloop-default.onnx"


def committed(db: Path) -> set[str]:
    if not db.exists():
        return set()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0] for r in con.execute("select item_id from items")}
    except sqlite3.OperationalError:  # tables not made yet
        return set()
    finally:
        con.close()


def statuses(db: Path) -> Counter[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return Counter(r[0] for r in con.execute("select status from actuations"))
    finally:
        con.close()


def write_config(tmp_path: Path, broker: tuple[str, int]) -> Path:
    cfg = {
        "source": {"kind": "simulator", "realtime": True},
        "simulator": {"items_per_min": 150, "seed": 1},
        "model": {"path": str(DEFAULT_MODEL), "watch_registry": False},
        "actuator": {"kind": "mqtt", "host": broker[0], "port": broker[1], "timeout_s": 2.0,
                     "allow_simulated_source": True},
        "store": {"url": f"sqlite:///{tmp_path}/station.db", "evidence_dir": str(tmp_path / "evidence")},
    }
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_kill_9_loses_nothing_and_never_fires_twice(tmp_path: Path, mosquitto: tuple[str, int]) -> None:
    config, db = write_config(tmp_path, mosquitto), tmp_path / "station.db"
    sub = MqttSubscriber(*mosquitto, topic="sortloop/station-1/eject/#")
    rng = random.Random(20261125)
    seen: set[str] = set()
    cmd = [sys.executable, "-m", "station", "run", "--headless", "--config", str(config)]
    for kill in range(20):
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(4.0, 9.0))
        before = committed(db)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        after = committed(db)
        assert before <= after, f"kill {kill}: committed items vanished: {sorted(before - after)[:5]}"
        assert seen <= after, f"kill {kill}: items from earlier runs vanished"
        seen |= after
    # a last clean run reconciles what the kills left behind
    proc = subprocess.Popen([*cmd, "--duration", "6"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    final = committed(db)
    assert seen <= final and len(final) >= 20
    commands: Counter[str] = Counter()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            msg = sub.next(timeout_s=0.5)
        except TimeoutError:
            continue
        commands[json.loads(msg.payload)["actuation_id"]] += 1
    twice = [a for a, n in commands.items() if n > 1]
    assert not twice, f"actuations sent twice: {twice[:5]}"
    st = statuses(db)
    assert st["pending"] == 0 and st["sending"] == 0, f"unreconciled actuations after restart: {st}"
    sub.close()
