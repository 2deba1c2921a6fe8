"""Export a trained checkpoint to ONNX for the station, with our metadata and a parity check.

The parity check runs the PyTorch checkpoint (Ultralytics predict) and the ONNX file (the station's Detector)
on the same real images with the same thresholds: every box must match within ``box_tol_px`` and
``score_tol``, and the counts must agree; else ``ParityError`` names the worst image and box.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from station.taxonomy import Taxonomy

if TYPE_CHECKING:
    from training.evaluate import EvalReport

log = logging.getLogger(__name__)

META_PREFIX = "sortloop_"


class ExportError(RuntimeError):
    """The export failed; the message names the file and the fix."""


class ParityError(ExportError):
    """The ONNX model does not reproduce the PyTorch model's detections."""


class ExportConfig(BaseModel):
    """ONNX export (the ``export:`` section of configs/training.yaml)."""

    model_config = ConfigDict(extra="forbid")

    opset: int = Field(17, ge=17, description="ONNX opset of the export.")
    simplify: bool = Field(True, description="Simplify the graph with onnxslim.")
    int8: bool = Field(False, description="Also write a dynamic-INT8 copy (<name>-int8.onnx) and report its "
                       "mAP50 change against fp32.")
    parity_images: int = Field(16, ge=1, description="Validation images the parity check runs on.")
    parity_conf: float = Field(0.05, gt=0, lt=1, description="Score threshold of the parity check (low, so "
                               "that many boxes are compared).")
    parity_iou: float = Field(0.5, gt=0, le=1, description="NMS IoU of the parity check.")
    box_tol_px: float = Field(1.0, gt=0, description="Largest allowed box-corner difference (px).")
    score_tol: float = Field(1e-3, gt=0, description="Largest allowed score difference.")
    imgsz: list[int] | None = Field(None, min_length=2, max_length=2, description="Input [height, width] of the "
                                    "export (multiples of 32), e.g. [320, 576] for 16:9 belt cameras: the "
                                    "whole frame at a finer scale than a square input. None: the training size.")


@dataclass(frozen=True)
class ParityReport:
    images: int
    boxes: int
    max_box_px: float
    max_score: float
    worst_image: str


@dataclass
class ExportResult:
    onnx: Path
    metadata: dict[str, str]
    parity: ParityReport
    int8: Path | None = None
    int8_map50_delta: float | None = None
    """mAP50 of the INT8 copy minus that of the fp32 model, on the same data (None: not measured)."""
    reports: dict[str, EvalReport] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ parity


@dataclass
class _Worst:
    box_px: float = 0.0
    score: float = 0.0
    image: str = ""
    detail: str = ""


def _compare(image: str, pt: tuple[np.ndarray, np.ndarray, np.ndarray], ox: tuple[np.ndarray, np.ndarray, np.ndarray],
             conf: float, cfg: ExportConfig, worst: _Worst) -> str | None:
    """Match PyTorch boxes to ONNX boxes of the same class; returns a failure message or None."""
    from training.evaluate import box_iou

    (pb, ps, pc), (ob, os_, oc) = _with_area(pt), _with_area(ox)
    iou = box_iou(pb, ob) * (pc[:, None] == oc[None, :])
    unmatched_o = set(range(len(ob)))
    for i in np.argsort(-ps, kind="stable"):
        j = max(unmatched_o, key=lambda k: iou[i, k], default=None)
        if j is None or iou[i, j] <= 0:
            if ps[i] - conf > cfg.score_tol:  # a borderline score may fall either side of the threshold
                return f"{image}: PyTorch box {_box(pb[i], pc[i], ps[i])} has no ONNX counterpart"
            continue
        unmatched_o.discard(j)
        d_box, d_score = float(np.abs(pb[i] - ob[j]).max()), float(abs(ps[i] - os_[j]))
        detail = f"{image}: PyTorch {_box(pb[i], pc[i], ps[i])} vs ONNX {_box(ob[j], oc[j], os_[j])}"
        if d_box > worst.box_px or d_score > worst.score:
            worst.box_px, worst.score = max(worst.box_px, d_box), max(worst.score, d_score)
            worst.image, worst.detail = image, detail
        if d_box > cfg.box_tol_px or d_score > cfg.score_tol:
            return f"{detail}: box differs by {d_box:.2f} px (tolerance {cfg.box_tol_px}), score by " \
                   f"{d_score:.5f} (tolerance {cfg.score_tol})"
    extra = [j for j in unmatched_o if os_[j] - conf > cfg.score_tol]
    if extra:
        return f"{image}: ONNX box {_box(ob[extra[0]], oc[extra[0]], os_[extra[0]])} has no PyTorch counterpart " \
               f"({len(extra)} such)"
    return None


