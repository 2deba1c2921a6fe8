"""Second look: an Ultralytics ONNX classification export run once per decision on the item's evidence crop.

The detector sees the whole belt frame scaled down to its input (an item is some 40 × 40 of its pixels); the
evidence crop is cut from the full-resolution frame, so a classifier sees the item four to eight times larger.
The decision line fuses its class probabilities with the track's vote (``station.decide.fuse_second_look``).

Pre-processing is Ultralytics' for classification: shorter side resized to the input size, centre crop,
BGR→RGB, /255, NCHW (no mean/std: Ultralytics' classifiers are trained on plain 0..1 pixels). The export's
output is the softmax over its classes. A file that is not such an export, or whose classes are not exactly
the taxonomy's, is refused at load with ``ModelError``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from station.detect import (
    EXPORT_FIX,
    ModelError,
    check_input,
    model_version,
    open_session,
    parse_imgsz,
    parse_names,
    read_model,
    select_providers,
)
from station.taxonomy import Taxonomy

log = logging.getLogger(__name__)


class CropClassifier:
    """``classifier(crop_bgr) -> probabilities`` in taxonomy class order, for one Ultralytics classify export.

    Thread-safe (the onnxruntime session is shared; each call builds its own input).
    """

    def __init__(self, path: str | Path, *, taxonomy: Taxonomy, threads: int = 1,
                 providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"classifier file {self.path} not found (model.classifier); point it at a classification "
                             f"export such as models/sortloop-crops.onnx (`make crop-classifier`), or set it to null "
                             f"to decide from the detector's track vote alone")
        data = read_model(self.path)
        self._session = open_session(data, self.path, threads,
                                     select_providers(providers, ort.get_available_providers()), spin=False)
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        task = meta.get("task")
        if task != "classify":
            raise ModelError(f"classifier file {self.path} is a {task!r} model, not a classification model; "
                             f"export one with `python bench/crop_classifier.py export` (or set model.classifier "
                             f"to null to decide from the detector's track vote alone)")
        names = parse_names(meta, self.path)
        self._check_classes(names, taxonomy)
        self._imgsz = parse_imgsz(meta, self.path)
        if self._imgsz[0] != self._imgsz[1]:
            raise ModelError(f"classifier file {self.path}: input {self._imgsz} is not square; Ultralytics "
                             f"classifiers take a square centre crop: {EXPORT_FIX}")
        check_input(self._session, self._imgsz, self.path)
        outputs = self._session.get_outputs()
        shape = outputs[0].shape if len(outputs) == 1 else []
        if len(shape) != 2 or shape[1] != len(names):
            raise ModelError(f"classifier file {self.path}: output shape {shape} is not [1, {len(names)}] "
                             f"(one probability per class); {EXPORT_FIX}")
        self._order = np.array([names.index(n) for n in taxonomy.names], np.int64)
        """Model output column of each taxonomy class."""
        self._input_name = self._session.get_inputs()[0].name
        self._metadata = meta
        self.version = model_version(meta, data)
        log.info("crop classifier %s: version %s, input %d px, %d classes", self.path.name, self.version,
                 self._imgsz[0], len(names))

    def _check_classes(self, names: list[str], taxonomy: Taxonomy) -> None:
        unknown = sorted(set(names) - set(taxonomy.names))
        lacking = sorted(set(taxonomy.names) - set(names))
        if unknown or lacking or len(set(names)) != len(names):
            raise ModelError(
                f"classifier file {self.path}: its classes must be exactly the taxonomy's (fused with the "
                f"track vote, a class it lacks would be voted down); "
                + (f"not in the taxonomy: {', '.join(unknown)}; " if unknown else "")
                + (f"missing: {', '.join(lacking)}; " if lacking else "")
                + "train it on crops of a build of datasets/taxonomy.yaml (bench/crop_classifier.py)")

    @property
    def imgsz(self) -> int:
        return self._imgsz[0]

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def preprocess(self, crop: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Shorter side to the input size, centre crop, BGR→RGB, /255, NCHW float32."""
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8 or min(crop.shape[:2]) < 1:
            raise ValueError(f"classifier input must be an (h, w, 3) BGR uint8 crop, got {crop.shape} {crop.dtype}")
        side = self._imgsz[0]
        h, w = crop.shape[:2]
        s = side / min(h, w)
        # torchvision's rounding (Resize: the long side truncated; CenterCrop: the offset rounded)
        nh, nw = (int(side * h / w), side) if w <= h else (side, int(side * w / h))
        resized = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        top, left = round((nh - side) / 2), round((nw - side) / 2)
        square = resized[top:top + side, left:left + side, ::-1]
        return np.ascontiguousarray(square.transpose(2, 0, 1)[None], np.float32) / np.float32(255)

    def __call__(self, crop: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        out = self._session.run(None, {self._input_name: self.preprocess(crop)})[0]
        probs: npt.NDArray[np.float64] = np.asarray(out[0], np.float64)[self._order]
        return probs

    def warm_up(self) -> None:
        """One inference on a blank crop: onnxruntime allocates on its first run."""
        self(np.zeros((self._imgsz[0], self._imgsz[0], 3), np.uint8))
