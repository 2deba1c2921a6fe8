"""Model registry: versioned ONNX models with card and evaluation, a promotion gate and an audit trail.

Layout under ``root`` (default ``models/registry``)::

    <version>/model.onnx  card.md  eval.json
    current.json          the promoted model; replaced atomically, the station watches it and hot-swaps
    audit.jsonl           append-only: who, when, action, version, metrics, outcome, reasons

The gate puts hazard recall first: a candidate that finds fewer batteries than the current model is refused
whatever its mAP.

Crop classifiers (the station's second look) have a registry of their own under ``<root>/classifiers``
(``ClassifierRegistry``), the same layout, evaluated by the cross-source report of the pair they form with the
station's detector on real held-out photos (``training.source_eval``), and their own gate (``judge_pair``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from station.config import CLASSIFIERS
from training.evaluate import EvalReport
from training.source_eval import SourceReport
from training.validate import file_sha256

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = ROOT / "models" / "registry"
POINTER = "current.json"
AUDIT = "audit.jsonl"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_EPS = 1e-9


class RegistryError(ValueError):
    """The registry cannot do what was asked; the message names the version or file and the fix."""


class GateConfig(BaseModel):
    """Promotion gate (the ``gate:`` section of configs/training.yaml)."""

    model_config = ConfigDict(extra="forbid")

    min_hazard_recall: float = Field(0.9, ge=0, le=1, description="Least item-level battery-hazard recall a "
                                     "model must reach at the station's operating threshold to be promoted.")
    map_tolerance: float = Field(0.01, ge=0, le=1, description="Largest mAP50-95 drop against the current "
                                 "model (same validation data) a candidate may show and still be promoted.")
    false_hazard_tolerance: float = Field(0.01, ge=0, le=1, description="Crop classifiers: largest rise of the "
                                          "false-hazard rate (photos without a hazard flagged) on any real held-out "
                                          "list against the current classifier.")
    stream_tolerance: float = Field(0.01, ge=0, le=1, description="Crop classifiers: largest drop of right-stream "
                                    "items over all real held-out lists together against the current classifier.")


class Report(Protocol):
    """What the registry keeps of an evaluation: a detector's ``EvalReport`` or a pair's ``SourceReport``."""

    created: str
    data_digest: str

    def to_json(self) -> str: ...

    def save(self, path: Path) -> Path: ...

    @classmethod
    def load(cls, path: Path) -> Self: ...


R = TypeVar("R", bound=Report)


@dataclass(frozen=True)
class ModelVersion(Generic[R]):
    """One registered model."""

    version: str
    folder: Path
    report: R

    @property
    def model(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def card(self) -> Path:
        return self.folder / "card.md"


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on a candidate, with the numbers it compared."""

    version: str
    accepted: bool
    reasons: list[str]
    current: str | None
    candidate_metrics: dict[str, float | None]
    current_metrics: dict[str, float | None] | None


class GateRefused(RegistryError):
    """The promotion gate refused the candidate; ``decision.reasons`` says why."""

    def __init__(self, decision: GateDecision) -> None:
        self.decision = decision
        super().__init__(f"promotion of {decision.version} refused: " + "; ".join(decision.reasons))


@dataclass(frozen=True)
class AuditEntry:
    """One line of audit.jsonl."""

    at: str
    by: str
    action: str
    """add, promote, rollback or record_eval"""
    version: str
    outcome: str
    """ok, accepted or refused"""
    reasons: list[str]
    metrics: dict[str, float | None]
    data_digest: str


@dataclass(frozen=True)
class Pointer:
    """Contents of current.json: the promoted version and the versions promoted before it (oldest first)."""

    version: str
    path: str
    """Model file relative to the registry root (what the station's watcher loads)."""
    promoted_at: str
    by: str
    history: list[str] = field(default_factory=list)


def gate_metrics(report: EvalReport) -> dict[str, float | None]:
    return {"hazard_recall": report.hazard_recall, "hazard_precision": report.hazard_precision,
            "map50": report.map50, "map50_95": report.map50_95}


