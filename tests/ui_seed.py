"""Test data for the console: a real store seeded with decisions whose crops come from simulator scenes,
users of every role, and the station's web app with the console mounted (no running pipeline)."""

from __future__ import annotations

import functools
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI

from station.api import StatusSnapshot, create_app
from station.config import StationConfig
from station.detections import Detections
from station.events import Actuation, Alarm, Decision, Reason, Severity, new_id
from station.frames import Frame
from station.live import LiveView
from station.metrics import StationMetrics
from station.simulator import ItemMaker
from station.simulator.render import render_scene
from station.store import Store
from station.taxonomy import Stream, load_taxonomy
from ui.auth import hash_password
from ui.settings import Console, ConsoleSettings

PASSWORD = "correct horse battery"
ROLES = ("operator", "engineer", "manager", "admin")
T_NOW = time.time()


class Running:
    def snapshot(self) -> StatusSnapshot:
        return StatusSnapshot(running=True, source_ok=True, model_version="m-test", fps=30.0)


@dataclass(frozen=True)
class Spec:
    """One seeded decision: what the station decided and why."""

    key: str
    class_name: str
    votes: dict[str, float]
    stream: Stream | None = None
    reason: Reason = Reason.OK
    hazard: str | None = None
    bin: str | None = None
    age_s: float = 60.0


SPECS = (
    Spec("plastic", "plastic", {"plastic": 9.0, "can": 1.0}, age_s=50),
    Spec("can", "can", {"can": 8.0, "metal": 2.0}, age_s=45),
    Spec("unsure", "keyboard", {"keyboard": 4.8, "mouse": 4.2, "pcb": 1.0}, Stream.MANUAL, Reason.LOW_CONFIDENCE,
         age_s=40),
    Spec("near_hazard", "cable", {"cable": 8.8, "battery": 1.2}, age_s=35),
    Spec("paper", "paper", {"paper": 9.5, "plastic": 0.5}, age_s=30),
    Spec("battery", "battery", {"battery": 9.0, "phone": 1.0}, hazard="battery", bin="hazard", age_s=20),
)


@dataclass
class Seeded:
    cfg: StationConfig
    store: Store
    live: LiveView
    ids: dict[str, str] = field(default_factory=dict)
    alarms: dict[str, str] = field(default_factory=dict)


def _scene(class_name: str, seed: int, size: tuple[int, int] = (480, 360)) -> tuple[np.ndarray, tuple[float, ...]]:
    rng = np.random.default_rng(seed)
    scene = render_scene(rng, ItemMaker([class_name]), size[0], size[1], (1, 1))
    label = scene.labels[0] if scene.labels else None
    box = label.box if label else (100, 100, 220, 200)
    return scene.image, tuple(float(v) for v in box)


def _crop(image: np.ndarray, box: tuple[float, ...], pad: float) -> np.ndarray:
    x1, y1, x2, y2 = box
    px, py = (x2 - x1) * pad, (y2 - y1) * pad
    h, w = image.shape[:2]
    a, b, c, d = max(int(x1 - px), 0), max(int(y1 - py), 0), min(int(x2 + px), w), min(int(y2 + py), h)
    return np.ascontiguousarray(image[b:d, a:c])


def record(seeded: Seeded, spec: Spec, seed: int) -> str:
    tax = load_taxonomy()
    image, box = _scene(spec.class_name, seed)
    total = sum(spec.votes.values())
    stream = spec.stream or tax.stream_of(spec.class_name)
    d = Decision(item_id=new_id(), station_id="station-1", track_id=seed, frame_index=seed * 10, crossed_at=seed,
                 crossed_ticks=None, class_name=spec.class_name, stream=stream, hazard=spec.hazard,
                 confidence=spec.votes[spec.class_name] / total, votes=dict(spec.votes), observations=9,
                 reason=spec.reason, box=(box[0], box[1], box[2], box[3]), model_version="m-test",
                 detail="vote share 0.48 < 0.45" if spec.reason is Reason.LOW_CONFIDENCE else "",
                 decided_at_wall=T_NOW - spec.age_s, crop=_crop(image, box, seeded.cfg.decision.crop_padding))
    bin_name = spec.bin or ("manual" if stream is Stream.MANUAL else stream.value)
    if bin_name not in seeded.cfg.routing.bins:
        bin_name = "residual"
    seeded.store.record(d, Actuation(new_id(), d.item_id, bin_name, 1, seed + 2.0, None, d.decided_at_wall + 2))
    if spec.hazard:
        alarm = Alarm(kind=f"hazard.{spec.hazard}", message=f"{spec.hazard} hazard: {spec.class_name} → bin {bin_name}",
                      severity=Severity.CRITICAL, item_id=d.item_id, raised_at=d.decided_at_wall)
        seeded.store.add_alarm(alarm)
        seeded.alarms[spec.key] = alarm.alarm_id
    return d.item_id


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


def _seed_into(tmp: Path, users: bool) -> tuple[dict[str, str], dict[str, str]]:
    seeded = Seeded(_config(tmp), Store.open(_config(tmp).store.url, tmp / "evidence"), LiveView())
    try:
        for n, spec in enumerate(SPECS, start=1):
            seeded.ids[spec.key] = record(seeded, spec, n)
        if users:
            from ui.repo import ConsoleRepo

            repo = ConsoleRepo(seeded.store)
            for name, role in (*((r, r) for r in ROLES), ("operator2", "operator")):
                repo.add_user(name, _password_hash(), role)
    finally:
        seeded.store.close()
    return seeded.ids, seeded.alarms


def _config(tmp: Path) -> StationConfig:
    return StationConfig.model_validate({"store": {"url": f"sqlite:///{tmp / 'station.db'}",
                                                   "evidence_dir": str(tmp / "evidence")}})


_TEMPLATES: dict[bool, tuple[Path, dict[str, str], dict[str, str]]] = {}


def seed(tmp: Path, users: bool = True) -> Seeded:
    """A fresh store under ``tmp`` with the seeded decisions (and users): copied from one made per process."""
    if users not in _TEMPLATES:
        template = Path(tempfile.mkdtemp(prefix="sortloop-ui-seed-"))
        _TEMPLATES[users] = (template, *_seed_into(template, users))
    template, ids, alarms = _TEMPLATES[users]
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template, tmp, dirs_exist_ok=True)
    cfg = _config(tmp)
    seeded = Seeded(cfg, Store.open(cfg.store.url, tmp / "evidence"), LiveView(load_taxonomy()), dict(ids),
                    dict(alarms))
    image, _ = _scene("can", 99, (640, 400))
    seeded.live.publish(Frame(image, 1, 1.0), Detections.empty(), [], [], 0.5)
    return seeded


def console_app(seeded: Seeded, settings: ConsoleSettings | None = None,
                host: str = "127.0.0.1") -> tuple[FastAPI, Console]:
    from ui.app import mount_console

    cfg = seeded.cfg.model_copy(update={"api": seeded.cfg.api.model_copy(update={"host": host})})
    app = create_app(seeded.store, Running(), seeded.live, StationMetrics(), cfg)
    console = mount_console(app, None, cfg, settings=settings or ConsoleSettings())
    return app, console


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: FastAPI, live: LiveView, host: str = "127.0.0.1") -> Iterator[str]:
    """The app under a real uvicorn on ``host`` (reached through 127.0.0.1); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        live.close()
        server.should_exit = True
        thread.join(20)
