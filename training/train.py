"""Fine-tune a YOLO detector with Ultralytics, offline, seeded and resumable.

``train(cfg)`` writes ``<runs_dir>/<name>/``: Ultralytics' weights, results.csv and plots, plus our
``train_summary.json`` (config, seconds per epoch, best metrics). Ultralytics is imported only inside the
functions here, after ``ultralytics_env()`` has made it offline and pointed its config dir into ``var/``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from station.taxonomy import Taxonomy, load_taxonomy
from training.export import ExportConfig
from training.registry import GateConfig

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "training.yaml"
SYSTEM_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
SUMMARY_FILE = "train_summary.json"
SHARED = ROOT.parent / "shared"


class TrainError(RuntimeError):
    """Training cannot start or resume; the message names the file or setting and the fix."""


def ultralytics_env() -> bool:
    """Make Ultralytics offline and project-local; returns whether plots can use a local font.

    Must run before ``import ultralytics``: it reads YOLO_OFFLINE and YOLO_CONFIG_DIR at import. Ultralytics
    downloads Arial.ttf for plots when it finds none; a local DejaVuSans copied under that name stops it.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "var" / "ultralytics"))
    from ultralytics.utils import USER_CONFIG_DIR

    if not SYSTEM_FONT.is_file():
        return all((USER_CONFIG_DIR / f).is_file() for f in ("Arial.ttf", "Arial.Unicode.ttf"))
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = USER_CONFIG_DIR / name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SYSTEM_FONT, target)
    return True