def _floor(recall: float | None, gate: GateConfig, why_unknown: str, fix: str) -> list[str]:
    """The gate's first reason, shared by both kinds: hazard recall unknown or under ``min_hazard_recall``."""
    if recall is None:
        return [f"{why_unknown}, so hazard recall is unknown; {fix}"]
    if recall < gate.min_hazard_recall - _EPS:
        return [f"hazard recall {recall:.3f} is below the minimum {gate.min_hazard_recall:.3f}"]
    return []


def judge(candidate: EvalReport, current: EvalReport | None, gate: GateConfig) -> list[str]:
    """Reasons to refuse ``candidate`` against ``current`` (empty: promote). Hazard recall comes first."""
    recall = candidate.hazard_recall
    reasons = _floor(recall, gate, "its evaluation data holds no battery-hazard items", "evaluate on data with "
                     "batteries")
    if current is None:
        return reasons
    if current.data_digest != candidate.data_digest:
        reasons.append(f"evaluated on other data than the current model ({candidate.data_digest} vs "
                       f"{current.data_digest}); evaluate both on the same validation set")
        return reasons
    if current.operating_point != candidate.operating_point:
        reasons.append(f"evaluated at another operating point than the current model (conf, IoU, hazard floor, "
                       f"hazard doubt {candidate.operating_point} vs {current.operating_point}); evaluate both "
                       f"the same way")
        return reasons
    if recall is not None and current.hazard_recall is not None and recall < current.hazard_recall - _EPS:
        reasons.append(f"hazard recall {recall:.3f} is lower than the current model's "
                       f"{current.hazard_recall:.3f}")
    drop = current.map50_95 - candidate.map50_95
    if drop > gate.map_tolerance + _EPS:
        reasons.append(f"mAP50-95 {candidate.map50_95:.4f} is {drop:.4f} below the current model's "
                       f"{current.map50_95:.4f} (tolerance {gate.map_tolerance:.4f})")
    return reasons


def pair_metrics(report: SourceReport) -> dict[str, float | None]:
    """The classifier gate's figures: over every real list together."""
    t = report.totals().summary()
    return {k: t[k] for k in ("hazard_recall", "false_hazard", "right_stream", "textile_found")}  # type: ignore[misc]


def judge_pair(candidate: SourceReport, current: SourceReport | None, gate: GateConfig) -> list[str]:
    """Reasons to refuse a crop classifier whose pair report is ``candidate`` against the current classifier's
    (empty: promote). Hazard recall first: fewer hazard photos flagged on any list refuses it, whatever it gains."""
    total = candidate.totals()
    reasons = _floor(total.rate(total.hazard_flagged, total.hazard_photos), gate,
                     "its evaluation lists hold no photo with a battery-hazard item", "evaluate on a build with "
                     "batteries")
    if current is None:
        return reasons
    for what, a, b in (("lists", candidate.data_digest, current.data_digest),
                       ("station thresholds", candidate.operating_point, current.operating_point),
                       ("detector", candidate.model, current.model)):
        if a != b:
            reasons.append(f"evaluated with other {what} than the current classifier ({a} vs {b}); evaluate both "
                           f"the same way (`sortloop eval --by-source` with the same build and detector)")
            return reasons
    for row in candidate.rows:
        old = current.row(row.source)
        if old is None:
            continue
        if row.hazard_flagged < old.hazard_flagged:
            reasons.append(f"{row.source}: {row.hazard_flagged} of {row.hazard_photos} hazard photos flagged, the "
                           f"current classifier flags {old.hazard_flagged}")
        new_fh, old_fh = row.rate(row.clean_flagged, row.clean_photos), old.rate(old.clean_flagged, old.clean_photos)
        if new_fh is not None and old_fh is not None and new_fh > old_fh + gate.false_hazard_tolerance + _EPS:
            reasons.append(f"{row.source}: false hazard {new_fh:.3f} against the current classifier's {old_fh:.3f} "
                           f"(tolerance {gate.false_hazard_tolerance:.3f})")
    old_total = current.totals()
    new_rs, old_rs = total.rate(total.right, total.items), old_total.rate(old_total.right, old_total.items)
    if new_rs is not None and old_rs is not None and new_rs < old_rs - gate.stream_tolerance - _EPS:
        reasons.append(f"right stream {new_rs:.3f} over all lists against the current classifier's {old_rs:.3f} "
                       f"(tolerance {gate.stream_tolerance:.3f})")
    return reasons


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees the old or the new file, never a partial one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def onnx_version(onnx_path: Path) -> str | None:
    """The ``sortloop_version`` metadata of an ONNX file, if any."""
    return onnx_metadata(onnx_path).get("sortloop_version")


