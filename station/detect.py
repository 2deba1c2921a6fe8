"""Detector: onnxruntime wrapper for Ultralytics ONNX detection exports.

Two output forms are understood: YOLOv8/YOLO11 ``[1, 4+C, N]`` (cx, cy, w, h, class scores; class-aware NMS
with OpenCV after the model) and YOLO26 / end-to-end ``[1, K, 6]`` (x1, y1, x2, y2, score, class; no NMS).
Pre-processing is Ultralytics' letterbox (keep aspect, pad 114, centred), BGR→RGB, /255, NCHW.
``detect_paths`` is the logic behind ``sortloop detect``: images and folders in, one ``ImageResult`` each.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from station.detections import Detections
from station.taxonomy import Taxonomy

if TYPE_CHECKING:
    from station.still import StillDecision

log = logging.getLogger(__name__)

ModelKind = Literal["nms", "end2end"]
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "OpenVINOExecutionProvider", "CoreMLExecutionProvider",
                     "DmlExecutionProvider", "CPUExecutionProvider")
PAD_VALUE = 114
MAX_DETECTIONS = 300
EXPORT_FIX = "export with `sortloop export`"
_ORT_LOAD_ERRORS = (ort_state.Fail, ort_state.InvalidProtobuf, ort_state.InvalidGraph,
                    ort_state.InvalidArgument, ort_state.NoSuchFile, ort_state.NoModel,
                    ort_state.NotImplemented, ort_state.RuntimeException)
_CPU = "CPUExecutionProvider"


MIN_BOX_PX = 2.0
"""A box narrower or lower than this in source-image pixels (after clipping to the image) is dropped: it lay in
the letterbox padding (zero-width boxes at the edge of portrait photos were seen), not on an item."""


class ModelError(ValueError):
    """The model file cannot serve as the station's detector; the message names the file and the fix."""


