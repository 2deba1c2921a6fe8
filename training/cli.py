"""``sortloop train | export | recover | eval | promote | rollback | models | data``: the model side of the CLI.

User errors (missing files, bad config, a refused promotion) end with ``error: …`` and exit code 2.
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from training.registry import BaseRegistry

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., None])

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Training config (configs/training.yaml).")]
RegistryOpt = Annotated[Path | None, typer.Option("--registry", help="Registry folder (default: the station "
                                                  "config's model.registry, models/registry).")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who does it (for the audit trail; default: $USER).")]
KindOpt = Annotated[str, typer.Option("--kind", help="detector, or classifier (the crop classifiers' registry, "
                                      "the `classifiers` folder of the registry).")]
KINDS = ("detector", "classifier")


def _user_errors() -> tuple[type[Exception], ...]:
    from station.config import ConfigError
    from station.detect import ModelError
    from station.taxonomy import TaxonomyError
    from training.evaluate import EvalError
    from training.export import ExportError
    from training.recover import RecoverError
    from training.registry import RegistryError
    from training.train import TrainError

    return (ConfigError, ModelError, TaxonomyError, EvalError, ExportError, RecoverError, RegistryError,
            TrainError)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def user_errors(fn: F) -> F:
    """Turn our specific exceptions into ``error: message`` and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            fn(*args, **kwargs)
        except _user_errors() as exc:
            raise _fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _registry(path: Path | None, kind: str = "detector") -> BaseRegistry[Any]:
    """The detector registry (``path`` or the station config's), or the crop classifiers' registry in it."""
    from station.config import load_config
    from training.evaluate import STATION_CONFIG
    from training.registry import ClassifierRegistry, Registry

    if kind not in KINDS:
        raise _fail(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    if path is None:
        cfg = load_config(STATION_CONFIG if STATION_CONFIG.is_file() else None)
        path = cfg.resolve(cfg.model.registry)
    return ClassifierRegistry.beside(path) if kind == "classifier" else Registry(path)


def _by(by: str | None) -> str:
    return by or getpass.getuser()


# ------------------------------------------------------------------------------------------------ train


def train_cmd(
    config: ConfigOpt = None,
    data: Annotated[str | None, typer.Option(help="data.yaml of the dataset.")] = None,
    base_weights: Annotated[str | None, typer.Option(help="Checkpoint to fine-tune (.pt).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.")] = None,
    time_hours: Annotated[float | None, typer.Option(help="Train for this many hours (the epochs fit to it).")] = None,
    imgsz: Annotated[int | None, typer.Option(help="Image size (px).")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    workers: Annotated[int | None, typer.Option(help="Data-loader workers.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or a CUDA index such as 0.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stop patience (epochs).")] = None,
    name: Annotated[str | None, typer.Option(help="Run folder name under runs/.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run's last.pt.")] = False,
    mosaic: Annotated[float | None, typer.Option(help="Mosaic probability.")] = None,
    mixup: Annotated[float | None, typer.Option(help="Mixup probability.")] = None,
    degrees: Annotated[float | None, typer.Option(help="Rotation range (±degrees).")] = None,
    scale: Annotated[float | None, typer.Option(help="Scale gain range.")] = None,
    fliplr: Annotated[float | None, typer.Option(help="Left-right flip probability.")] = None,
    copy_paste: Annotated[float | None, typer.Option(help="Copy-paste probability.")] = None,
    hsv_v: Annotated[float | None, typer.Option(help="Brightness jitter.")] = None,
    close_mosaic: Annotated[int | None, typer.Option(help="Epochs without mosaic at the end.")] = None,
    lr0: Annotated[float | None, typer.Option(help="Initial learning rate.")] = None,
    cos_lr: Annotated[bool | None, typer.Option("--cos-lr/--linear-lr", help="Learning-rate schedule.")] = None,
    warmup_epochs: Annotated[float | None, typer.Option(help="Warm-up epochs (0: none).")] = None,
) -> None:
    """Fine-tune the detector (offline, seeded, resumable); prints one line per epoch."""
    given = {k: v for k, v in locals().items() if k not in {"config", "resume"} and v is not None}
    for key in ("data", "base_weights"):  # paths typed on the command line are relative to the shell's folder
        if key in given:
            given[key] = str(Path(given[key]).resolve())
    from pydantic import ValidationError

    from training.train import TrainConfig, TrainError, load_settings, train

    settings = load_settings(config)
    try:
        cfg = TrainConfig.model_validate({**settings.train.model_dump(), **given, "resume": resume})
    except ValidationError as exc:
        raise TrainError("; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    result = train(cfg, progress=lambda s: typer.echo(s.line()))
    best = result.best_epoch
    typer.echo(f"run {result.run_dir}: best weights {result.best}"
               + (f" (epoch {best.epoch}, mAP50 {best.metrics['map50']:.3f})" if best else ""))


# ----------------------------------------------------------------------------------------------- export


def _manifest_digest(manifest: Path | None, data: Path) -> str:
    from training.export import ExportError
    from training.manifest import Manifest

    path = manifest or (data.parent if data.is_file() else data) / "manifest.json"
    if not path.is_file():
        if manifest is not None:
            raise ExportError(f"manifest {manifest} not found; pass the manifest.json of the training dataset")
        log.warning("no manifest.json beside %s: the model's sortloop_manifest is 'none'", data)
        return "none"
    try:
        return Manifest.load(path).digest()
    except ValueError as exc:
        raise ExportError(str(exc)) from None


def _train_metrics(weights: Path) -> dict[str, float]:
    summary = weights.parent.parent / "train_summary.json"
    if not summary.is_file():
        return {}
    best = json.loads(summary.read_text()).get("best") or {}
    return {k: float(v) for k, v in (best.get("metrics") or {}).items()}


def _pair(values: list[int]) -> tuple[int, int]:
    return values[0], values[1]


def _parse_size(text: str) -> int | tuple[int, int]:
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",")]
    except ValueError:
        raise _fail(f"--imgsz {text!r}: give 320 or height,width such as 320,576") from None
    if len(parts) not in (1, 2) or any(p % 32 or p <= 0 for p in parts):
        raise _fail(f"--imgsz {text!r}: sizes must be positive multiples of 32 (e.g. 320 or 320,576)")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def export_cmd(
    config: ConfigOpt = None,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint (default: runs/<name>/weights/best.pt).")] = None,
    out: Annotated[Path | None, typer.Option(help="ONNX file to write (default: models/<version>.onnx).")] = None,
    version: Annotated[str | None, typer.Option(help="Model version (default: <run name>-<UTC time>).")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset for parity images and the INT8 comparison.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="manifest.json of the training data.")] = None,
    imgsz: Annotated[str | None, typer.Option(help="Input size: 320, or height,width such as 320,576 for a "
                                               "16:9 camera (default: export.imgsz in the config, else the "
                                               "training size).")] = None,
    int8: Annotated[bool | None, typer.Option("--int8/--no-int8", help="Also write a dynamic-INT8 copy.")] = None,
) -> None:
    """Export a checkpoint to ONNX with metadata; fails loudly when ONNX and PyTorch disagree."""
    from station.taxonomy import load_taxonomy
    from training.evaluate import resolve_data
    from training.export import export
    from training.train import load_settings

    s = load_settings(config)
    weights = weights or s.train.run_dir / "weights" / "best.pt"
    version = version or f"{s.train.name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    data_path = data or s.train.resolve(s.train.data)
    tax = load_taxonomy()
    digest = _manifest_digest(manifest, data_path)
    _, images = resolve_data(data_path, "val", tax)
    size = _parse_size(imgsz) if imgsz else (_pair(s.export.imgsz) if s.export.imgsz else s.train.imgsz)
    result = export(weights, out or Path("models") / f"{version}.onnx", imgsz=size, taxonomy=tax,
                    manifest_digest=digest, metrics=_train_metrics(weights), version=version,
                    int8=s.export.int8 if int8 is None else int8, parity_images=images[: s.export.parity_images],
                    eval_data=data_path, cfg=s.export)
    p = result.parity
    typer.echo(f"{result.onnx}: version {version}, parity ok on {p.images} images / {p.boxes} boxes "
               f"(worst {p.max_box_px:.3f} px, {p.max_score:.5f} score)")
    if result.int8 is not None:
        delta = "not measured" if result.int8_map50_delta is None else f"{result.int8_map50_delta:+.4f}"
        typer.echo(f"{result.int8}: INT8 mAP50 change vs fp32 {delta}")