def _with_area(r: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes with an area: one lying wholly in the letterbox padding clips to a line on the image edge, and
    the two NMS implementations may keep or drop such a box differently; it is no item either way."""
    xyxy, score, cls = r
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return xyxy[keep], score[keep], cls[keep]


def _box(xyxy: np.ndarray, cls: np.integer | int, score: np.floating | float) -> str:
    return f"[{', '.join(f'{v:.1f}' for v in xyxy)}] class {int(cls)} score {float(score):.4f}"


def check_parity(weights: Path, onnx_path: Path, images: Sequence[Path], *, imgsz: int | tuple[int, int],
                 cfg: ExportConfig | None = None) -> ParityReport:
    """PyTorch vs ONNX on ``images`` (see module doc); raises ParityError with the worst offender."""
    import cv2

    from station.detect import Detector
    from training.train import ultralytics_env

    cfg = cfg or ExportConfig()
    if not images:
        raise ParityError("parity check needs images; pass a dataset with validation images (--data)")
    ultralytics_env()
    from ultralytics import YOLO

    torch_model = YOLO(str(weights))
    onnx_model = Detector(onnx_path, confidence=cfg.parity_conf, iou=cfg.parity_iou, providers=[])
    worst, boxes = _Worst(), 0
    for path in images:
        bgr: npt.NDArray[np.uint8] | None = cv2.imread(str(path), cv2.IMREAD_COLOR)  # type: ignore[assignment]
        if bgr is None:
            raise ParityError(f"parity image {path} cannot be read; remove it from the dataset")
        found: Any = torch_model.predict(bgr, imgsz=imgsz, conf=cfg.parity_conf, iou=cfg.parity_iou, rect=False,
                                         device="cpu", verbose=False)
        r = found[0].boxes.cpu().numpy()
        pt = (r.xyxy.astype(np.float32), r.conf.astype(np.float32), r.cls.astype(np.int64))
        d = onnx_model(bgr)
        failure = _compare(path.name, pt, (d.xyxy, d.confidence, d.class_id), cfg.parity_conf, cfg, worst)
        if failure:
            raise ParityError(f"ONNX {onnx_path} does not reproduce {weights}: {failure}")
        boxes += len(pt[0])
    if boxes == 0:
        raise ParityError(f"parity unproven: {weights} finds no box above {cfg.parity_conf} on {len(images)} "
                          f"images; pass images with items or lower export.parity_conf")
    report = ParityReport(len(images), boxes, round(worst.box_px, 4), round(worst.score, 6), worst.image)
    log.info("parity ok: %d boxes on %d images, worst %.3f px / %.5f score (%s)", boxes, len(images),
             worst.box_px, worst.score, worst.detail)
    return report


# ------------------------------------------------------------------------------------------ export


def write_metadata(onnx_path: Path, extra: dict[str, str]) -> dict[str, str]:
    """Add (or replace) metadata entries of an ONNX file in place; returns all its metadata."""
    import onnx

    model = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in model.metadata_props} | extra
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(onnx_path))
    return meta


def _ultralytics_onnx(weights: Path, imgsz: int | tuple[int, int], cfg: ExportConfig, workdir: Path,
                      taxonomy: Taxonomy) -> tuple[Path, int | None]:
    """Export in ``workdir`` (never next to the checkpoint, which may be read-only shared data); also returns
    the size the checkpoint was trained at (None when it does not say)."""
    from training.train import ultralytics_env

    ultralytics_env()
    from ultralytics import YOLO

    local = workdir / "model.pt"
    shutil.copyfile(weights, local)
    model = YOLO(str(local))
    unknown = [n for n in model.names.values() if n not in taxonomy]
    if unknown:
        raise ExportError(f"{weights} has classes not in the taxonomy: {unknown[:10]}; train on a dataset built "
                          f"with `sortloop data build`")
    size = list(imgsz) if isinstance(imgsz, tuple) else imgsz
    out = model.export(format="onnx", imgsz=size, opset=cfg.opset, simplify=cfg.simplify, dynamic=False,
                       device="cpu", verbose=False)  # fp32, external NMS (the station's Detector does it)
    trained = model.ckpt.get("train_args", {}).get("imgsz") if isinstance(model.ckpt, dict) else None
    return Path(out), trained if isinstance(trained, int) and trained > 0 else None


@contextmanager
def _quiet_root() -> Iterator[None]:
    """onnxruntime.quantization logs one INFO line per tensor on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def _int8(onnx_path: Path, meta: dict[str, str]) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = onnx_path.with_name(f"{onnx_path.stem}-int8.onnx")
    with _quiet_root():
        quantize_dynamic(str(onnx_path), str(out), weight_type=QuantType.QUInt8)
    write_metadata(out, {**meta, f"{META_PREFIX}quantization": "dynamic-int8"})
    return out


def export(weights: Path, out: Path, *, imgsz: int | tuple[int, int], taxonomy: Taxonomy, manifest_digest: str,
           metrics: dict[str, float], version: str, int8: bool = False, parity_images: Sequence[Path] = (),
           eval_data: Path | None = None, cfg: ExportConfig | None = None) -> ExportResult:
    """``weights`` (.pt) → ``out`` (.onnx) with metadata, parity-checked; optional INT8 copy and its mAP50 delta."""
    cfg = cfg or ExportConfig()
    weights, out = Path(weights), Path(out)
    if not weights.is_file():
        raise ExportError(f"checkpoint {weights} not found; train first (`sortloop train`) or pass --weights")
    with tempfile.TemporaryDirectory(prefix="sortloop-export-") as tmp:
        exported, trained_at = _ultralytics_onnx(weights, imgsz, cfg, Path(tmp), taxonomy)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, out)
    meta = write_metadata(out, {f"{META_PREFIX}version": version, f"{META_PREFIX}taxonomy": taxonomy.digest,
                                f"{META_PREFIX}manifest": manifest_digest,
                                f"{META_PREFIX}metrics": json.dumps(metrics, sort_keys=True),
                                f"{META_PREFIX}created": datetime.now(UTC).isoformat(timespec="seconds"),
                                # a model may run at another size than it was trained at (the default model:
                                # trained at 320, run at 256 x 448); a retraining trains at this one
                                **({f"{META_PREFIX}train_imgsz": str(trained_at)} if trained_at else {})})
    parity = check_parity(weights, out, list(parity_images), imgsz=imgsz, cfg=cfg)
    result = ExportResult(out, meta, parity)
    if int8:
        result.int8 = _int8(out, meta)
        _int8_delta(result, eval_data, taxonomy)
    return result


def _int8_delta(result: ExportResult, eval_data: Path | None, taxonomy: Taxonomy) -> None:
    from training.evaluate import evaluate

    if eval_data is None or result.int8 is None:
        log.warning("INT8 accuracy not measured: pass eval data to compare it with fp32")
        return
    for key, model in (("fp32", result.onnx), ("int8", result.int8)):
        result.reports[key] = evaluate(model, eval_data, split="val", taxonomy=taxonomy)
    result.int8_map50_delta = result.reports["int8"].map50 - result.reports["fp32"].map50
    log.info("INT8 mAP50 %.4f vs fp32 %.4f (delta %+.4f)", result.reports["int8"].map50,
             result.reports["fp32"].map50, result.int8_map50_delta)