class BaseRegistry(Generic[R]):
    """Versioned models under ``root`` with a promoted pointer and an audit trail; ``Registry`` for detectors,
    ``ClassifierRegistry`` for the crop classifiers."""

    kind: ClassVar[str]
    report_type: ClassVar[Any]

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _judge(self, candidate: R, current: R | None, gate: GateConfig) -> list[str]:
        raise NotImplementedError

    def metrics(self, report: R) -> dict[str, float | None]:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ reading

    def get(self, version: str) -> ModelVersion[R]:
        folder = self.root / version
        eval_file = folder / "eval.json"
        if not eval_file.is_file():
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise RegistryError(f"{self.kind} version {version!r} is not in {self.root} (known: {known}); "
                                f"add it with {self._how_to_add()}")
        return ModelVersion(version, folder, self.report_type.load(eval_file))

    def _how_to_add(self) -> str:
        return "`sortloop eval --model M --data D --register`"

    def versions(self) -> list[ModelVersion[R]]:
        """Registered versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = [self.get(d.name) for d in self.root.iterdir() if (d / "eval.json").is_file()]
        return sorted(found, key=lambda v: (v.report.created, v.version))

    def pointer(self) -> Pointer | None:
        path = self.root / POINTER
        if not path.is_file():
            return None
        try:
            return Pointer(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise RegistryError(f"{path} is corrupt ({exc}); restore it from {self.root / AUDIT} or delete "
                                f"it and promote again") from exc

    def current(self) -> ModelVersion[R] | None:
        ptr = self.pointer()
        return None if ptr is None else self.get(ptr.version)

    def audit(self) -> list[AuditEntry]:
        path = self.root / AUDIT
        if not path.is_file():
            return []
        return [AuditEntry(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]

    # ------------------------------------------------------------------------------------------ writing

    def add(self, onnx_path: Path, card_md: str, report: R, *, version: str | None = None,
            by: str = "unknown") -> ModelVersion[R]:
        """Copy a model with its card and evaluation into ``root/<version>/``."""
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise RegistryError(f"model file {onnx_path} not found; export one with `sortloop export`")
        inside = onnx_version(onnx_path)
        if version and inside and version != inside:
            raise RegistryError(f"version {version!r} differs from the model's sortloop_version {inside!r}; omit "
                                f"the version or re-export with --version {version}")
        name = version or inside or datetime.now(UTC).strftime("v%Y%m%d-%H%M%S")
        if not _VERSION_RE.match(name):
            raise RegistryError(f"version {name!r} is not a valid folder name; use letters, digits, . _ + -")
        folder = self.root / name
        if folder.exists():
            raise RegistryError(f"version {name!r} is already registered at {folder}; export with another "
                                f"--version")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        shutil.copyfile(onnx_path, tmp / "model.onnx")
        (tmp / "card.md").write_text(card_md)
        report.save(tmp / "eval.json")
        os.replace(tmp, folder)
        self._log(by, "add", name, report, "ok", [])
        return ModelVersion(name, folder, report)

    def promote(self, version: str, gate: GateConfig, by: str) -> GateDecision:
        """Point current.json at ``version`` if the gate lets it; raises GateRefused with the reasons."""
        candidate = self.get(version)
        current = self.current()
        if current is not None and current.version == version:
            raise RegistryError(f"version {version!r} is already the current {self.kind}")
        reasons = self._judge(candidate.report, current.report if current else None, gate)
        decision = GateDecision(version, not reasons, reasons, current.version if current else None,
                                self.metrics(candidate.report), self.metrics(current.report) if current else None)
        self._log(by, "promote", version, candidate.report, "accepted" if decision.accepted else "refused",
                  reasons)
        if not decision.accepted:
            raise GateRefused(decision)
        ptr = self.pointer()
        history = [*ptr.history, ptr.version] if ptr else []
        self._point(Pointer(version, f"{version}/model.onnx", _now(), by, history))
        log.info("promoted %s (was %s) by %s", version, decision.current, by)
        return decision

    def adopt(self, onnx_path: Path, card_md: str, report: R, *, weights: Path | None = None,
              by: str = "unknown") -> ModelVersion[R]:
        """Make the model a station runs while the registry has no current version (the shipped default) the
        current one, without the gate: it is what runs already, the baseline the first candidate is judged
        against. Its checkpoint, when given, is kept as ``model.pt`` for fine-tuning. A version of the same
        name already registered is reused when it holds the same file."""
        if (current := self.current()) is not None:
            raise RegistryError(f"{self.root} already has a current model ({current.version}); a new model "
                                f"goes through `sortloop promote` and its gate")
        onnx_path = Path(onnx_path)
        name = onnx_version(onnx_path)
        folder = self.root / name if name else None
        if folder is not None and (folder / "eval.json").is_file():
            if file_sha256(folder / "model.onnx") != file_sha256(onnx_path):
                raise RegistryError(f"version {name!r} is registered at {folder} with another model file than "
                                    f"{onnx_path}; re-export one of them with another --version")
            mv = self.record_eval(folder.name, report, by=by)
        else:
            mv = self.add(onnx_path, card_md, report, by=by)
        if weights is not None:
            shutil.copyfile(weights, mv.folder / "model.pt")
        self._point(Pointer(mv.version, f"{mv.version}/model.onnx", _now(), by, []))
        self._log(by, "adopt", mv.version, report, "ok", [f"the station's model {onnx_path.name}, run before any "
                                                          "promotion"])
        log.info("adopted %s (%s) as the current model by %s", mv.version, onnx_path, by)
        return mv

    def rollback(self, by: str) -> ModelVersion[R]:
        """Point current.json back at the version promoted before the current one (no gate)."""
        ptr = self.pointer()
        if ptr is None or not ptr.history:
            raise RegistryError(f"nothing to roll back to in {self.root}: no model was promoted before "
                                f"{ptr.version if ptr else 'the (absent) current one'}")
        target = self.get(ptr.history[-1])
        self._point(Pointer(target.version, f"{target.version}/model.onnx", _now(), by, ptr.history[:-1]))
        self._log(by, "rollback", target.version, target.report, "ok", [f"from {ptr.version}"])
        log.info("rolled back from %s to %s by %s", ptr.version, target.version, by)
        return target

    def record_eval(self, version: str, report: R, by: str) -> ModelVersion[R]:
        """Replace a version's eval.json (e.g. after a new validation set); audited."""
        mv = self.get(version)
        atomic_write(mv.folder / "eval.json", report.to_json())
        self._log(by, "record_eval", version, report, "ok", [])
        return ModelVersion(version, mv.folder, report)

    def _point(self, ptr: Pointer) -> None:
        atomic_write(self.root / POINTER, json.dumps(asdict(ptr), indent=2))

    def _log(self, by: str, action: str, version: str, report: R, outcome: str, reasons: list[str]) -> None:
        entry = AuditEntry(_now(), by, action, version, outcome, reasons, self.metrics(report), report.data_digest)
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / AUDIT).open("a") as f:
            f.write(json.dumps(asdict(entry)) + "\n")
            f.flush()
            os.fsync(f.fileno())


