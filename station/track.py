"""Tracking: ByteTrack (roboflow ``trackers``) over the station's Detections."""

from __future__ import annotations

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from station.config import TrackerConfig
from station.detections import Detections


class Tracker:
    """Assigns track ids to detections. Detections the tracker cannot associate get tracker_id -1."""

    def __init__(self, cfg: TrackerConfig, fps: float, *, hazard_classes: list[int] | None = None,
                 hazard_confidence: float = 1.0) -> None:
        """``hazard_classes`` (class ids) scoring ``hazard_confidence`` start and keep a track like a confident
        detection: a faint battery must reach the decision line as an item."""
        self._cfg = cfg
        self._fps = fps
        self._hazard = np.asarray(hazard_classes or [], np.int64)
        self._hazard_confidence = hazard_confidence
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

    def update(self, dets: Detections, timestamp: float | None = None, belt_x: float = 0.0) -> Detections:
        """Track ``dets`` of one frame; returns them (reordered) with ``tracker_id`` filled.

        ``belt_x`` is how far the belt has moved (px, along x) since the start: boxes are tracked in belt
        coordinates, where an item lying on the belt stands still. A small item (a coin cell, 20 px) moves
        most of its own width between frames, so in image coordinates its boxes in two frames barely overlap
        and every look would start a new track.
        """
        if len(dets) == 0:
            self._tracker.update(_to_sv(dets, dets.confidence), timestamp=timestamp)
            out = Detections.empty(None if dets.class_scores is None else dets.class_scores.shape[1])
            out.tracker_id = np.zeros(0, np.int64)
            return out
        tracked = self._tracker.update(_to_sv(dets, self._track_scores(dets), belt_x), timestamp=timestamp)
        index = np.asarray(tracked.data["index"], dtype=np.int64)
        out = dets[index]
        out.tracker_id = np.asarray(tracked.tracker_id, dtype=np.int64)
        return out

    def _track_scores(self, dets: Detections) -> np.ndarray:
        """The score ByteTrack sees: the detection's, raised to the first-stage threshold for a hazard box."""
        if not len(self._hazard) or dets.class_scores is None:
            return dets.confidence
        hazard = dets.class_scores[:, self._hazard].max(axis=1) >= self._hazard_confidence
        lift = max(self._cfg.high_confidence, self._cfg.activation_threshold)
        return np.where(hazard, np.maximum(dets.confidence, lift), dets.confidence)


def _to_sv(dets: Detections, scores: np.ndarray, belt_x: float = 0.0) -> sv.Detections:
    xyxy = dets.xyxy.astype(np.float32)  # a copy: the station's boxes stay in image coordinates
    xyxy[:, [0, 2]] -= np.float32(belt_x)
    return sv.Detections(
        xyxy=xyxy,
        confidence=scores,
        class_id=dets.class_id,
        data={"index": np.arange(len(dets))},
    )