class TrainConfig(BaseModel):
    """One training run (the ``train:`` section of configs/training.yaml; CLI options override it)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data: str = Field("data/sortloop/data.yaml", description="YOLO data.yaml built by `sortloop data build` "
                      "(relative paths are taken from the repository root).")
    base_weights: str = Field("../shared/weights/yolo11n-coco.pt", description="Checkpoint to fine-tune, read "
                              "from disk only (relative to the repository root).")
    epochs: int = Field(50, ge=1, description="Training epochs.")
    time_hours: float | None = Field(None, gt=0, description="Train for this long instead (hours, e.g. a GPU "
                                     "lease): after the first epoch Ultralytics sets the epochs to fit, "
                                     "close_mosaic and the learning-rate schedule included.")
    imgsz: int = Field(320, ge=32, description="Square training image size (px, multiple of 32).")
    batch: int = Field(16, ge=1, description="Images per batch.")
    workers: int = Field(2, ge=0, description="Data-loader worker processes (0 = load in the main process).")
    device: str = Field("cpu", description="'cpu' or a CUDA device index such as '0'.")
    seed: int = Field(0, description="Random seed (same seed, same data, same device → same run).")
    deterministic: bool = Field(True, description="Use deterministic torch algorithms where they exist.")
    patience: int = Field(20, ge=0, description="Stop after this many epochs without validation improvement.")
    name: str = Field("sortloop", min_length=1, description="Run folder name under runs_dir.")
    runs_dir: str = Field("runs", description="Folder of run folders (relative to the repository root).")
    resume: bool = Field(False, description="Continue the run folder's last.pt instead of starting afresh.")
    amp: bool = Field(True, description="Mixed precision on CUDA (bf16 when Ultralytics' AMP check would need "
                      "a download); ignored on the CPU.")
    plots: bool = Field(True, description="Write Ultralytics' plots (needs a local font, see docs/training.md).")
    optimizer: Literal["auto", "SGD", "AdamW", "Adam"] = Field(
        "auto", description="Optimizer; 'auto' chooses by iteration count and ignores lr0.")
    lr0: float = Field(0.01, gt=0, description="Initial learning rate (used unless optimizer is 'auto').")
    cos_lr: bool = Field(False, description="Cosine learning-rate schedule instead of linear.")
    warmup_epochs: float = Field(3.0, ge=0, description="Warm-up epochs: the learning rate ramped up from 0 (the "
                                 "bias rate down from 0.1 with a named optimizer; with 'auto' it starts at 0 "
                                 "too); 0 starts at lr0.")
    mosaic: float = Field(1.0, ge=0, le=1, description="Probability of 4-image mosaic augmentation.")
    close_mosaic: int = Field(10, ge=0, description="Turn mosaic off for the last N epochs.")
    mixup: float = Field(0.0, ge=0, le=1, description="Probability of mixup augmentation.")
    copy_paste: float = Field(0.0, ge=0, le=1, description="Probability of copy-paste (needs masks; else off).")
    hsv_h: float = Field(0.015, ge=0, le=1, description="Hue jitter (fraction).")
    hsv_s: float = Field(0.7, ge=0, le=1, description="Saturation jitter (fraction).")
    hsv_v: float = Field(0.4, ge=0, le=1, description="Brightness jitter (fraction).")
    degrees: float = Field(0.0, ge=0, le=180, description="Random rotation range (±degrees).")
    scale: float = Field(0.5, ge=0, lt=1, description="Random scale gain range (±fraction).")
    fliplr: float = Field(0.5, ge=0, le=1, description="Probability of a left-right flip.")
    flipud: float = Field(0.0, ge=0, le=1, description="Probability of an up-down flip (fine for top views).")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        v = str(v).strip().lower()
        if v != "cpu" and not all(p.isdigit() for p in v.split(",")):
            raise ValueError(f"device {v!r}: use 'cpu' or CUDA device indices such as '0' or '0,1'")
        return v

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else ROOT / p

    @property
    def run_dir(self) -> Path:
        return self.resolve(self.runs_dir) / self.name


class TrainingSettings(BaseModel):
    """configs/training.yaml: training run, export and promotion gate."""

    model_config = ConfigDict(extra="forbid")

    train: TrainConfig = Field(default_factory=TrainConfig, description="Training run defaults.")
    export: ExportConfig = Field(default_factory=ExportConfig, description="ONNX export and parity check.")
    gate: GateConfig = Field(default_factory=GateConfig, description="Promotion gate of the model registry.")


def load_settings(path: str | Path | None = None) -> TrainingSettings:
    """configs/training.yaml → TrainingSettings; defaults when the default file is absent."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    if not p.is_file():
        if path is None:
            return TrainingSettings()
        raise TrainError(f"training config {p} not found; pass an existing YAML file (configs/training.yaml)")
    try:
        return TrainingSettings.model_validate(yaml.safe_load(p.read_text()) or {})
    except yaml.YAMLError as exc:
        raise TrainError(f"{p}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise TrainError(f"{p}: invalid training config: {where}") from exc


@dataclass
class EpochStats:
    """What one epoch gave: losses, validation metrics, time."""

    epoch: int
    epochs: int
    seconds: float
    losses: dict[str, float]
    metrics: dict[str, float]
    fitness: float
    eta_s: float

    def line(self) -> str:
        loss = " ".join(f"{k.removeprefix('train/')} {v:.3f}" for k, v in self.losses.items())
        return (f"epoch {self.epoch}/{self.epochs}  {loss}  mAP50 {self.metrics.get('map50', 0.0):.3f}  "
                f"mAP50-95 {self.metrics.get('map50_95', 0.0):.3f}  {self.seconds:.1f} s  "
                f"ETA {_hms(self.eta_s)}")


@dataclass
class TrainResult:
    """A finished (or early-stopped) run."""

    run_dir: Path
    best: Path
    last: Path
    epochs: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best_epoch(self) -> EpochStats | None:
        return max(self.epochs, key=lambda e: e.fitness, default=None)

    @property
    def seconds_per_epoch(self) -> float:
        return sum(e.seconds for e in self.epochs) / len(self.epochs) if self.epochs else 0.0

    def save(self, cfg: TrainConfig) -> Path:
        """Write train_summary.json (config, library versions, epochs, best metrics) into the run folder."""
        import torch
        import ultralytics

        payload = {"config": cfg.model_dump(), "ultralytics": ultralytics.__version__, "torch": torch.__version__,
                   **self.to_dict()}
        path = self.run_dir / SUMMARY_FILE
        path.write_text(json.dumps(payload, indent=2))
        return path

    def to_dict(self) -> dict[str, object]:
        best = self.best_epoch
        return {"run_dir": str(self.run_dir), "best_weights": str(self.best), "last_weights": str(self.last),
                "seconds": round(self.seconds, 3), "seconds_per_epoch": round(self.seconds_per_epoch, 3),
                "best": asdict(best) if best else None, "epochs": [asdict(e) for e in self.epochs]}


def _hms(seconds: float) -> str:
    s = max(int(seconds), 0)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


_METRIC_KEYS = {"metrics/precision(B)": "precision", "metrics/recall(B)": "recall",
                "metrics/mAP50(B)": "map50", "metrics/mAP50-95(B)": "map50_95"}


class _Progress:
    """Ultralytics callbacks → EpochStats (timed by us: train + validation), summary rewritten each epoch."""

    def __init__(self, cfg: TrainConfig, report: Callable[[EpochStats], None], earlier: list[EpochStats]) -> None:
        self.cfg = cfg
        self.report = report
        self.done = list(earlier)
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: Any) -> None:
        self._start = time.perf_counter()

    def on_fit_epoch_end(self, trainer: Any) -> None:
        epoch = int(trainer.epoch) + 1
        if epoch > trainer.epochs or any(e.epoch == epoch for e in self.done):
            return  # Ultralytics' final validation of best.pt fires this hook once more
        seconds = time.perf_counter() - self._start
        losses = {k: round(float(v), 5) for k, v in trainer.label_loss_items(trainer.tloss, prefix="train").items()}
        metrics = {ours: round(float(trainer.metrics.get(key, 0.0)), 5) for key, ours in _METRIC_KEYS.items()}
        mean = (sum(e.seconds for e in self.done) + seconds) / (len(self.done) + 1)
        stats = EpochStats(epoch, int(trainer.epochs), round(seconds, 3), losses, metrics,
                           round(float(trainer.fitness or 0.0), 5), round(mean * (trainer.epochs - epoch), 1))
        self.done.append(stats)
        self.result(0.0).save(self.cfg)  # an interrupted run keeps its epochs for --resume
        self.report(stats)

    def result(self, seconds: float) -> TrainResult:
        weights = self.cfg.run_dir / "weights"
        return TrainResult(self.cfg.run_dir, weights / "best.pt", weights / "last.pt", self.done, seconds)


