"""The one detection type that flows through every stage of the station."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def overlap_of_smaller(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection of two ``x1 y1 x2 y2`` boxes over the smaller one: 1.0 when one lies inside the other."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _check(name: str, arr: np.ndarray, shape: tuple[int | None, ...]) -> None:
    ok = arr.ndim == len(shape) and all(want is None or got == want for got, want in zip(arr.shape, shape, strict=True))
    if not ok:
        wanted = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"Detections.{name}: expected shape {wanted}, got {arr.shape}")


@dataclass
class Detections:
    """Boxes of one frame as parallel arrays (pixels, x1 y1 x2 y2).

    ``tracker_id`` is filled by the tracker; -1 means "not tracked".
    """

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray
    tracker_id: IntArray | None = None
    class_scores: FloatArray | None = field(default=None)
    """Optional (n, C) per-class scores, used for votes and review margins."""

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4) if np.size(self.xyxy) == 0 else \
            np.asarray(self.xyxy, dtype=np.float32)
        self.confidence = np.asarray(self.confidence, dtype=np.float32)
        self.class_id = np.asarray(self.class_id, dtype=np.int64)
        n = len(self.xyxy)
        _check("xyxy", self.xyxy, (n, 4))
        _check("confidence", self.confidence, (n,))
        _check("class_id", self.class_id, (n,))
        if self.tracker_id is not None:
            self.tracker_id = np.asarray(self.tracker_id, dtype=np.int64)
            _check("tracker_id", self.tracker_id, (n,))
        if self.class_scores is not None:
            self.class_scores = np.asarray(self.class_scores, dtype=np.float32)
            _check("class_scores", self.class_scores, (n, None))

    @classmethod
    def empty(cls, num_classes: int | None = None) -> Detections:
        scores = None if num_classes is None else np.zeros((0, num_classes), np.float32)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   class_scores=scores)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> Detections:
        idx = np.array([index]) if isinstance(index, int | np.integer) else index
        return Detections(
            self.xyxy[idx],
            self.confidence[idx],
            self.class_id[idx],
            None if self.tracker_id is None else self.tracker_id[idx],
            None if self.class_scores is None else self.class_scores[idx],
        )

    def __iter__(self) -> Iterator[Detections]:
        for i in range(len(self)):
            yield self[i]

    @property
    def center(self) -> FloatArray:
        """Box centres, shape (n, 2)."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, (self.xyxy[:, 1] + self.xyxy[:, 3]) / 2], axis=1)

    @property
    def area(self) -> FloatArray:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]).clip(0) * (self.xyxy[:, 3] - self.xyxy[:, 1]).clip(0)

    @classmethod
    def merge(cls, parts: list[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        tracked = all(p.tracker_id is not None for p in parts)
        scored = all(p.class_scores is not None for p in parts)
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            np.concatenate([p.tracker_id for p in parts]) if tracked else None,  # type: ignore[misc]
            np.concatenate([p.class_scores for p in parts]) if scored else None,  # type: ignore[misc]
        )
