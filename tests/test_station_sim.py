"""The station end to end on the conveyor simulator with the shipped default model (and crop classifier, the
config's default), scored against the simulator's ground truth.

The default run checks what the runtime guarantees whatever the model sees: every frame processed, no item
decided twice, every decision durable with its evidence before its command, every command timed to its
ejector. The acceptance bar that depends on the model's accuracy (missed items, stream accuracy, batteries
flagged) runs as a slow test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from station.config import StationConfig
from station.runtime import Built, build_station, scorecard
from station.simulator import Scorecard, match_truth

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "sortloop-default.onnx"


def run_sim(tmp_path: Path, frames: int, seed: int) -> tuple[Built, Scorecard]:
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
    card = scorecard(built, last.timestamp)
    print(card.table())
    return built, card


def test_station_on_simulator_runtime_guarantees(tmp_path: Path) -> None:
    built, card = run_sim(tmp_path, frames=1200, seed=11)
    st = built.station
    assert card.items >= 10 and card.decided >= card.items // 2
    assert card.doubled == 0
    assert card.actuations == card.decided
    # Timing. Each command fires when the station's own estimate of its item reaches the ejector: against the
    # truth an actuation is off exactly as much as the decision's crossing time was, to the encoder tick.
    # The crossing time is the mean of the box centres' estimates; where the model's box spans the item
    # (its width within 20 % of the truth's) it is within the ±50 ms the acceptance bar asks. A box over part
    # of an item moves its centre (with sortloop-default-3, one here: an e-device boxed 89 of 202 px wide,
    # 111 ms early): that is the model's, and the acceptance test below counts it.
    truth, by_item = st.source.sim.truth, {d.item_id: d for d in st.decisions}
    distances = {name: b.distance_m for name, b in st.cfg.routing.bins.items()}
    spanning = 0
    for a in st.actuations:
        d = by_item[a.item_id]
        t = match_truth(truth, d)
        assert t is not None and a.fire_at_ticks is not None
        cross_err = d.crossed_at - t.line_time
        fire_err = st.source.sim.time_at_ticks(a.fire_at_ticks) - t.ejector_time(distances[a.bin])
        assert abs(fire_err - cross_err) < 0.005, (a, d, t)
        if abs((d.box[2] - d.box[0]) / t.width_px - 1) <= 0.2:
            spanning += 1
            assert abs(cross_err) <= 0.05, (d, t)
    assert spanning >= card.decided // 2
    items = st.store.list_items(None, page=1, page_size=500)
    assert items.total == len(st.decisions) > 0, "every decision is durable"
    assert all(i.crop_path for i in items.items), "every decision is stored with its evidence crop"
    assert st.store.actuation_counts().get("sent", 0) == items.total
    assert st.frames.dropped == 0


@pytest.mark.slow
def test_default_model_meets_the_acceptance_bar_on_simulator(tmp_path: Path) -> None:
    _, card = run_sim(tmp_path, frames=9000, seed=5)
    assert card.items >= 150
    assert card.doubled == 0
    assert card.missed_rate <= 0.005
    assert card.stream_accuracy >= 0.98
    assert card.hazards_missed == 0
    assert card.actuations_early == 0 and card.actuations_late == 0
