"""Fault injection around a running station: inject, hold, clear, then measure what the issue asks for.

A ``FaultRun`` starts a real station (simulator or video source, the default model, a real SQLite store and a
real actuator peer), injects a fault, clears it, waits until the station has recovered on its own, and
reads the store back: ``Row`` holds the alarm delay, the items sent to the fail-safe bin, the decisions lost
(decided but not stored), the commands handed to the peer after their deadline, and the recovery time.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from station.config import StationConfig
from station.health import Level
from station.runtime import Built, build_station

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "sortloop-default.onnx"

Handed = tuple[float, float]
"""(when the command reached the peer, its fire time), wall seconds."""


def station_config(store_dir: Path, evidence_dir: Path, actuator: dict[str, Any] | None = None,
                   source: dict[str, Any] | None = None, **sections: dict[str, Any]) -> StationConfig:
    data: dict[str, Any] = {
        "source": source or {"kind": "simulator", "realtime": True},
        "simulator": {"items_per_min": 150, "seed": 3},
        "model": {"path": str(DEFAULT_MODEL), "watch_registry": False},
        # a real peer (PLC, broker) driven by simulated items: the bench-test switch says so on purpose
        "actuator": {**actuator, "allow_simulated_source": True} if actuator else {"kind": "simulated"},
        "store": {"url": f"sqlite:///{store_dir}/station.db", "evidence_dir": str(evidence_dir),
                  "retry_initial_s": 0.2, "retry_max_s": 1.0},
        "pipeline": {"dead_retry_s": 5.0},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return StationConfig.model_validate(data)


@dataclass
class Row:
    fault: str
    alarm_s: float | None
    to_failsafe: int
    lost: int
    late_fires: int
    recovery_s: float | None
    decisions: int
    sent: int
    sent_after_recovery: int
    failing_reasons: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    alarm_at: dict[str, float] = field(default_factory=dict)
    """Each alarm kind's first raise (wall time)."""
    statuses: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def line(self) -> str:
        def num(v: float | None) -> str:
            return "—" if v is None else f"{v:.2f}"

        return (f"| {self.fault} | {num(self.alarm_s)} | {self.to_failsafe} | {self.lost} | {self.late_fires} | "
                f"{num(self.recovery_s)} | {self.decisions} | {self.sent_after_recovery} | {self.note} |")