def recover_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model exported by Ultralytics (YOLO11/YOLOv8, NMS after).")],
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write (default: beside the model, same name, "
                                             ".pt).")] = None,
    data: Annotated[Path | None, typer.Option(help="Images that calibrate the batch norms, best the ones you will "
                                              "train on: data.yaml, YOLO folder or .txt list (train split); "
                                              "default: 40 simulator scenes.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint at --out.")] = False,
) -> None:
    """Rebuild a trainable checkpoint from an ONNX model's weights (for fine-tuning where only the ONNX file is
    at hand); it must reproduce the model's boxes, else nothing is written."""
    import tempfile

    from station.simulator import render_dataset
    from station.taxonomy import load_taxonomy
    from training.recover import CALIBRATION_IMAGES, recover_with_data

    out = out or model.with_suffix(".pt")
    if out.exists() and not force:  # beside the model it may be the model's real checkpoint: never lose that
        raise _fail(f"{out} exists (a checkpoint beside a model is usually its own, better than a recovered one); "
                    f"give another --out, or --force to replace it")
    with tempfile.TemporaryDirectory(prefix="sortloop-recover-") as tmp:
        if data is None:
            render_dataset(Path(tmp), CALIBRATION_IMAGES + 8, seed=0, width=1280, height=720)
            data = Path(tmp)
        result = recover_with_data(model, out, data, load_taxonomy())
    gap = "unmeasured" if result.train_mode_gap is None else f"{result.train_mode_gap:.4f}"
    typer.echo(f"{out}: {result.architecture} from {model} ({result.tensors} tensors), batch norms calibrated on "
               f"{result.calibration_images} images, parity ok on {result.parity_boxes} boxes, train-mode score "
               f"gap {gap}")


