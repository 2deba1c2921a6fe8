"""Frame-parallel detection: several detect workers, one in-order stage.

The detect workers run the model on successive frames at once; tracking and decisions must still see every
frame once and in order, so a run decides exactly as a one-worker run does, and a frame whose detection
fails must not hold up the frames behind it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from station.config import PipelineConfig, StationConfig
from station.detect import Detector
from station.detections import Detections
from station.runtime import Built, build_station
from station.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "sortloop-default.onnx"
FRAMES = 420


def sim_station(tmp_path: Path, workers: int, frames: int = FRAMES) -> Built:
    cfg = StationConfig.model_validate({
        "source": {"kind": "simulator", "realtime": False, "max_frames": frames},
        "simulator": {"seed": 11},
        "model": {"path": str(DEFAULT_MODEL), "watch_registry": False, "threads": 1},
        "pipeline": {"detect_workers": workers},
        "store": {"url": f"sqlite:///{tmp_path}/station.db", "evidence_dir": str(tmp_path / "evidence")},
    })
    return build_station(cfg, keep_results=True)


def run(built: Built) -> None:
    built.station.start()
    built.station.wait(120)


@pytest.mark.parametrize(("cores", "configured", "expected"), [
    (1, None, 1), (2, None, 2), (16, None, 2), (2, 1, 1), (2, 3, 3),
])
def test_detect_worker_count(cores: int, configured: int | None, expected: int) -> None:
    assert PipelineConfig(detect_workers=configured).detect_worker_count(cores) == expected


def test_parallel_detection_decides_exactly_as_one_worker(tmp_path: Path) -> None:
    def decisions(workers: int) -> list[tuple[Any, ...]]:
        built = sim_station(tmp_path / f"w{workers}", workers)
        names = [w.name for w in built.station.workers]
        assert names == ["capture", *(f"detect-{i + 1}" for i in range(workers)), "act"]
        run(built)
        st = built.station
        assert st.stats.frames == FRAMES and st.last_frame is not None and st.last_frame.index == FRAMES - 1
        return [(d.track_id, d.frame_index, d.class_name, d.stream, round(d.crossed_at, 6), d.observations,
                 sorted(d.votes.items())) for d in st.decisions]

    one = decisions(1)
    assert len(one) >= 3, "the clip must hold decisions to compare"
    assert decisions(3) == one


class _FailsOnce:
    """The real detector, made to raise on its ``fail_at``-th call (a fault injected into one worker)."""

    def __init__(self, det: Detector, fail_at: int) -> None:
        self._det, self._fail_at, self._calls = det, fail_at, 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._det, name)

    def __call__(self, image: npt.NDArray[np.uint8]) -> Detections:
        with self._lock:
            self._calls += 1
            fail = self._calls == self._fail_at
        if fail:
            raise RuntimeError("injected inference fault")
        return self._det(image)


def test_a_failed_detection_is_alarmed_and_the_frames_behind_it_go_on(tmp_path: Path) -> None:
    built = sim_station(tmp_path, workers=2, frames=240)
    st = built.station
    st.swap_model(_FailsOnce(st._detector, fail_at=40))  # type: ignore[arg-type]
    run(built)
    assert st.stats.frames == 240, "every frame passes the in-order stage, the failed one included"
    assert st.last_frame is not None and st.last_frame.index == 239
    kinds = [a.kind for a in st.store.alarms()]
    assert "failsafe.worker.detect-1" in kinds or "failsafe.worker.detect-2" in kinds
    assert sum(w.restarts for w in st.workers if w.name.startswith("detect-")) == 1


class _CellOnItems:
    """The real detector, with a coin cell (a 24 px battery box) drawn on the trailing end of every large
    item it finds that is not itself a battery hazard: a battery lying on a rag, a board, a bottle. With
    ``after`` (a line x), only once the item's centre is 40 px past it: a cell the model sees late."""

    def __init__(self, det: Detector, after: float | None = None) -> None:
        self._det = det
        self._after = after
        tax = load_taxonomy()
        self._battery = tax.index("battery")
        self._hazardous = {tax.index(n) for n in tax.battery_hazards}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._det, name)

    def __call__(self, image: npt.NDArray[np.uint8]) -> Detections:
        dets = self._det(image)
        past = self._after if self._after is not None else -np.inf
        hosts = [i for i in range(len(dets)) if dets.xyxy[i, 2] - dets.xyxy[i, 0] >= 150
                 and int(dets.class_id[i]) not in self._hazardous and dets.center[i, 0] > past + 40]
        if not hosts or dets.class_scores is None:
            return dets
        x1, y1, _, y2 = dets.xyxy[hosts].T
        cy = (y1 + y2) / 2
        cells = np.stack([x1 + 10, cy - 12, x1 + 34, cy + 12], axis=1).astype(dets.xyxy.dtype)
        scores = np.zeros((len(hosts), dets.class_scores.shape[1]), dets.class_scores.dtype)
        scores[:, self._battery] = 0.8
        return Detections(np.concatenate([dets.xyxy, cells]), np.concatenate([dets.confidence, scores.max(1)]),
                          np.concatenate([dets.class_id, np.full(len(hosts), self._battery, dets.class_id.dtype)]),
                          None, np.concatenate([dets.class_scores, scores]))


def test_a_battery_lying_on_an_item_flags_the_item(tmp_path: Path) -> None:
    built = sim_station(tmp_path, workers=1)
    st = built.station
    st.swap_model(_CellOnItems(st._detector))  # type: ignore[arg-type]
    run(built)
    flagged = [d for d in st.decisions if "lies on it" in d.detail]
    assert flagged, "an item carrying a cell is decided with it, and carries its hazard"
    assert all(d.hazard == "battery" and d.class_name not in load_taxonomy().battery_hazards for d in flagged)
    alarms = {a.message for a in st.store.alarms() if a.kind == "hazard.battery"}
    assert all(any(d.class_name in m for m in alarms) for d in flagged), "each flagged item gets the hazard alarm"
    assert all(d.box[2] - d.box[0] > 30 for d in st.decisions), "no cell got a decision (and a command) of its own"


def test_a_battery_seen_on_an_item_already_decided_raises_an_alarm_naming_it(tmp_path: Path) -> None:
    built = sim_station(tmp_path, workers=1)
    st = built.station
    st.swap_model(_CellOnItems(st._detector, after=st.cfg.decision.line_x * st.cfg.simulator.width))  # type: ignore[arg-type]
    run(built)
    on_item = [a for a in st.store.alarms() if a.kind == "hazard.battery.on_item"]
    assert on_item, "a cell first seen after its item crossed must not be merged silently"
    decided = {d.item_id: d for d in st.decisions}
    for a in on_item:
        item = decided[a.item_id]  # the alarm names an item the station decided, without the battery
        assert item.hazard is None and a.severity.value == "critical" and item.item_id in a.message
    assert all(d.box[2] - d.box[0] > 30 for d in st.decisions), "no cell got a decision (and a command) of its own"
