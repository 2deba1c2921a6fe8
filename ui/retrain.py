"""Retrain the detector on the console's corrections, in a child process (``python -m ui.retrain spec.json``).

Steps: the corrections (a YOLO folder written by ``ui.corrections.export_dataset``: evidence crops with their
corrected box, background crops, boxed frames) are packed at their own pixel scale onto frame-sized canvases,
so the model sees items as large as on the belt; a replay sample of the base training data is added so the
model keeps what it knew; then fine-tune (from the current model's checkpoint; a registry with no current
version first adopts the model the station runs, the shipped default, with the checkpoint beside it, else one
recovered from the ONNX file's own weights (``training.recover``); the training config's base weights only where
neither can be had), export ONNX, evaluate candidate and current model on
the same data (the current model's evaluation data, and the held-out corrections) and register the candidate.
Promotion is the engineer's next step, through the registry's gate. Progress goes to the parent as
``@sortloop`` lines.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from station.store import JsonValue
from station.taxonomy import Taxonomy, load_taxonomy
from training.formats import Box, Sample, read_yolo, write_data_yaml, write_yolo_split

if TYPE_CHECKING:
    from training.evaluate import EvalReport, HazardRule
    from training.registry import ModelVersion
    from training.train import TrainConfig, TrainingSettings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
GAP_PX = 6
Progress = Callable[[float, str, str], None]


class RetrainError(RuntimeError):
    """The retraining cannot go on; the message names what is missing and the fix."""


IMGSZ_HELP = ("Training size; the candidate is then exported square at it. Default: the size the current model "
              "was trained at (its metadata's sortloop_train_imgsz, else its input height) for training, its whole "
              "input (e.g. 256 x 448) for the export.")


class RetrainSpec(BaseModel):
    """One retraining run (written by the engineer view as spec.json in the job folder)."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(description="Version the candidate is registered under.")
    by: str = Field(description="Who started it (audit trail).")
    corrections: str = Field(description="YOLO folder of the corrections (ui.corrections.export_dataset).")
    work_dir: str = Field(description="Job folder: dataset, run, model, evaluations.")
    registry: str = Field(description="Model registry folder.")
    taxonomy: str = Field(description="Taxonomy YAML.")
    replay_data: str | None = Field(None, description="data.yaml of the base training data (replay sample).")
    replay_n: int = Field(200, ge=0, description="Base training images mixed in.")
    eval_data: str | None = Field(None, description="Evaluation data (default: the current model's).")
    eval_split: str = Field("val", description="Split of eval_data.")
    weights: str | None = Field(None, description="Checkpoint to fine-tune (default: current model.pt, else "
                                "the training config's base weights).")
    station_model: str | None = Field(None, description="The ONNX the station runs while the registry has no "
                                      "current version (the shipped default): adopted as the first current "
                                      "version, its checkpoint beside it (same name, .pt) as model.pt, else one "
                                      "recovered from the ONNX weights (training.recover).")
    training_config: str | None = Field(None, description="configs/training.yaml (defaults when absent).")
    epochs: int = Field(10, ge=1)
    imgsz: int | None = Field(None, ge=32, description=IMGSZ_HELP)
    batch: int = Field(8, ge=1)
    device: str = Field("cpu")
    workers: int = Field(0, ge=0)
    seed: int = Field(0)
    canvas: tuple[int, int] = Field((1280, 720), description="Frame size (w, h) the crops are packed onto.")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of corrected images held out.")
    repeats: int | None = Field(None, ge=1, le=50, description="Times the corrections are packed (each time "
                                "in another order) into the training set; default: enough for about a third "
                                "of the training images.")
    conf: float | None = Field(None, ge=0, le=1, description="Operating threshold for evaluation.")
    hazard_floor: float | None = Field(None, ge=0, le=1, description="The station's score from which "
                                       "battery-hazard boxes are kept (model.hazard_confidence; None: conf).")
    hazard_doubt: float | None = Field(None, ge=0, le=1, description="The station's hazard-doubt share "
                                       "(decision.hazard_doubt): with it, hazard recall is counted as the "
                                       "station flags batteries; None: a winning hazard class only.")
    threads: int = Field(0, ge=0, description="torch CPU threads (0: library default).")
    train_args: dict[str, float | int | bool | str] = Field(default_factory=dict, description="Further "
                                                            "TrainConfig overrides (e.g. mosaic, lr0).")


