"""Model classes → taxonomy classes. Everything after detection speaks taxonomy class ids."""

from __future__ import annotations

import numpy as np

from station.detections import Detections
from station.taxonomy import Taxonomy


class ClassMapError(ValueError):
    """A model class cannot be placed in the taxonomy."""


class ClassMapper:
    """Re-indexes detections (class ids and per-class scores) from the model's order to the taxonomy's.

    Without a ``class_map`` every model class must be a taxonomy class. With one, model classes that are
    neither taxonomy classes nor mapped are dropped (e.g. COCO's 'person' on a waste belt).
    """

    def __init__(self, model_names: list[str], taxonomy: Taxonomy, class_map: dict[str, str] | None = None) -> None:
        class_map = class_map or {}
        for src, dst in class_map.items():
            if dst not in taxonomy:
                raise ClassMapError(f"model.class_map: {src!r} → {dst!r}, but {dst!r} is not a taxonomy class; "
                                    f"use one of {', '.join(taxonomy.names)}")
        index = []
        for name in model_names:
            target = class_map.get(name, name)
            if target in taxonomy:
                index.append(taxonomy.index(target))
            elif class_map:
                index.append(-1)
            else:
                raise ClassMapError(f"model class {name!r} is not in the taxonomy; retrain on the taxonomy's "
                                    f"classes or map it with model.class_map")
        self._index = np.array(index, np.int64)
        self._n = len(taxonomy.names)
        self.identity = bool(np.array_equal(self._index, np.arange(self._n)))
        self._keep = self._index >= 0

    def __call__(self, dets: Detections) -> Detections:
        if self.identity or (len(dets) == 0 and dets.class_scores is None):
            return dets
        keep = self._keep[dets.class_id]
        d = dets[keep] if not keep.all() else dets
        scores = None
        if d.class_scores is not None:
            scores = np.zeros((len(d), self._n), np.float32)
            cols = np.flatnonzero(self._keep)
            np.add.at(scores.T, self._index[cols], d.class_scores[:, cols].T)
        return Detections(d.xyxy, d.confidence, self._index[d.class_id], d.tracker_id, scores)