# ------------------------------------------------------------------------------------------------- eval


def _eval_by_source(model: Path, build: Path, classifier: str | None, out: Path | None, as_json: bool,
                    register: Path | None, by: str | None) -> None:
    """The cross-source report; with ``register`` (a registry folder) the classifier is added to its crop
    classifiers' registry with the report as its evaluation."""
    from training.registry import ClassifierRegistry, classifier_card
    from training.source_eval import evaluate_sources, station_pair

    if register is not None and (classifier is None or classifier == "none"):
        raise _fail("--register with --by-source adds a crop classifier to the registry: name it with "
                    "--classifier PATH (the report is the pair's, with --model as the station's detector)")

    taxonomy, det, decider = station_pair(model, classifier)
    report = evaluate_sources(build, det, decider, taxonomy)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "sources.json").write_text(report.to_json())
        (out / "sources.md").write_text(report.to_markdown() + "\n")
    if register is not None and classifier is not None:
        path = Path(classifier)
        mv = ClassifierRegistry.beside(register).add(path, classifier_card(path, report), report, by=_by(by))
        typer.echo(f"registered classifier {mv.version} at {mv.folder}", err=as_json)
    typer.echo(report.to_json() if as_json else report.to_markdown())


def eval_cmd(
    model: Annotated[Path, typer.Option(help="ONNX model.")],
    data: Annotated[Path, typer.Option(help="data.yaml, YOLO folder or .txt list of images.")],
    split: Annotated[str, typer.Option(help="Split of a data.yaml: train, val or test.")] = "test",
    conf: Annotated[float | None, typer.Option(help="Operating threshold (default: configs/station.yaml).")] = None,
    iou: Annotated[float, typer.Option(help="NMS IoU.")] = 0.5,
    station_hazards: Annotated[bool, typer.Option(
        "--station-hazards", help="Count hazard recall and precision as the station flags batteries "
        "(configs/station.yaml model.hazard_confidence and decision.hazard_doubt), as the console's retraining "
        "does for the gate; default: a winning hazard class above --conf.")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for report.json, report.md and plots.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    register: Annotated[bool, typer.Option("--register", help="Add the model with this report to the registry "
                                           "(with --by-source: the --classifier to the crop classifiers' registry)."
                                           )] = False,
    manifest: Annotated[Path | None, typer.Option(help="Training manifest.json for the model card.")] = None,
    registry: RegistryOpt = None,
    by: ByOpt = None,
    by_source: Annotated[bool, typer.Option(
        "--by-source", help="Cross-source report: --data is a build folder; each real held-out list "
        "(lists/test_<source>.txt) through the station's still-photo decision (detector, decision rule, crop "
        "classifier): found, right stream, hazard recall, false hazard, textile found.")] = False,
    classifier: Annotated[str | None, typer.Option(
        help="With --by-source: crop classifier ONNX for the second look ('none' for none; default: "
        "configs/station.yaml's).")] = None,
) -> None:
    """Evaluate a model through the station's detector: mAP, stream confusion, hazard recall, calibration."""
    from training.evaluate import HazardRule, evaluate, save_report
    from training.registry import model_card

    if by_source:
        _eval_by_source(model, data, classifier, out, as_json, _registry(registry).root if register else None, by)
        return
    rule = HazardRule.of_station() if station_hazards else None
    report = evaluate(model, data, split=split, conf=conf, iou=iou, hazard_rule=rule)
    if out is not None:
        save_report(report, out)
    if register:
        mv = _registry(registry).add(model, model_card(model, report, manifest=manifest), report, by=_by(by))
        typer.echo(f"registered {mv.version} at {mv.folder}", err=as_json)
    typer.echo(report.to_json() if as_json else report.to_markdown())


# ------------------------------------------------------------------------------------------- registry


def promote_cmd(
    version: Annotated[str, typer.Argument(help="Registered version to promote.")],
    config: ConfigOpt = None,
    registry: RegistryOpt = None,
    by: ByOpt = None,
    kind: KindOpt = "detector",
) -> None:
    """Promote a version if the gate lets it (hazard recall first; then mAP50-95 for a detector, false hazards
    and right stream on real held-out photos for a crop classifier); the station hot-swaps."""
    from training.train import load_settings

    decision = _registry(registry, kind).promote(version, load_settings(config).gate, _by(by))
    typer.echo(f"promoted {kind} {version} (was {decision.current or 'none'})")


def rollback_cmd(registry: RegistryOpt = None, by: ByOpt = None, kind: KindOpt = "detector") -> None:
    """Point the station back at the previously promoted version."""
    mv = _registry(registry, kind).rollback(_by(by))
    typer.echo(f"rolled back {kind} to {mv.version}")


def models_cmd(registry: RegistryOpt = None,
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
               kind: KindOpt = "detector") -> None:
    """List registered versions with their gate metrics; * marks the promoted one."""
    reg = _registry(registry, kind)
    ptr = reg.pointer()
    for mv in reg.versions():
        m = reg.metrics(mv.report)
        current = ptr is not None and ptr.version == mv.version
        if as_json:
            typer.echo(json.dumps({"version": mv.version, "current": current, "created": mv.report.created, **m}))
            continue
        figures = "  ".join(f"{k.replace('_', ' ')} {'n/a' if v is None else f'{v:.3f}'}" for k, v in m.items())
        typer.echo(f"{'*' if current else ' '} {mv.version:<32} {figures}  {mv.report.created}")


EXTRA_MODULES = ("torch", "ultralytics", "onnx")
"""What ``pip install 'sortloop[training]'`` brings that these commands need."""


def register(app: typer.Typer) -> None:
    """The ``sortloop.commands`` entry point: add the training and dataset commands to ``app``. Without the
    training extra they are listed all the same and say which extra to install."""
    from station.cli import extra_missing, fail, needs_extra

    guard = needs_extra("training", EXTRA_MODULES)
    for name, command in (("train", train_cmd), ("export", export_cmd), ("recover", recover_cmd),
                          ("eval", eval_cmd), ("promote", promote_cmd), ("rollback", rollback_cmd),
                          ("models", models_cmd)):
        app.command(name)(guard(user_errors(command)))
    from training.data_cli import data_app

    def data_needs_extra() -> None:
        why = extra_missing("training", EXTRA_MODULES)
        if why is not None:
            raise fail(why)

    app.add_typer(data_app, name="data", callback=data_needs_extra)
