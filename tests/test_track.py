"""ByteTrack over the station's detections: which items get a track at the default settings."""

from __future__ import annotations

import numpy as np
import pytest

from station.config import TrackerConfig
from station.detections import Detections
from station.track import Tracker

FPS, SPEED = 30.0, 500.0  # px/s, as the default belt


def track_ids(conf: float, frames: int = 40, cls: int = 3, hazard: bool = False) -> list[int]:
    """One 80×60 item crossing the view at belt speed, detected every frame with score ``conf`` for ``cls``;
    with ``hazard`` the tracker is told class 0 (battery) is a hazard to track from 0.1 on, as the station does."""
    tracker = Tracker(TrackerConfig(), fps=FPS, hazard_classes=[0] if hazard else None, hazard_confidence=0.1)
    ids = []
    scores = np.zeros((1, 16), np.float32)
    scores[0, cls] = conf
    for k in range(frames):
        x = 100 + SPEED * k / FPS
        dets = Detections(np.array([[x - 40, 270, x + 40, 330]], np.float32), np.array([conf], np.float32),
                          np.array([cls]), class_scores=scores)
        out = tracker.update(dets, timestamp=k / FPS)
        ids.append(int(out.tracker_id[0]) if len(out) else -2)
    return ids


@pytest.mark.parametrize(("conf", "cls", "hazard", "tracked"), [
    (0.9, 3, False, True),    # named with confidence
    (0.45, 3, False, True),   # found, but its score split between classes: must still be decided, not missed
    (0.31, 3, False, True),
    (0.26, 3, False, False),  # under the activation score: never starts a track
    (0.12, 0, False, False),  # a faint battery, without the hazard rule: unseen
    (0.12, 0, True, True),    # ... with it: tracked to the line (hazard recall first)
    (0.12, 3, True, False),   # the rule lifts hazard classes only
    (0.08, 0, True, False),   # under hazard_confidence
])
def test_which_scores_start_a_track(conf: float, cls: int, hazard: bool, tracked: bool) -> None:
    ids = track_ids(conf, cls=cls, hazard=hazard)
    if tracked:
        # the first look only starts the track; from the second on the item carries one id
        assert ids[1] >= 0 and len(set(ids[1:])) == 1, f"score {conf}: one track for the crossing, got {ids}"
    else:
        assert all(i == -1 for i in ids), f"score {conf}: no track, got {ids}"


@pytest.mark.parametrize(("size", "belt_coordinates", "tracks"), [
    (80, False, 1),   # a large item overlaps itself from frame to frame: one track either way
    (80, True, 1),
    (20, True, 1),    # a coin cell moves most of its width per frame: one track in belt coordinates ...
    (20, False, 2),   # ... but fragments (or is never followed) in image coordinates
])
def test_small_items_keep_one_track_in_belt_coordinates(size: int, belt_coordinates: bool, tracks: int) -> None:
    tracker = Tracker(TrackerConfig(), fps=FPS)
    seen: set[int] = set()
    unmatched = 0
    for k in range(40):
        x = 100 + SPEED * k / FPS
        box = np.array([[x - size / 2, 290, x + size / 2, 290 + size]], np.float32)
        out = tracker.update(Detections(box, np.array([0.9], np.float32), np.array([0])), timestamp=k / FPS,
                             belt_x=SPEED * k / FPS if belt_coordinates else 0.0)
        seen.update(int(i) for i in out.tracker_id if i >= 0)
        unmatched += int((out.tracker_id < 0).sum())
    if tracks == 1:
        assert len(seen) == 1 and unmatched <= 1, f"one track expected, got ids {seen}, {unmatched} unmatched"
    else:
        assert len(seen) >= tracks or unmatched > 5, f"expected fragments, got ids {seen}, {unmatched} unmatched"