def resolve_data_yaml(data: Path, out_dir: Path, taxonomy: Taxonomy | None = None) -> Path:
    """A copy of ``data`` (data.yaml, or a folder holding one) with ``path`` made absolute.

    Ultralytics takes a relative ``path:`` from the working directory, not from the YAML's folder.
    """
    src = data / "data.yaml" if data.is_dir() else data
    if not src.is_file():
        raise TrainError(f"dataset {data} not found; build one with `sortloop data build` and pass its data.yaml")
    spec = yaml.safe_load(src.read_text()) or {}
    if not isinstance(spec, dict) or "train" not in spec or "names" not in spec:
        raise TrainError(f"{src}: a YOLO data.yaml needs 'names', 'train' and 'val' keys")
    base = Path(str(spec.get("path") or "."))
    spec["path"] = str(base if base.is_absolute() else (src.parent / base).resolve())
    spec.setdefault("val", spec["train"])
    _refuse_shared(spec, src)
    names = spec["names"].values() if isinstance(spec["names"], dict) else spec["names"]
    unknown = [str(n) for n in names if taxonomy is not None and str(n) not in taxonomy]
    if unknown:
        raise TrainError(f"{src}: classes {unknown[:10]} are not in the taxonomy, so the model could not be "
                         f"exported for the station; build the dataset with `sortloop data build`")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "data.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def _refuse_shared(spec: dict[str, Any], src: Path) -> None:
    """Ultralytics writes labels.cache beside the labels: never let that be the read-only shared data."""
    values = [spec.get(k) for k in ("train", "val", "test")]
    entries = [e for v in values for e in (v if isinstance(v, list) else [v]) if isinstance(e, str)]
    for entry in entries:
        folder = (Path(spec["path"]) / entry).resolve()
        if folder.is_relative_to(SHARED.resolve()):
            raise TrainError(f"{src}: split folder {folder} lies in the shared data, where Ultralytics would write "
                             f"labels.cache; build a project dataset with `sortloop data build` and train on it")