def select_providers(preferred: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Providers to use: ``preferred`` (default: accelerators) in order, kept if available, CPU always last."""
    wanted = [p for p in (DEFAULT_PROVIDERS if preferred is None else preferred) if p != _CPU]
    chosen = [p for p in dict.fromkeys(wanted) if p in available]
    skipped = [p for p in wanted if p not in available]
    if skipped:
        log.debug("onnxruntime providers not available here, skipped: %s", skipped)
    return [*chosen, _CPU]


@dataclass(frozen=True)
class Letterbox:
    """Where an image of ``src_hw`` sits inside a model input of ``dst_hw`` (Ultralytics' rounding)."""

    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]
    new_hw: tuple[int, int]
    top: int
    left: int

    @classmethod
    def fit(cls, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Letterbox:
        (h, w), (dh, dw) = src_hw, dst_hw
        r = min(dh / h, dw / w)
        new_h, new_w = max(round(h * r), 1), max(round(w * r), 1)
        top, left = round((dh - new_h) / 2 - 0.1), round((dw - new_w) / 2 - 0.1)
        return cls((h, w), (dh, dw), (new_h, new_w), top, left)

    def to_image(self, xyxy: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Map boxes from model-input pixels to source-image pixels, clipped to the image (in place)."""
        gain_y, gain_x = self.new_hw[0] / self.src_hw[0], self.new_hw[1] / self.src_hw[1]
        xyxy[:, 0::2] -= self.left
        xyxy[:, 1::2] -= self.top
        xyxy[:, 0::2] /= gain_x
        xyxy[:, 1::2] /= gain_y
        np.clip(xyxy[:, 0::2], 0, self.src_hw[1], out=xyxy[:, 0::2])
        np.clip(xyxy[:, 1::2], 0, self.src_hw[0], out=xyxy[:, 1::2])
        return xyxy

    def to_model(self, xyxy: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Map boxes from source-image pixels to model-input pixels (a new array)."""
        gain_y, gain_x = self.new_hw[0] / self.src_hw[0], self.new_hw[1] / self.src_hw[1]
        out = np.array(xyxy, dtype=np.float32, copy=True)
        out[:, 0::2] = out[:, 0::2] * gain_x + self.left
        out[:, 1::2] = out[:, 1::2] * gain_y + self.top
        return out


def read_model(path: Path) -> bytes:
    if not path.is_file():
        raise ModelError(f"model file {path} not found; pass the path of an ONNX export ({EXPORT_FIX})")
    return path.read_bytes()


SPIN_MIN_CORES = 4
"""Below this many CPU cores onnxruntime's busy-waiting pool fights the station's other workers for them
(measured on 2 cores with one detect worker using both: 48 fps with spinning off against 31 fps on,
bench/station_fps.py)."""


def open_session(data: bytes, path: Path, threads: int, providers: list[str], spin: bool | None = None
                  ) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        opts.intra_op_num_threads = threads
    if spin is None:
        spin = (os.cpu_count() or 1) >= SPIN_MIN_CORES
    if not spin:  # idle pool threads sleep instead of busy-waiting, leaving the cores to capture and storage
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=providers)
    except _ORT_LOAD_ERRORS as exc:
        raise ModelError(f"model file {path} is not a readable ONNX model ({exc}); "
                         f"the file may be truncated or of another format: {EXPORT_FIX}") from exc


def model_version(meta: dict[str, str], data: bytes) -> str:
    """A model file's version: its ``sortloop_version`` metadata, else ``sha256:`` and the first 12 hex of the
    file's hash."""
    return meta.get("sortloop_version") or "sha256:" + hashlib.sha256(data).hexdigest()[:12]


def _literal(meta: dict[str, str], key: str, path: Path) -> object:
    if key not in meta:
        raise ModelError(f"model file {path} has no {key!r} metadata: not an Ultralytics export; "
                         f"{EXPORT_FIX}")
    try:
        return ast.literal_eval(meta[key])
    except (ValueError, SyntaxError) as exc:
        raise ModelError(f"model file {path}: metadata {key!r} = {meta[key][:80]!r} cannot be parsed; "
                         f"{EXPORT_FIX}") from exc


def parse_names(meta: dict[str, str], path: Path) -> list[str]:
    """Class names of an Ultralytics export (its ``names`` metadata: a dict 0..C-1 or a list); ModelError naming
    the file when they are missing or malformed."""
    raw = _literal(meta, "names", path)
    if isinstance(raw, dict) and sorted(raw) == list(range(len(raw))):
        names = [raw[i] for i in range(len(raw))]
    elif isinstance(raw, list):
        names = raw
    else:
        names = []
    if not names or not all(isinstance(n, str) for n in names):
        raise ModelError(f"model file {path}: metadata 'names' must map 0..C-1 to class names, got "
                         f"{meta['names'][:80]!r}; {EXPORT_FIX}")
    return names


def parse_imgsz(meta: dict[str, str], path: Path) -> tuple[int, int]:
    raw = _literal(meta, "imgsz", path)
    size = [raw, raw] if isinstance(raw, int) else raw
    if not (isinstance(size, list | tuple) and len(size) == 2
            and all(isinstance(v, int) and v > 0 for v in size)):
        raise ModelError(f"model file {path}: metadata 'imgsz' must be [h, w], got {meta['imgsz']!r}; "
                         f"{EXPORT_FIX}")
    return int(size[0]), int(size[1])


def check_input(session: ort.InferenceSession, imgsz: tuple[int, int], path: Path) -> None:
    inputs = session.get_inputs()
    shape = inputs[0].shape if len(inputs) == 1 else []
    want = [1, 3, *imgsz]
    ok = len(shape) == 4 and all(not isinstance(g, int) or g == w for g, w in zip(shape, want, strict=True))
    if not ok:
        raise ModelError(f"model file {path}: input shape {shape} (of {len(inputs)} input(s)) does not agree "
                         f"with [1, 3, h, w] = {want} from its imgsz metadata; re-export it at a fixed size "
                         f"({EXPORT_FIX})")


def _model_kind(session: ort.InferenceSession, num_classes: int, meta: dict[str, str],
                path: Path) -> ModelKind:
    outputs = session.get_outputs()
    shape = outputs[0].shape if len(outputs) == 1 else []
    flag = meta.get("end2end", "").strip().lower()
    fits_nms = len(shape) == 3 and shape[1] == 4 + num_classes
    fits_e2e = len(shape) == 3 and shape[2] == 6
    if fits_e2e and (not fits_nms or flag == "true"):
        return "end2end"
    if fits_nms and flag != "true":
        return "nms"
    raise ModelError(f"model file {path}: unexpected output shape {shape} (of {len(outputs)} output(s)); a "
                     f"detection export with {num_classes} classes gives [1, {4 + num_classes}, N] or "
                     f"[1, K, 6] (end2end={meta.get('end2end')!r}); {EXPORT_FIX}")


def _inspect(session: ort.InferenceSession, meta: dict[str, str],
             path: Path) -> tuple[list[str], tuple[int, int], ModelKind]:
    """Class names, input size (h, w) and output kind of an Ultralytics detection export; raises ModelError."""
    task = meta.get("task", "detect")
    if task != "detect":
        raise ModelError(f"model file {path} is a {task!r} model, not a detection model; {EXPORT_FIX}")
    names = parse_names(meta, path)
    imgsz = parse_imgsz(meta, path)
    check_input(session, imgsz, path)
    return names, imgsz, _model_kind(session, len(names), meta, path)


def _check_taxonomy(names: list[str], taxonomy: Taxonomy, path: Path) -> None:
    unknown = [n for n in names if n not in taxonomy]
    if unknown:
        raise ModelError(f"model file {path}: {len(unknown)} of its {len(names)} classes are not in the "
                         f"taxonomy: {', '.join(unknown)}; train and export the "
                         f"model on datasets/taxonomy.yaml classes ({EXPORT_FIX}) or pass the taxonomy it "
                         f"was trained with")


class Detector:
    """``detector(image_bgr) -> Detections`` for one Ultralytics ONNX export.

    Thread-safe: the onnxruntime session is shared and each calling thread letterboxes into its own reused
    input buffers, so several workers can run one detector on successive frames at once.
    """

    def __init__(self, path: str | Path, *, confidence: float = 0.25, iou: float = 0.5, threads: int = 0,
                 providers: list[str] | None = None, taxonomy: Taxonomy | None = None,
                 agnostic: bool = False, spin: bool | None = None) -> None:
        self.path = Path(path)
        self.confidence = confidence
        self.iou = iou
        self.agnostic = agnostic
        """Class-agnostic NMS: one box per object whatever its class (the station's choice: one item, one
        decision; the per-class scores of the kept box still carry the vote)."""
        self.class_confidence: dict[int, float] = {}
        """Lower score thresholds for some model classes (index → threshold): a box is kept when its best
        score reaches ``confidence`` or its score for one of these classes reaches that class's threshold
        (the station lowers it for battery hazards: hazard recall first)."""
        data = read_model(self.path)
        self._session = open_session(data, self.path, threads, select_providers(providers,
                                                                                ort.get_available_providers()),
                                      spin)
        self._metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self._names, self._imgsz, self._kind = _inspect(self._session, self._metadata, self.path)
        if taxonomy is not None:
            _check_taxonomy(self._names, taxonomy, self.path)
        self._version = model_version(self._metadata, data)
        self._input_name = self._session.get_inputs()[0].name
        self._dtype = np.float16 if self._session.get_inputs()[0].type == "tensor(float16)" else np.float32
        self._local = threading.local()  # per calling thread: input tensor, resize buffer, letterbox
        log.info("detector %s: %s, input %s, %d classes, providers %s", self.path.name, self._kind,
                 self._imgsz, len(self._names), self.providers)

    @property
    def names(self) -> list[str]:
        """Class names in model order."""
        return list(self._names)

    @property
    def imgsz(self) -> tuple[int, int]:
        """Model input size (h, w)."""
        return self._imgsz

    @property
    def kind(self) -> ModelKind:
        """'nms' (class-aware NMS after the model) or 'end2end' (the model's output is final)."""
        return self._kind

    @property
    def version(self) -> str:
        """The ``sortloop_version`` metadata, else ``sha256:`` and the first 12 hex of the file's hash."""
        return self._version

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    @property
    def providers(self) -> list[str]:
        """onnxruntime providers in use, in order."""
        return list(self._session.get_providers())

    def warm_up(self) -> None:
        """One inference on a blank frame: onnxruntime allocates on its first run (tens to hundreds of ms),
        which would otherwise fall on the first camera frames or stall a model swap."""
        self(np.full((*self._imgsz, 3), PAD_VALUE, np.uint8))

    def __call__(self, image: npt.NDArray[np.uint8]) -> Detections:
        tensor, box = self.preprocess(image)
        return self.postprocess(self.infer(tensor), box)

    def preprocess(self, image: npt.NDArray[np.uint8]) -> tuple[np.ndarray, Letterbox]:
        """Letterbox a BGR uint8 image into this thread's reused NCHW input tensor (valid until the thread's
        next call)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detector input must be an (h, w, 3) BGR uint8 image, got {image.shape} "
                             f"{image.dtype}")
        h, w = image.shape[:2]
        mine = self._local
        box: Letterbox | None = getattr(mine, "box", None)
        if box is None or box.src_hw != (h, w):
            box = mine.box = Letterbox.fit((h, w), self._imgsz)
            mine.input = np.full((1, 3, *self._imgsz), PAD_VALUE / 255, self._dtype)  # padding stays put
            mine.resized = np.empty((*box.new_hw, 3), np.uint8)
        tensor: np.ndarray = mine.input
        src: np.ndarray = image
        if box.new_hw != (h, w):
            src = cv2.resize(image, box.new_hw[::-1], dst=mine.resized, interpolation=cv2.INTER_LINEAR)
        nh, nw = box.new_hw
        scale = np.float32(1 / 255)
        for ch in range(3):  # BGR→RGB, HWC→CHW and /255 in one pass per plane, padding left untouched
            np.multiply(src[:, :, 2 - ch], scale, out=tensor[0, ch, box.top:box.top + nh, box.left:box.left + nw],
                        casting="unsafe")
        return tensor, box

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the model on a preprocessed tensor; returns its raw output."""
        out: np.ndarray = self._session.run(None, {self._input_name: tensor})[0]
        return out

    def postprocess(self, output: np.ndarray, box: Letterbox) -> Detections:
        """Raw model output → Detections in source-image pixels (with per-class scores)."""
        if self._kind == "nms":
            xyxy, conf, cls, scores = self._decode_nms(output[0])
        else:
            xyxy, conf, cls, scores = self._decode_end2end(output[0])
        if len(xyxy) == 0:
            return Detections.empty(len(self._names))
        xyxy = box.to_image(xyxy)
        # A box that lies in the letterbox padding is clipped to (nearly) nothing at the image's edge: no item.
        keep = ((xyxy[:, 2] - xyxy[:, 0]) >= MIN_BOX_PX) & ((xyxy[:, 3] - xyxy[:, 1]) >= MIN_BOX_PX)
        if not keep.all():
            xyxy, conf, cls, scores = xyxy[keep], conf[keep], cls[keep], scores[keep]
            if len(xyxy) == 0:
                return Detections.empty(len(self._names))
        return Detections(xyxy, conf, cls, class_scores=scores)

    def _decode_nms(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        mask = pred[4:].max(axis=0) > self.confidence
        for c, floor in self.class_confidence.items():
            mask |= pred[4 + c] > floor
        cand = pred[:, mask].T.astype(np.float32)  # (k, 4+C), a small copy
        if len(cand) == 0:
            return cand[:, :4], cand[:, 4], np.zeros(0, np.int64), cand[:, 4:]
        scores = cand[:, 4:]
        cls = scores.argmax(axis=1)
        conf = scores[np.arange(len(cand)), cls]
        xywh = cand[:, :4].copy()
        xywh[:, :2] -= xywh[:, 2:] / 2
        floor = min([self.confidence, *self.class_confidence.values()])  # candidates are already filtered
        if self.agnostic:
            picked = cv2.dnn.NMSBoxes(xywh.astype(np.float64), conf.astype(np.float64),  # type: ignore[arg-type]
                                      floor, self.iou, top_k=MAX_DETECTIONS)
        else:
            picked = cv2.dnn.NMSBoxesBatched(xywh.astype(np.float64), conf.astype(np.float64),  # type: ignore[arg-type]
                                             cls.astype(np.int32), floor, self.iou, top_k=MAX_DETECTIONS)
        keep = np.asarray(picked, dtype=np.int64).reshape(-1)
        xyxy = xywh[keep]
        xyxy[:, 2:] += xyxy[:, :2]
        return xyxy, conf[keep], cls[keep].astype(np.int64), scores[keep]

    def _decode_end2end(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cls = pred[:, 5].astype(np.int64)
        passed = pred[:, 4] > self.confidence
        for c, floor in self.class_confidence.items():
            passed |= (cls == c) & (pred[:, 4] > floor)
        rows = pred[passed & (cls >= 0) & (cls < len(self._names))][:MAX_DETECTIONS]
        cls = rows[:, 5].astype(np.int64)
        conf = rows[:, 4].astype(np.float32)
        scores = np.zeros((len(rows), len(self._names)), np.float32)
        scores[np.arange(len(rows)), cls] = conf
        return rows[:, :4].astype(np.float32), conf, cls, scores


@dataclass(frozen=True)
class DetectedObject:
    """One detection of an image, as ``sortloop detect`` reports it; ``decision`` is the station's verdict on it
    (None with ``--detector-only``)."""

    box: tuple[float, float, float, float]
    class_name: str
    confidence: float
    stream: str | None
    hazard: str | None
    decision: StillDecision | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"box": list(self.box), "class": self.class_name, "confidence": self.confidence,
                                  "stream": self.stream, "hazard": self.hazard}
        if self.decision is not None:
            out["decision"] = self.decision.to_dict()
        return out


@dataclass(frozen=True)
class ImageResult:
    """Detections of one image file, or the reason it could not be read (``error``); ``warnings`` name what was
    wrong with a file that could still be read (a truncated JPEG)."""

    image: str
    width: int = 0
    height: int = 0
    model: str = ""
    detections: tuple[DetectedObject, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()
    decided: bool = False
    """Each detection carries the station's decision (not ``--detector-only``)."""
    classifier: str | None = None
    """Version of the crop classifier whose second look the decisions fused (None: none configured)."""

    @property
    def hazard(self) -> bool | None:
        """Whether the station would flag a hazard for any item of the photo (None without decisions)."""
        if not self.decided:
            return None
        return any(d.decision is not None and d.decision.hazard is not None for d in self.detections)

    def to_dict(self) -> dict[str, object]:
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        out: dict[str, object] = {"image": self.image, "width": self.width, "height": self.height,
                                  "model": self.model, "detections": [d.to_dict() for d in self.detections]}
        if self.classifier is not None:
            out["classifier"] = self.classifier
        if self.decided:
            out["hazard"] = self.hazard
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def iter_images(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files as given, folders walked recursively (sorted) for image files."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        else:
            yield p


def file_warnings(path: Path) -> tuple[str, ...]:
    """What is wrong with an image file that still decodes: a JPEG without its end-of-image marker was cut
    short (OpenCV decodes the part that arrived and pads the rest with grey)."""
    with path.open("rb") as fh:
        head = fh.read(3)
        if head[:2] != b"\xff\xd8":
            return ()
        fh.seek(max(0, path.stat().st_size - 64))
        tail = fh.read()
    if b"\xff\xd9" not in tail:
        return ("truncated JPEG: no end-of-image marker (the file was cut short; part of the picture is missing)",)
    return ()


Decider = Callable[[npt.NDArray[np.uint8], Detections], "list[StillDecision]"]


def detect_image(path: Path, detector: Detector, taxonomy: Taxonomy | None,
                 decider: Decider | None = None, classifier: str | None = None) -> ImageResult:
    """Detect one image file (and decide each box with ``decider``); an unreadable file gives a result with
    ``error`` set."""
    if not path.is_file():
        return ImageResult(str(path), error="no such file")
    image: npt.NDArray[np.uint8] | None = cv2.imread(str(path), cv2.IMREAD_COLOR)  # type: ignore[assignment]
    if image is None:
        return ImageResult(str(path), error="cannot decode the file as an image (corrupt or not an image)")
    dets = detector(image)
    names = detector.names
    decisions: list[StillDecision | None] = list(decider(image, dets)) if decider is not None else [None] * len(dets)
    objects = tuple(replace(_describe(xyxy, float(c), names[int(k)], taxonomy), decision=d)
                    for xyxy, c, k, d in zip(dets.xyxy, dets.confidence, dets.class_id, decisions, strict=True))
    return ImageResult(str(path), int(image.shape[1]), int(image.shape[0]), detector.version, objects,
                       warnings=file_warnings(path), decided=decider is not None,
                       classifier=classifier if decider is not None else None)


def _describe(xyxy: np.ndarray, confidence: float, name: str, taxonomy: Taxonomy | None) -> DetectedObject:
    known = taxonomy is not None and name in taxonomy
    x1, y1, x2, y2 = (round(float(v), 1) for v in xyxy)
    box = (x1, y1, x2, y2)
    return DetectedObject(box, name, round(confidence, 4),
                          taxonomy.stream_of(name).value if known and taxonomy else None,
                          taxonomy.hazard_of(name) if known and taxonomy else None)


def detect_paths(paths: Iterable[str | Path], detector: Detector, taxonomy: Taxonomy | None,
                 decider: Decider | None = None, classifier: str | None = None) -> Iterator[ImageResult]:
    """The logic of ``sortloop detect``: one ``ImageResult`` per image file, in order."""
    for path in iter_images(paths):
        yield detect_image(path, detector, taxonomy, decider, classifier)
