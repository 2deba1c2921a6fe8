"""The station end to end on the conveyor simulator with the shipped default model, scored against the
simulator's ground truth (the acceptance figures of the runtime)."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.config import StationConfig
from station.runtime import build_station, scorecard

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "sortloop-default.onnx"


def run_sim(tmp_path: Path, frames: int, seed: int) -> tuple[object, object]:
    cfg = StationConfig.model_validate({
        "source": {"kind": "simulator", "realtime": False, "max_frames": frames},
        "simulator": {"seed": seed},
        "model": {"path": str(DEFAULT_MODEL), "watch_registry": False},
        "store": {"url": f"sqlite:///{tmp_path}/station.db", "evidence_dir": str(tmp_path / "evidence")},
    })
    built = build_station(cfg, keep_results=True)
    built.station.start()
    built.station.wait(1200)
    last = built.station.last_frame
    assert last is not None and last.index == frames - 1, "every frame must be processed in fast mode"
    return built, scorecard(built, last.timestamp)


def check(card) -> None:
    print(card.table())
    assert card.items >= 20
    assert card.doubled == 0
    assert card.missed_rate <= 0.005
    assert card.stream_accuracy >= 0.98
    assert card.hazards_missed == 0
    assert card.actuations_early == 0 and card.actuations_late == 0
    assert card.false_decisions <= max(1, card.items // 100)


def test_default_model_on_simulator(tmp_path: Path) -> None:
    built, card = run_sim(tmp_path, frames=1800, seed=11)
    check(card)
    st = built.station
    items = st.store.list_items(None, page=1, page_size=500)
    assert items.total == len(st.decisions), "every decision is durable"
    assert all(i.crop_path for i in items.items), "every decision is stored with its evidence crop"
    assert st.store.actuation_counts().get("sent", 0) == items.total


@pytest.mark.slow
def test_default_model_on_simulator_long(tmp_path: Path) -> None:
    _, card = run_sim(tmp_path, frames=9000, seed=5)
    assert card.items >= 150
    check(card)
