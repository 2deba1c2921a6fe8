"""Evaluation's hazard rule: which boxes flag a battery hazard, counted as the station flags them (table-driven),
and the same shipped model evaluated both ways on simulator frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from station.detections import Detections
from station.simulator import render_dataset
from station.taxonomy import load_taxonomy
from training.evaluate import HazardRule, evaluate, hazard_flags

TAX = load_taxonomy()
ROOT = Path(__file__).resolve().parents[1]
HAZARD = np.array([TAX.hazard_of(n) == "battery" for n in TAX.names], bool)
B, P = TAX.index("battery"), TAX.index("plastic")
STATION = HazardRule(floor=0.1, doubt=0.15)


def one_box(scores: dict[int, float]) -> Detections:
    s = np.zeros((1, len(TAX.names)), np.float32)
    for k, v in scores.items():
        s[0, k] = v
    cls = int(s[0].argmax())
    return Detections(np.array([[0, 0, 10, 10]], np.float32), s[0, [cls]], np.array([cls]), class_scores=s)


@pytest.mark.parametrize(("scores", "rule", "flagged"), [
    ({B: 0.60}, None, True),                      # a battery winning above the threshold
    ({B: 0.20}, None, False),                     # under the threshold, no rule: not a flag
    ({B: 0.20}, STATION, True),                   # kept by the hazard floor, battery wins
    ({B: 0.05}, STATION, False),                  # under the floor too
    ({P: 0.50, B: 0.20}, None, False),            # plastic wins: no flag without the rule
    ({P: 0.50, B: 0.20}, STATION, True),          # battery holds 0.29 of the scores: hazard doubt
    ({P: 0.90, B: 0.12}, STATION, False),         # battery holds 0.12 < 0.15: plastic it is
    ({P: 0.20, B: 0.12}, HazardRule(None, 0.15), False),  # no floor: under the threshold, not kept
])
def test_hazard_flags(scores: dict[int, float], rule: HazardRule | None, flagged: bool) -> None:
    assert hazard_flags(one_box(scores), 0.25, rule, HAZARD).tolist() == [flagged]


def test_the_station_rule_flags_at_least_what_the_winning_class_does(tmp_path: Path) -> None:
    """On the same frames, the station's rule keeps every flag of the plain count and adds those from the floor and
    from doubt: as many battery items, recall not lower, the rule recorded (so the gate never mixes the two)."""
    render_dataset(tmp_path / "val", 6, seed=9, width=640, height=352, taxonomy=TAX,
                   classes=["battery", "phone", "plastic", "can"])
    data = tmp_path / "data.yaml"
    data.write_text(f"path: .\ntrain: val/images\nval: val/images\nnames: {list(TAX.names)}\n")
    model = ROOT / "models" / "sortloop-default.onnx"
    plain = evaluate(model, data, split="val", conf=0.25, taxonomy=TAX)
    station = evaluate(model, data, split="val", conf=0.25, taxonomy=TAX, hazard_rule=STATION)
    assert plain.hazard_items == station.hazard_items > 0
    assert station.hazard_predictions > plain.hazard_predictions  # on these frames the rule adds flags (16 → 22)
    assert station.hazard_recall is not None and plain.hazard_recall is not None
    assert station.hazard_recall >= plain.hazard_recall
    assert (plain.hazard_floor, plain.hazard_doubt) == (None, None)
    assert (station.hazard_floor, station.hazard_doubt) == (0.1, 0.15)
    assert plain.operating_point != station.operating_point and plain.map50 == station.map50