class Registry(BaseRegistry[EvalReport]):
    """Detector versions: evaluated by ``training.evaluate`` on a validation set, gated by ``judge``."""

    kind = "model"
    report_type = EvalReport

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        super().__init__(root)

    def _judge(self, candidate: EvalReport, current: EvalReport | None, gate: GateConfig) -> list[str]:
        return judge(candidate, current, gate)

    def metrics(self, report: EvalReport) -> dict[str, float | None]:
        return gate_metrics(report)


class ClassifierRegistry(BaseRegistry[SourceReport]):
    """Crop classifier versions under ``<registry>/classifiers``: evaluated by the cross-source report of the pair
    they form with the station's detector, gated by ``judge_pair``; the station watches this pointer too."""

    kind = "classifier"
    report_type = SourceReport

    def __init__(self, root: Path = DEFAULT_ROOT / CLASSIFIERS) -> None:
        super().__init__(root)

    @classmethod
    def beside(cls, detectors: Path) -> ClassifierRegistry:
        """The classifier registry of a detector registry folder."""
        return cls(Path(detectors) / CLASSIFIERS)

    def _judge(self, candidate: SourceReport, current: SourceReport | None, gate: GateConfig) -> list[str]:
        return judge_pair(candidate, current, gate)

    def metrics(self, report: SourceReport) -> dict[str, float | None]:
        return pair_metrics(report)

    def _how_to_add(self) -> str:
        return "`sortloop eval --by-source --model M --data BUILD --classifier C --register`"