def _amp_setting(cfg: TrainConfig) -> bool | str:
    """AMP without a download: Ultralytics' fp16 check loads yolo26n.pt from its weights dir (else fetches it)."""
    if cfg.device == "cpu" or not cfg.amp:
        return False
    import torch
    from ultralytics.utils import WEIGHTS_DIR

    if (WEIGHTS_DIR / "yolo26n.pt").is_file():
        return True
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        log.info("AMP: bf16 (the fp16 AMP check would download yolo26n.pt)")
        return "bf16"
    log.warning("AMP off: the fp16 AMP check would download yolo26n.pt and bf16 is not supported here")
    return False


def _train_args(cfg: TrainConfig, data_yaml: Path, plots: bool) -> dict[str, object]:
    knobs = ("epochs", "imgsz", "batch", "workers", "seed", "deterministic", "patience", "optimizer", "lr0",
             "cos_lr", "warmup_epochs", "mosaic", "close_mosaic", "mixup", "copy_paste", "hsv_h", "hsv_s", "hsv_v",
             "degrees", "scale", "fliplr", "flipud")
    args: dict[str, object] = {k: getattr(cfg, k) for k in knobs}
    if cfg.time_hours is not None:
        args["time"] = cfg.time_hours
    args.update(data=str(data_yaml), device=cfg.device, project=str(cfg.resolve(cfg.runs_dir)), name=cfg.name,
                exist_ok=True, plots=plots, amp=_amp_setting(cfg), verbose=False)
    return args


def _check_start(cfg: TrainConfig) -> Path:
    """The checkpoint to load: base weights for a new run, last.pt to resume."""
    last = cfg.run_dir / "weights" / "last.pt"
    if cfg.resume:
        if not last.is_file():
            raise TrainError(f"cannot resume: {last} not found; start the run without --resume")
        return last
    if last.exists():
        raise TrainError(f"run folder {cfg.run_dir} already holds a run; pass --resume to continue it or "
                         f"--name to start another")
    weights = cfg.resolve(cfg.base_weights)
    if not weights.is_file():
        raise TrainError(f"base weights {weights} not found; put the checkpoint there (see "
                         f"../shared/weights/README.md) or pass --base-weights PATH")
    return weights


def _earlier_epochs(cfg: TrainConfig) -> list[EpochStats]:
    """Epochs an interrupted run already recorded (for --resume)."""
    path = cfg.run_dir / SUMMARY_FILE
    if not (cfg.resume and path.is_file()):
        return []
    return [EpochStats(**e) for e in json.loads(path.read_text()).get("epochs", [])]


def train(cfg: TrainConfig, progress: Callable[[EpochStats], None] | None = None) -> TrainResult:
    """Fine-tune ``cfg.base_weights`` on ``cfg.data`` (or resume); one ``progress`` call per epoch."""
    start = _check_start(cfg)
    fonts = ultralytics_env()
    plots = cfg.plots and fonts
    if cfg.plots and not fonts:
        log.warning("plots off: no local font for Ultralytics (it would download Arial.ttf); install "
                    "fonts-dejavu-core to get plots")
    from ultralytics import YOLO

    hooks = _Progress(cfg, progress or (lambda s: log.info("%s", s.line())), _earlier_epochs(cfg))
    model = YOLO(str(start))
    model.add_callback("on_train_epoch_start", hooks.on_train_epoch_start)
    model.add_callback("on_fit_epoch_end", hooks.on_fit_epoch_end)
    t0 = time.perf_counter()
    if cfg.resume:
        model.train(resume=True, workers=cfg.workers, device=cfg.device, plots=plots)
    else:
        data_yaml = resolve_data_yaml(cfg.resolve(cfg.data), cfg.run_dir, load_taxonomy())
        model.train(**_train_args(cfg, data_yaml, plots))
    result = hooks.result(time.perf_counter() - t0)
    result.save(cfg)
    log.info("trained %s: %d epochs in %.1f s, best weights %s", cfg.name, len(result.epochs), result.seconds,
             result.best)
    return result
