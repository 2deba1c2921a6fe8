"""ByteTrack over the station's detections: which items get a track at the default settings."""

from __future__ import annotations

import numpy as np
import pytest

from station.config import TrackerConfig
from station.detections import Detections
from station.track import Tracker

FPS, SPEED = 30.0, 500.0  # px/s, as the default belt


def track_ids(conf: float, frames: int = 40) -> list[int]:
    """One 80×60 item crossing the view at belt speed, detected every frame with score ``conf``."""
    tracker = Tracker(TrackerConfig(), fps=FPS)
    ids = []
    for k in range(frames):
        x = 100 + SPEED * k / FPS
        dets = Detections(np.array([[x - 40, 270, x + 40, 330]], np.float32), np.array([conf], np.float32),
                          np.array([3]))
        out = tracker.update(dets, timestamp=k / FPS)
        ids.append(int(out.tracker_id[0]) if len(out) else -2)
    return ids


@pytest.mark.parametrize(("conf", "tracked"), [
    (0.9, True),    # named with confidence
    (0.45, True),   # found, but its score split between classes: must still be decided, not missed
    (0.31, True),
    (0.26, False),  # under the activation score: never starts a track
])
def test_which_scores_start_a_track(conf: float, tracked: bool) -> None:
    ids = track_ids(conf)
    if tracked:
        # the first look only starts the track; from the second on the item carries one id
        assert ids[1] >= 0 and len(set(ids[1:])) == 1, f"score {conf}: one track for the crossing, got {ids}"
    else:
        assert all(i == -1 for i in ids), f"score {conf}: no track, got {ids}"
