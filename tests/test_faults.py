"""Faults that are not crashes lose nothing (issue 20): each fault is injected into a running station on the
simulator (or a video), held, and cleared; the station must alarm (and store the alarm), route the items it
cannot handle to the fail-safe bin, lose no decision, fire no command after its deadline, and recover on its
own. ``SORTLOOP_FAULT_TABLE=path pytest -s -m slow tests/test_faults.py`` also writes each measured row.

Real parts throughout: SQLite files, a tmpfs that fills up or turns read-only (root; otherwise skipped or a
read-only folder), a second process holding the database's write lock, mosquitto stopped or SIGSTOPped, a
simulated Modbus PLC powered off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from faultkit import FaultRun, MqttCommands, Row, modbus_handed, report, station_config
from servers import ModbusPeer, MosquittoBroker

from station.capture import SimulatorSource
from station.taxonomy import load_taxonomy

OUT = Path(os.environ["SORTLOOP_FAULT_TABLE"]) if os.environ.get("SORTLOOP_FAULT_TABLE") else None
IS_ROOT = os.geteuid() == 0


def check(row: Row, *, to_failsafe: bool = True) -> None:
    """What every fault must show."""
    report(row, OUT)
    assert row.alarm_s is not None, f"{row.fault}: no critical alarm stored after the fault: {row.alarms}"
    assert row.lost == 0, f"{row.fault}: {row.lost} decisions never stored"
    assert row.late_fires == 0, f"{row.fault}: {row.late_fires} commands handed over after their deadline"
    assert row.recovery_s is not None, f"{row.fault}: no recovery without a restart"
    assert row.sent_after_recovery >= 1, f"{row.fault}: no command sent after recovery"
    assert row.failing_reasons, f"{row.fault}: health never said failing"
    if to_failsafe:
        assert row.to_failsafe >= 1, f"{row.fault}: no item recorded in the fail-safe bin: {row.statuses}"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of our own (root only): it can be filled up or remounted read-only."""
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the file system is full (ENOSPC)."""
    filler = folder / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_store_on_a_full_disk(tmpfs: Path, mosquitto: tuple[str, int]) -> None:
    cmds = MqttCommands(*mosquitto)
    run = FaultRun("store on a full tmpfs (8 s)", station_config(
        tmpfs / "db", tmpfs / "evidence", {"kind": "mqtt", "host": mosquitto[0], "port": mosquitto[1]}),
        cmds.handed)
    filler: list[Path] = []
    row = run.run(lambda: filler.append(fill(tmpfs)), lambda: filler[0].unlink(), hold_s=8)
    cmds.close()
    check(row)
    assert "failsafe.store" in row.failing_reasons and "store.spool" in row.failing_reasons


def test_evidence_folder_read_only(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    if IS_ROOT:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(evidence)], check=True)

    def read_only(on: bool) -> None:
        if IS_ROOT:
            opt = "remount,ro" if on else "remount,rw"
            subprocess.run(["mount", "-o", opt, str(evidence)], check=True)
        else:
            for p in [evidence, *evidence.iterdir()]:
                p.chmod(0o555 if on else 0o755)

    try:
        run = FaultRun("evidence folder read-only (6 s)", station_config(tmp_path / "db", evidence))
        row = run.run(lambda: read_only(True), lambda: read_only(False), hold_s=6)
    finally:
        if IS_ROOT:
            subprocess.run(["umount", "-l", str(evidence)], check=False)
    check(row)
    assert "failsafe.store" in row.failing_reasons


LOCKER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
con.execute("ROLLBACK")
"""


