"""Tracking: ByteTrack (roboflow ``trackers``) over the station's Detections."""

from __future__ import annotations

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from station.config import TrackerConfig
from station.detections import Detections


class Tracker:
    """Assigns track ids to detections. Detections the tracker cannot associate get tracker_id -1."""

    def __init__(self, cfg: TrackerConfig, fps: float) -> None:
        self._cfg = cfg
        self._fps = fps
        self._tracker = self._make()

    def _make(self) -> ByteTrackTracker:
        c = self._cfg
        return ByteTrackTracker(
            lost_track_buffer=c.lost_track_buffer,
            frame_rate=self._fps,
            track_activation_threshold=c.activation_threshold,
            minimum_consecutive_frames=c.minimum_consecutive_frames,
            minimum_iou_threshold=c.minimum_iou,
            high_conf_det_threshold=c.high_confidence,
        )

    def reset(self) -> None:
        self._tracker = self._make()

    def update(self, dets: Detections, timestamp: float | None = None) -> Detections:
        """Track ``dets`` of one frame; returns them (reordered) with ``tracker_id`` filled."""
        if len(dets) == 0:
            self._tracker.update(_to_sv(dets), timestamp=timestamp)
            out = Detections.empty(None if dets.class_scores is None else dets.class_scores.shape[1])
            out.tracker_id = np.zeros(0, np.int64)
            return out
        tracked = self._tracker.update(_to_sv(dets), timestamp=timestamp)
        index = np.asarray(tracked.data["index"], dtype=np.int64)
        out = dets[index]
        out.tracker_id = np.asarray(tracked.tracker_id, dtype=np.int64)
        return out


def _to_sv(dets: Detections) -> sv.Detections:
    return sv.Detections(
        xyxy=dets.xyxy.astype(np.float32),
        confidence=dets.confidence,
        class_id=dets.class_id,
        data={"index": np.arange(len(dets))},
    )