@dataclass
class DatasetInfo:
    data_yaml: Path
    train_images: int
    val_images: int
    correction_images: int
    replay_images: int
    fixes_yaml: Path | None
    """data.yaml whose val split is the held-out corrections (None: none held out)."""


# --------------------------------------------------------------------------------------------- dataset


def _is_val(sample: Sample, fraction: float) -> bool:
    key = (sample.group or sample.image_path.stem).encode()
    return int(hashlib.sha256(key).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def _fill(img: np.ndarray) -> np.ndarray:
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    return np.median(border, axis=0).astype(np.uint8)


def pack(samples: Sequence[Sample], canvas: tuple[int, int], out_dir: Path, prefix: str) -> list[Sample]:
    """Small images (crops) side by side at their own scale on ``canvas``-sized sheets; large ones kept."""
    w_max, h_max = canvas
    large = [s.width > w_max // 2 or s.height > h_max // 2 for s in samples]
    kept = [s for s, big in zip(samples, large, strict=True) if big]
    small = [s for s, big in zip(samples, large, strict=True) if not big]
    out_dir.mkdir(parents=True, exist_ok=True)
    sheets: list[Sample] = []
    img: np.ndarray | None = None
    boxes: list[Box] = []
    x = y = shelf = 0
    for s in small:
        crop = cv2.imread(str(s.image_path), cv2.IMREAD_COLOR)
        if crop is None:
            continue
        h, w = crop.shape[:2]
        if x + w > w_max:
            x, y, shelf = 0, y + shelf + GAP_PX, 0
        if img is not None and y + h > h_max:
            sheets.append(_save_sheet(img, boxes, out_dir / f"{prefix}_{len(sheets):04d}.jpg"))
            img, boxes, x, y, shelf = None, [], 0, 0, 0
        if img is None:
            img = np.empty((h_max, w_max, 3), np.uint8)
            img[:] = _fill(crop)
        img[y:y + h, x:x + w] = crop
        boxes += [Box((b.xyxy[0] + x, b.xyxy[1] + y, b.xyxy[2] + x, b.xyxy[3] + y), b.class_name)
                  for b in s.boxes]
        x, shelf = x + w + GAP_PX, max(shelf, h)
    if img is not None:
        sheets.append(_save_sheet(img, boxes, out_dir / f"{prefix}_{len(sheets):04d}.jpg"))
    return kept + sheets


def _save_sheet(img: np.ndarray, boxes: list[Box], path: Path) -> Sample:
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return Sample(path, img.shape[1], img.shape[0], list(boxes), source="corrections", group=path.stem)


def _replay(spec: RetrainSpec, split: str, n: int, rng: random.Random, hazards: set[str]) -> list[Sample]:
    """A random sample of the base data, images with a hazard item first: the gate puts hazard recall first,
    so what the model knew about hazards is what it must not forget."""
    if not spec.replay_data or n <= 0:
        return []
    data = Path(spec.replay_data)
    root = data.parent if data.suffix in {".yaml", ".yml"} else data
    try:
        samples = read_yolo(root, split=split, source="replay")
    except ValueError as exc:
        if split != "train":
            return []
        raise RetrainError(f"replay data {data}: {exc}") from exc
    rng.shuffle(samples)
    samples.sort(key=lambda s: not any(b.class_name in hazards for b in s.boxes))  # stable: hazards first
    return samples[:n]


def build_dataset(spec: RetrainSpec, taxonomy: Taxonomy) -> DatasetInfo:
    """``work_dir/dataset``: packed corrections + replay (train), held-out corrections + replay (val)."""
    out = Path(spec.work_dir) / "dataset"
    shutil.rmtree(out, ignore_errors=True)
    corrected = read_yolo(Path(spec.corrections), source="corrections")
    if not corrected:
        raise RetrainError(f"no corrected images in {spec.corrections}; correct some items first")
    flags = [_is_val(s, spec.val_fraction) for s in corrected]
    if all(flags):
        flags[0] = False
    held = [s for s, v in zip(corrected, flags, strict=True) if v]
    train = [s for s, v in zip(corrected, flags, strict=True) if not v]
    rng = random.Random(spec.seed)  # noqa: S311 (sampling, not security)
    fix_train = pack(train, spec.canvas, out / "generated" / "train", "fix0")
    hazards = {c.name for c in taxonomy.classes if c.hazard != "none"}
    replay_train = _replay(spec, "train", spec.replay_n, rng, hazards)
    repeats = spec.repeats or max(1, min(20, math.ceil(len(replay_train) / 2 / max(1, len(fix_train)))))
    for r in range(1, repeats):
        fix_train += pack(rng.sample(train, len(train)), spec.canvas, out / "generated" / "train", f"fix{r}")
    fix_val = pack(held, spec.canvas, out / "generated" / "val", "fix") if held else []
    replay_val = _replay(spec, "val", max(4, spec.replay_n // 4), rng, hazards)
    names = list(taxonomy.names)
    write_yolo_split([*fix_train, *replay_train], out, names, "train")
    val = [*fix_val, *replay_val] or fix_train
    write_yolo_split(val, out, names, "val")
    fixes_yaml = None
    if fix_val:
        fixes = out / "fixes"
        write_yolo_split(fix_val, fixes, names, "val")
        fixes_yaml = write_data_yaml(fixes, names, {"val": "images/val"})
    data_yaml = write_data_yaml(out, names, {"train": "images/train", "val": "images/val"})
    return DatasetInfo(data_yaml, len(fix_train) + len(replay_train), len(val), len(corrected),
                       len(replay_train), fixes_yaml)


# ------------------------------------------------------------------------------------------ the model


def model_input(onnx: Path) -> tuple[int, int] | None:
    """The model's input (height, width) from its Ultralytics ``imgsz`` metadata; None when absent."""
    from training.registry import onnx_metadata

    raw = onnx_metadata(onnx).get("imgsz")
    try:
        value = ast.literal_eval(raw) if raw else None
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and value:
        return int(value[0]), int(value[-1])
    return None


def trained_size(onnx: Path) -> int | None:
    """The square size the model was trained at (``sortloop_train_imgsz``, written by ``sortloop export``);
    None when absent."""
    from training.registry import onnx_metadata

    raw = onnx_metadata(onnx).get("sortloop_train_imgsz", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


@dataclass(frozen=True)
class Adoption:
    """The station's model, registered as the current version, and which checkpoint it got (for the job log)."""

    version: ModelVersion
    checkpoint: str


def adopt_station_model(spec: RetrainSpec, info: DatasetInfo, taxonomy: Taxonomy) -> Adoption | None:
    """With no current version in the registry the station runs the model its config names (the shipped
    default). Register that one as the current version, with its checkpoint, so the candidate is fine-tuned from
    the model the station runs and the gate judges it against that model, not against nothing."""
    from training.evaluate import evaluate
    from training.registry import Registry, model_card

    registry = Registry(Path(spec.registry))
    if registry.current() is not None or not spec.station_model:
        return None
    onnx = Path(spec.station_model)
    if not onnx.is_file():
        log.warning("the station's model %s is not there to adopt; the candidate is judged on its own", onnx)
        return None
    data, split = _eval_target(spec, None, info)
    report = evaluate(onnx, data, split=split, conf=spec.conf, taxonomy=taxonomy,
                      hazard_rule=hazard_rule(spec))
    beside = onnx.with_suffix(".pt")
    found: Path | None
    if beside.is_file():
        found, checkpoint = beside, "its checkpoint"
    else:
        found = recover_checkpoint(spec, onnx, info, taxonomy)
        checkpoint = ("a checkpoint recovered from its ONNX weights" if found is not None
                      else "no checkpoint (fine-tuning the base weights)")
    return Adoption(registry.adopt(onnx, model_card(onnx, report), report, weights=found, by=spec.by), checkpoint)


def recover_checkpoint(spec: RetrainSpec, onnx: Path, info: DatasetInfo, taxonomy: Taxonomy) -> Path | None:
    """No checkpoint beside the station's model (a fresh clone: only ONNX files are in the repository): rebuild
    one from the ONNX file's weights, calibrated on the retraining's own training images, so the candidate is
    fine-tuned from the model the station runs. None (with a warning) where that cannot be done: then fine-tuning
    starts from the base weights."""
    from training.recover import RecoverError, recover_with_data

    out = Path(spec.work_dir) / "recovered" / onnx.with_suffix(".pt").name
    try:
        result = recover_with_data(onnx, out, info.data_yaml, taxonomy)
    except RecoverError as exc:
        log.warning("no checkpoint beside the station's model and none recovered from it (%s): fine-tuning "
                    "starts from the base weights", exc)
        return None
    log.info("no checkpoint beside the station's model: recovered one from %s (%s, calibrated on %d training "
             "images, parity on %d boxes)", onnx, result.architecture, result.calibration_images,
             result.parity_boxes)
    return out


def start_weights(spec: RetrainSpec, base_weights: Path) -> Path:
    """The checkpoint to fine-tune: given, the current model's model.pt, or the base weights."""
    from training.registry import Registry

    if spec.weights:
        return Path(spec.weights)
    current = Registry(Path(spec.registry)).current()
    if current is not None and (current.folder / "model.pt").is_file():
        return current.folder / "model.pt"
    return base_weights


# ------------------------------------------------------------------------------------------ evaluation


@dataclass
class Comparison:
    """The candidate beside the current model on the same data: the current model's evaluation data (what the
    gate compares) and the held-out corrections (what the retraining was for)."""

    candidate: str
    current: str | None
    base_candidate: EvalReport
    base_current: EvalReport | None
    fixes_candidate: EvalReport | None = None
    fixes_current: EvalReport | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> Comparison:
        from training.evaluate import EvalReport

        raw = json.loads(Path(path).read_text())
        reports = {k: None if raw[k] is None else EvalReport.from_dict(raw[k])
                   for k in ("base_candidate", "base_current", "fixes_candidate", "fixes_current")}
        base = reports.pop("base_candidate")
        if base is None:
            raise RetrainError(f"{path}: no evaluation of the candidate; retrain again")
        return cls(raw["candidate"], raw["current"], base, **reports)


def hazard_rule(spec: RetrainSpec) -> HazardRule | None:
    """The station's hazard rule the gate's figures are counted with (None when the spec names none)."""
    from training.evaluate import HazardRule

    return None if spec.hazard_doubt is None else HazardRule(spec.hazard_floor, spec.hazard_doubt)


def _eval_target(spec: RetrainSpec, current: ModelVersion | None, info: DatasetInfo) -> tuple[Path, str]:
    if spec.eval_data:
        return Path(spec.eval_data), spec.eval_split
    if current is not None and Path(current.report.data).exists():
        return Path(current.report.data), current.report.split
    return info.data_yaml, "val"


def compare(spec: RetrainSpec, onnx: Path, info: DatasetInfo, taxonomy: Taxonomy) -> Comparison:
    """Evaluate the candidate (and the current model, unless its evaluation on the same data is on record)."""
    from training.evaluate import evaluate
    from training.registry import Registry

    registry = Registry(Path(spec.registry))
    current = registry.current()
    data, split = _eval_target(spec, current, info)
    rule = hazard_rule(spec)
    cand = evaluate(onnx, data, split=split, conf=spec.conf, taxonomy=taxonomy, hazard_rule=rule)
    cur = None
    if current is not None:
        cur = current.report
        if (cur.data_digest, cur.operating_point) != (cand.data_digest, cand.operating_point):
            # the gate needs both on the same data at the same operating point: record it
            cur = evaluate(current.model, data, split=split, conf=spec.conf, taxonomy=taxonomy,
                           hazard_rule=rule)
            registry.record_eval(current.version, cur, by=spec.by)
    out = Comparison(spec.version, current.version if current else None, cand, cur)
    if info.fixes_yaml is not None:
        out.fixes_candidate = evaluate(onnx, info.fixes_yaml, split="val", conf=spec.conf, taxonomy=taxonomy,
                                       hazard_rule=rule)
        if current is not None:
            out.fixes_current = evaluate(current.model, info.fixes_yaml, split="val", conf=spec.conf,
                                         taxonomy=taxonomy, hazard_rule=rule)
    return out


# ---------------------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class RetrainResult:
    version: str
    model: str
    weights: str
    comparison: str
    train_images: int
    val_images: int
    correction_images: int
    replay_images: int
    epochs: int
    seconds: float

    def to_dict(self) -> dict[str, JsonValue]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> RetrainResult:
        if not isinstance(data, dict):
            raise RetrainError(f"not a retraining result: {data!r}")
        return cls(**data)


def _train_cfg(spec: RetrainSpec, settings: TrainingSettings, data: Path, weights: Path,
               imgsz: int) -> TrainConfig:
    from training.train import TrainConfig

    base = settings.train.model_dump()
    return TrainConfig.model_validate({
        **base, "data": str(data), "base_weights": str(weights), "epochs": spec.epochs, "imgsz": imgsz,
        "batch": spec.batch, "device": spec.device, "workers": spec.workers, "seed": spec.seed,
        "name": spec.version, "runs_dir": str(Path(spec.work_dir) / "runs"), "resume": False, "plots": False,
        "patience": spec.epochs, "close_mosaic": min(int(base["close_mosaic"]), spec.epochs // 2),
        **spec.train_args})


def run_retrain(spec: RetrainSpec, progress: Progress) -> RetrainResult:
    """Dataset → fine-tune → ONNX → evaluation → registry (see module doc)."""
    from training.export import export
    from training.registry import Registry, model_card
    from training.train import load_settings, train

    t0 = time.perf_counter()
    tax = load_taxonomy(spec.taxonomy)
    settings = load_settings(spec.training_config)
    registry = Registry(Path(spec.registry))
    progress(0.01, "building the dataset", "dataset")
    info = build_dataset(spec, tax)
    progress(0.05, f"dataset: {info.correction_images} corrected images, {info.replay_images} replay images, "
             f"{info.val_images} for validation", "dataset")
    if (adopted := adopt_station_model(spec, info, tax)) is not None:  # only while none is current
        progress(0.05, f"adopted the station's model {adopted.version.version} as the current version, with "
                 f"{adopted.checkpoint}", "dataset")
    current = registry.current()
    # train at the size the current model was trained at (else its input height: Ultralytics trains square),
    # export at its whole input (the default 16:9 belt model: trained at 320, run at 256 x 448): the candidate
    # must see the belt at the scale the current model does
    shape = model_input(current.model) if current else None
    trained = trained_size(current.model) if current else None
    imgsz = spec.imgsz or trained or (shape[0] if shape else None) or settings.train.imgsz
    export_size = shape if shape and not spec.imgsz else (imgsz, imgsz)
    weights = start_weights(spec, settings.train.resolve(settings.train.base_weights))
    cfg = _train_cfg(spec, settings, info.data_yaml, weights, imgsz)
    result = train(cfg, progress=lambda e: progress(0.05 + 0.75 * e.epoch / e.epochs, e.line(), "train"))
    progress(0.82, "exporting to ONNX (with a parity check)", "export")
    onnx = Path(spec.work_dir) / "model.onnx"
    parity = sorted((info.data_yaml.parent / "images" / "val").iterdir())[: settings.export.parity_images]
    best = result.best_epoch
    export(result.best, onnx, imgsz=export_size, taxonomy=tax, manifest_digest=f"corrections-{spec.version}",
           metrics=best.metrics if best else {}, version=spec.version, parity_images=parity,
           cfg=settings.export)
    progress(0.88, "evaluating candidate and current model", "evaluate")
    comparison = compare(spec, onnx, info, tax)
    progress(0.97, "registering the candidate", "register")
    mv = registry.add(onnx, model_card(onnx, comparison.base_candidate), comparison.base_candidate,
                      version=spec.version, by=spec.by)
    shutil.copyfile(result.best, mv.folder / "model.pt")  # the next retraining fine-tunes from it
    path = comparison.save(mv.folder / "comparison.json")
    return RetrainResult(spec.version, str(mv.model), str(mv.folder / "model.pt"), str(path),
                         info.train_images, info.val_images, info.correction_images, info.replay_images,
                         len(result.epochs), round(time.perf_counter() - t0, 1))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ui.retrain SPEC.json``: run one retraining, reporting to the parent job."""
    from ui.jobs import emit

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m ui.retrain SPEC.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")
    os.environ["YOLO_OFFLINE"] = "1"
    try:
        os.nice(10)  # the station's workers come first
    except OSError:
        log.debug("could not lower the priority")
    try:
        spec = RetrainSpec.model_validate_json(Path(args[0]).read_text())
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        result = run_retrain(spec, lambda f, m, st: emit(progress=f, message=m, stage=st))
    except Exception as exc:  # the process boundary: every failure becomes the job's error message
        log.exception("retraining failed")
        emit(error=f"{type(exc).__name__}: {exc}")
        return 1
    emit(result=result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