@pytest.mark.slow
def test_database_locked_by_another_process(tmp_path: Path, mosquitto: tuple[str, int]) -> None:
    cmds = MqttCommands(*mosquitto)
    run = FaultRun("database write-locked by another process (20 s)", station_config(
        tmp_path / "db", tmp_path / "evidence", {"kind": "mqtt", "host": mosquitto[0], "port": mosquitto[1]}),
        cmds.handed)
    procs: list[subprocess.Popen[str]] = []

    def lock() -> None:
        p = subprocess.Popen([sys.executable, "-c", LOCKER, str(run.db)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"
        procs.append(p)

    def unlock() -> None:
        procs[0].communicate("\n", timeout=10)

    row = run.run(lock, unlock, hold_s=20)
    row.note = f"broker delivered {cmds.delivered_late()} late"
    cmds.close()
    check(row)
    assert "failsafe.store" in row.failing_reasons


@pytest.mark.parametrize("hung", [False, True], ids=["stopped", "hung"])
def test_broker_stopped_or_hung(tmp_path: Path, mosquitto_broker: MosquittoBroker, hung: bool) -> None:
    host, port = mosquitto_broker.address
    cmds = MqttCommands(host, port)
    run = FaultRun(f"MQTT broker {'hung (SIGSTOP)' if hung else 'stopped'} (6 s)", station_config(
        tmp_path / "db", tmp_path / "evidence", {"kind": "mqtt", "host": host, "port": port}), cmds.handed)
    if hung:
        row = run.run(mosquitto_broker.pause, mosquitto_broker.resume, hold_s=6)
    else:
        row = run.run(mosquitto_broker.stop, mosquitto_broker.start, hold_s=6)
    row.note = f"broker delivered {cmds.delivered_late()} late (sent in time)"
    cmds.close()
    check(row)
    assert {"failsafe.actuator", "failsafe.actuator.link"} & set(row.failing_reasons)


@pytest.mark.parametrize("at_start", [True, False], ids=["absent-at-start", "killed"])
def test_plc_absent_at_start_or_killed(tmp_path: Path, modbus_peer: ModbusPeer, at_start: bool) -> None:
    host, port = modbus_peer.address
    run = FaultRun(f"PLC {'absent at start' if at_start else 'killed'} (6 s)", station_config(
        tmp_path / "db", tmp_path / "evidence", {"kind": "modbus", "host": host, "port": port}),
        lambda: modbus_handed(list(modbus_peer.latched), list(modbus_peer.latched_at)))
    row = run.run(modbus_peer.stop, modbus_peer.start, hold_s=6, at_start=at_start)
    check(row)
    assert "failsafe.actuator.link" in row.failing_reasons


def sim_video(path: Path, frames: int) -> Path:
    """The simulator's frames (default scene, seed 3, 150 items/min) as an MJPG file."""
    cfg = station_config(path.parent, path.parent, source={"kind": "simulator", "realtime": False})
    src = SimulatorSource(cfg, load_taxonomy(), realtime=False)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), cfg.simulator.fps,
                         (cfg.simulator.width, cfg.simulator.height))
    for i, frame in enumerate(src):
        if i >= frames:
            break
        vw.write(frame.image)
    vw.release()
    return path


@pytest.mark.slow
def test_video_corrupted_mid_run(tmp_path: Path) -> None:
    video = sim_video(tmp_path / "belt.avi", 450)
    data = bytearray(video.read_bytes())
    a, b = int(len(data) * 0.45), int(len(data) * 0.47)
    data[a:b] = bytes((i * 131 + 7) % 256 for i in range(b - a))
    video.write_bytes(bytes(data))
    cfg = station_config(tmp_path / "db", tmp_path / "evidence",
                         source={"kind": "video", "uri": str(video), "realtime": True})
    run = FaultRun("video corrupted mid-run", cfg)
    st = run.st
    first_bad: list[float] = []
    corrupt_frame = st.corrupt_frame

    def seen(detail: str) -> None:  # note when the first bad frame came, then hand it on
        first_bad.append(time.time())
        corrupt_frame(detail)

    st.corrupt_frame = seen  # type: ignore[method-assign]
    st.start()
    run._watch(12)
    st.wait(30)
    assert first_bad, "no corrupt frame reported"
    run.t_fault = first_bad[0]
    row = run._measure(recovery=None, t_recovered=0.0)
    lost_at, back_at = row.alarm_at.get("failsafe.source"), row.alarm_at.get("source.restored")
    row.recovery_s = None if lost_at is None or back_at is None else back_at - lost_at
    row.note = f"{st.stats.corrupt_frames} corrupt frame(s) of {st.last_frame.index + 1 if st.last_frame else 0}"
    report(row, OUT)
    n = st.stats.corrupt_frames
    assert n >= 1 and f"sortloop_corrupt_frames_total {float(n)}".encode() in st.metrics.render()
    assert row.alarm_s is not None and row.recovery_s is not None, row.alarms
    assert row.lost == 0 and row.late_fires == 0
    assert st.last_frame is not None and st.last_frame.index >= 440  # it went on past the bad frames


def test_a_stop_while_the_store_refuses_keeps_every_decision_in_the_journal(tmp_path: Path) -> None:
    """Stopped while another process holds the database's write lock: what waited in memory moves to the
    journal, and the next start writes every decided item (none lost)."""
    import sqlite3

    from station.record import STORE_ERRORS
    from station.spool import Spool
    from station.store import Store

    journal = tmp_path / "journal" / "spool.jsonl"
    run = FaultRun("stop while the database is locked", station_config(
        tmp_path / "db", tmp_path / "evidence", store={"journal": str(journal), "busy_timeout_s": 0.2}))
    st = run.st
    st.start()
    run._wait_decisions(2, 90)
    p = subprocess.Popen([sys.executable, "-c", LOCKER, str(run.db)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"
        end = time.monotonic() + 30
        while len(st.spool) < 2 and time.monotonic() < end:
            time.sleep(0.1)
        assert len(st.spool) >= 2, "the store refused nothing: the test would prove nothing"
        st.stop()
    finally:
        p.communicate("\n", timeout=10)
    assert journal.is_file()
    decided = {d.item_id for d in st.decisions}
    store = Store.open(str(st.cfg.store.url), tmp_path / "evidence")
    try:
        restarted = Spool(8, keep_crops=0, journal=journal)
        assert len(restarted) >= 2
        restarted.flush(store, STORE_ERRORS)
        assert len(restarted) == 0
    finally:
        store.close()
    con = sqlite3.connect(run.db)
    stored = {r[0] for r in con.execute("select item_id from items")}
    con.close()
    assert decided and decided <= stored