class MqttCommands:
    """Every eject command the broker delivers, with its arrival time; resubscribes after a broker restart."""

    def __init__(self, host: str, port: int, topic: str = "sortloop/+/eject/#") -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2)
        c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *_: self._subscribed.set()
        c.on_message = lambda _c, _u, m: self._add(json.loads(m.payload))
        c.reconnect_delay_set(min_delay=1, max_delay=1)
        c.connect(host, port)
        c.loop_start()
        self._client = c
        if not self._subscribed.wait(5):
            raise TimeoutError(f"no SUBACK from {host}:{port}")

    def _add(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self.got.append((time.time(), payload))

    def handed(self) -> list[Handed]:
        """(published at, fire at): when the station handed each command over."""
        with self._lock:
            return [(p["sent_at_wall"], p["fire_at_wall"]) for _, p in self.got]

    def delivered_late(self) -> int:
        """Commands the broker delivered after their fire time (a consumer drops them; the station had sent
        them in time)."""
        with self._lock:
            return sum(1 for at, p in self.got if at > p["fire_at_wall"])

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def modbus_handed(latched: list[Any], latched_at: list[float]) -> list[Handed]:
    """(latched at, fire at) from the simulated PLC's log; the target is ms mod 2**32, unwrapped near now."""
    out = []
    for cmd, at in zip(latched, latched_at, strict=True):
        now_ms = round(at * 1000)
        delta = (cmd.fire_at_ms - now_ms) % 2**32
        delta = delta - 2**32 if delta >= 2**31 else delta
        out.append((at, (now_ms + delta) / 1000))
    return out


class FaultRun:
    """Run ``built``'s station through one fault and measure it."""

    def __init__(self, name: str, cfg: StationConfig, handed: Callable[[], list[Handed]] | None = None) -> None:
        self.name, self.cfg = name, cfg
        self.built: Built = build_station(cfg, keep_results=True)
        self.st = self.built.station
        self.db = Path(str(cfg.store.url).removeprefix("sqlite:///"))
        self._handed = handed or self._simulated_handed
        self.failing: set[str] = set()
        self.t_fault = self.t_clear = 0.0

    def _simulated_handed(self) -> list[Handed]:
        sent = getattr(self.st.actuator, "sent", [])
        return [(c.sent_at_wall, c.actuation.fire_at_wall) for c in sent]

    def _watch(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            h = self.st.health()
            if h.level is Level.FAILING:
                self.failing.update(r.code for r in h.reasons if r.level is Level.FAILING)
            time.sleep(0.1)

    def _wait_decisions(self, n: int, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while self.st.stats.decisions < n and time.monotonic() < end:
            time.sleep(0.1)
        assert self.st.stats.decisions >= n, f"{self.name}: only {self.st.stats.decisions} decisions before the fault"

    def _recovered(self) -> bool:
        st = self.st
        return not st.failsafe_reasons and not len(st.spool) and st.health().level is not Level.FAILING

    def run(self, inject: Callable[[], None], clear: Callable[[], None], *, hold_s: float,
            at_start: bool = False, warmup: int = 2, after_s: float = 5.0, timeout_s: float = 60.0) -> Row:
        st = self.st
        if at_start:
            self.t_fault = time.time()
            inject()
            st.start()
        else:
            st.start()
            self._wait_decisions(warmup, 90)
            self.t_fault = time.time()
            inject()
        self._watch(hold_s)
        clear()
        self.t_clear = time.time()
        recovery = None
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self._recovered():
                recovery = time.time() - self.t_clear
                break
            self._watch(0.1)
        t_recovered = time.time()
        sent_before = len(self._handed())
        self._wait_more(sent_before, after_s)
        st.stop()
        return self._measure(recovery, t_recovered)

    def _wait_more(self, sent_before: int, after_s: float) -> None:
        """Give the recovered station time to send commands again (at most 3 × ``after_s``)."""
        end = time.monotonic() + 3 * after_s
        time.sleep(after_s)
        while len(self._handed()) == sent_before and time.monotonic() < end:
            time.sleep(0.2)

    def _measure(self, recovery: float | None, t_recovered: float) -> Row:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            items = con.execute("select i.item_id, i.bin, a.status, i.decided_at from items i "
                                "join actuations a using (item_id)").fetchall()
            alarms = con.execute("select kind, severity, raised_at from alarms where raised_at >= ? "
                                 "order by raised_at", (self.t_fault - 0.01,)).fetchall()
        finally:
            con.close()
        stored = {r[0] for r in items}
        decided = {d.item_id for d in self.st.decisions}
        margin = self.cfg.actuator.deadline_margin_s
        handed = self._handed()
        fs = self.cfg.routing.failsafe_bin
        critical = [t for _, sev, t in alarms if sev == "critical"]
        return Row(
            fault=self.name, alarm_s=(min(critical) - self.t_fault) if critical else None,
            to_failsafe=sum(1 for _, b, status, _ in items if b == fs and status in ("missed", "failed")),
            lost=len(decided - stored), late_fires=sum(1 for at, fire in handed if at > fire - margin),
            recovery_s=recovery, decisions=len(decided), sent=len(handed),
            sent_after_recovery=sum(1 for at, _ in handed if at >= t_recovered),
            failing_reasons=sorted(self.failing), alarms=[k for k, _, _ in alarms],
            alarm_at={k: t for k, _, t in reversed(alarms)},
            statuses=dict(Counter(r[2] for r in items)),
        )


def report(row: Row, out: Path | None) -> None:
    """Print the row (pytest -s shows it) and append it to ``out`` (JSON lines) when given."""
    print(row.line())
    if out is not None:
        with out.open("a") as fh:
            fh.write(json.dumps(row.__dict__) + "\n")
