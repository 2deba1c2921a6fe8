"""``sortloop detect`` decides as the station does: the still-photo path (``station.still``) and the decision line
give the same verdict for the same scores; its JSON carries the decision; exit codes and warnings; boxes in the
letterbox padding are dropped; the cross-source report's tallies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from shared_data import SHARED, shared_file
from test_decide import IMG, TAX, _Says, run, scores
from test_detect import build_onnx, ultra_meta
from typer.testing import CliRunner

from station.config import StationConfig
from station.detect import Detector
from station.detections import Detections
from station.still import StillDecider, StillDecision
from training.source_eval import SourceFigures, tally, whole_photo

BATTERY_PHOTO = SHARED / "datasets" / "ewaste-classes" / "val" / "Battery" / "battery_105.jpg"


CASES = [
    (scores(can=0.9), None),
    (scores(battery=0.8), None),
    (scores(plastic=0.5, battery=0.3), None),
    (scores(plastic=0.3, glass=0.3, paper=0.3), None),
    (scores(can=0.5, plastic=0.4), scores(plastic=0.95, can=0.05)),
    (scores(battery=0.8), scores(can=0.99)),
    (scores(phone=0.6, mouse=0.4), scores(mouse=0.99)),
    (scores(can=0.7, battery=0.1), scores(battery=0.6, can=0.4)),
    (scores(textile=0.6, paper=0.4), scores(textile=0.9, paper=0.1)),
]


@pytest.mark.parametrize(("row", "look"), CASES)
def test_still_photo_and_decision_line_give_the_same_verdict(row: np.ndarray, look: np.ndarray | None) -> None:
    decisions, _ = run([{"id": 1, "x0": 0.0, "y": 300, "scores": row}], look=_Says(look) if look is not None else None)
    (station,) = decisions
    decider = StillDecider(StationConfig(), TAX, _Says(look) if look is not None else None)
    dets = Detections(np.array([[100.0, 270.0, 180.0, 330.0]]), np.array([row.max()]), np.array([int(row.argmax())]),
                      class_scores=row[None])
    (still,) = decider(IMG, dets)
    assert (still.class_name, still.stream, still.hazard, still.reason) == (
        station.class_name, station.stream.value, station.hazard, station.reason.value)
    assert still.share == pytest.approx(station.confidence, abs=1e-3)


def test_a_box_in_the_letterbox_padding_is_dropped(tmp_path: Path) -> None:
    """A 256×128 frame fills rows 16..48 of the 64×64 input: a box above row 16 lies in the padding."""
    rows = np.asarray([(10, 2, 40, 12, 0.9, 0), (24, 28, 40, 36, 0.8, 1)], np.float32)[None]
    path = build_onnx(tmp_path / "e2e.onnx", rows, metadata=ultra_meta(["phone", "battery"], end2end="True"))
    dets = Detector(path)(np.zeros((128, 256, 3), np.uint8))
    assert len(dets) == 1 and int(dets.class_id[0]) == 1


def _detect(*args: str) -> tuple[int, list[dict], str]:
    from station.cli import app

    result = CliRunner().invoke(app, ["detect", "--json", *args])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.stderr


def test_detect_json_carries_the_station_decision() -> None:
    photo = shared_file(BATTERY_PHOTO)
    code, (line,), err = _detect(str(photo))
    assert code == 0 and "1 read, 0 failed" in err
    assert line["classifier"] and line["model"] and line["hazard"] is True
    battery = [d for d in line["detections"] if d["decision"]["hazard"] == "battery"]
    assert battery and {"class", "stream", "hazard", "reason", "share", "detail", "crop_scores"} <= set(
        battery[0]["decision"])

    code, (raw,), _ = _detect("--detector-only", str(photo))
    assert code == 0 and "hazard" not in raw and all("decision" not in d for d in raw["detections"])
    assert [d["box"] for d in raw["detections"]] == [d["box"] for d in line["detections"]]


def test_detect_exits_non_zero_when_an_input_fails_and_warns_of_a_truncated_jpeg(tmp_path: Path) -> None:
    photo = shared_file(BATTERY_PHOTO)
    whole = tmp_path / "whole.jpg"
    shutil.copy(photo, whole)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(photo.read_bytes()[: photo.stat().st_size * 2 // 3])
    code, lines, err = _detect(str(whole), str(cut))
    assert code == 0 and "2 read, 0 failed, 1 with warnings" in err
    assert "warnings" not in lines[0] and "truncated JPEG" in lines[1]["warnings"][0]

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    code, lines, err = _detect(str(whole), str(tmp_path / "broken.jpg"), str(tmp_path / "missing.png"))
    assert code == 1 and "3 images, 1 read, 2 failed" in err
    assert [set(line) == {"image", "error"} for line in lines] == [False, True, True]


def _d(cls: str | None, stream: str, hazard: str | None = None) -> StillDecision:
    return StillDecision(cls, stream, hazard, "ok", 1.0, "", {})


BOX = np.array([[0, 0, 10, 10]], np.float32)
FAR = np.array([[50, 50, 60, 60]], np.float32)
NONE = np.zeros((0, 4), np.float32)


@pytest.mark.parametrize(("gt", "boxes", "decisions", "expected"), [
    # a battery flagged as a hazard is found, on the right (hazard) route, its photo flagged
    ((BOX, ["battery"]), BOX, [_d("battery", "electronics", "battery")],
     {"found": 1, "right": 1, "hazard_photos": 1, "hazard_flagged": 1}),
    # a battery decided as a can: found, wrong route, photo not flagged
    ((BOX, ["battery"]), BOX, [_d("can", "metal")], {"found": 1, "right": 0, "hazard_photos": 1, "hazard_flagged": 0}),
    # a can in hazard doubt: wrong route and a false hazard on a clean photo
    ((BOX, ["can"]), BOX, [_d("can", "manual", "battery")],
     {"found": 1, "right": 0, "clean_photos": 1, "clean_flagged": 1}),
    # a can decided metal: right; a textile photo with no textile box
    ((BOX, ["can"]), BOX, [_d("can", "metal")], {"found": 1, "right": 1, "clean_photos": 1, "clean_flagged": 0}),
    ((BOX, ["textile"]), FAR, [_d("textile", "textile")],
     {"found": 0, "right": 0, "textile_photos": 1, "textile_found": 1}),
    ((BOX, ["textile"]), NONE, [], {"found": 0, "textile_photos": 1, "textile_found": 0, "clean_photos": 1}),
    # medical waste decided with its own biohazard flag is on the right route; its photo is not a clean one
    ((BOX, ["medical"]), BOX, [_d("medical", "residual", "biohazard")], {"found": 1, "right": 1, "clean_photos": 0}),
])
def test_source_tally(gt, boxes, decisions, expected) -> None:
    row = SourceFigures("x")
    tally(row, gt[0], gt[1], boxes, decisions, TAX)
    assert row.photos == 1 and row.items == len(gt[1])
    for key, value in expected.items():
        assert getattr(row, key) == value, key


WHOLE = np.array([[0, 0, 100, 80]], np.float32)
SMALL_AND_LARGE = np.array([[10, 10, 20, 20], [5, 5, 60, 50]], np.float32)


@pytest.mark.parametrize(("gt", "shape", "expected"), [
    (WHOLE, (80, 100, 3), True),
    (WHOLE, (160, 100, 3), False),                         # half the photo's height: a real box
    (np.vstack([WHOLE, WHOLE]), (80, 100, 3), False),      # two labels: a scene, not a single-item photo
    (BOX, (80, 100, 3), False),
])
def test_a_whole_photo_label_is_recognised(gt: np.ndarray, shape: tuple[int, ...], expected: bool) -> None:
    assert whole_photo(gt, shape) is expected


@pytest.mark.parametrize(("boxes", "decisions", "expected"), [
    # the largest decided box stands for the item, whatever its IoU with the whole photo
    (SMALL_AND_LARGE, [_d("battery", "electronics", "battery"), _d("can", "metal")], {"found": 1, "right": 1,
                                                                                      "clean_flagged": 1}),
    (SMALL_AND_LARGE[::-1].copy(), [_d("can", "metal"), _d("plastic", "plastic")], {"found": 1, "right": 1}),
    (NONE, [], {"found": 0, "right": 0}),
])
def test_a_whole_photo_item_is_matched_to_the_largest_box(boxes, decisions, expected) -> None:
    row = SourceFigures("x")
    tally(row, WHOLE, ["can"], boxes, decisions, TAX, whole=True)
    assert row.whole_photo_items == 1
    for key, value in expected.items():
        assert getattr(row, key) == value, key