def classifier_card(onnx_path: Path, report: SourceReport) -> str:
    """Markdown card of a crop classifier version: its ONNX metadata and the pair's cross-source report."""
    meta = onnx_metadata(onnx_path)
    version = meta.get("sortloop_version", onnx_path.stem)
    return "\n".join([f"# Crop classifier: {version}", "",
                      f"- created: {meta.get('sortloop_created', 'unknown')}",
                      f"- taxonomy digest: {meta.get('sortloop_taxonomy', 'unknown')}",
                      f"- input size: {meta.get('imgsz', 'unknown')}",
                      f"- training metrics: {meta.get('sortloop_metrics', '{}')}",
                      f"- base: Ultralytics YOLO classification ({meta.get('version', '?')}), AGPL-3.0", "",
                      "## Cross-source report (real held-out photos, with the station's detector)", "",
                      report.to_markdown()])


def onnx_metadata(onnx_path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _manifest_lines(manifest_path: Path | None) -> list[str]:
    from training.manifest import Manifest

    if manifest_path is None or not manifest_path.is_file():
        return ["No dataset manifest was given: name the training data and its licences here."]
    m = Manifest.load(manifest_path)
    lines = [f"Dataset manifest `{m.digest()}` (seed {m.seed}).", "", "| source | licence | attribution | changes |",
             "|---|---|---|---|"]
    lines += [f"| {s.name} | {s.licence} | {s.attribution} | {s.changes} |" for s in m.sources]
    share = ", ".join(f"{split} {v:.0%}" for split, v in m.synthetic_share.items())
    lines += ["", f"Synthetic share of images (pasted scenes, simulator renders): {share or 'n/a'}."]
    return lines


def model_card(model: Path, report: EvalReport, *, manifest: Path | None = None) -> str:
    """Markdown model card: provenance (ONNX metadata, dataset manifest) and the evaluation summary."""
    meta = onnx_metadata(model)
    version = meta.get("sortloop_version", model.stem)
    lines = [f"# Model card: {version}", "",
             f"- created: {meta.get('sortloop_created', 'unknown')}",
             f"- taxonomy digest: {meta.get('sortloop_taxonomy', 'unknown')}",
             f"- input size: {meta.get('imgsz', 'unknown')}, classes: {meta.get('names', 'unknown')}",
             f"- training metrics: {meta.get('sortloop_metrics', '{}')}",
             f"- base: Ultralytics YOLO ({meta.get('version', '?')}), AGPL-3.0", "", "## Training data", ""]
    lines += _manifest_lines(manifest)
    lines += ["", "## Evaluation", "", report.to_markdown().split("\n", 1)[1]]
    return "\n".join(lines)
