"""Check labelled samples before they reach a dataset: count and list every problem, never crash, never drop
silently.

Problems: unreadable/corrupt image, empty image file, box partly outside the image (clipped), box fully
outside (dropped), degenerate box (dropped), unknown class (dropped), malformed label line (reported by the
reader), duplicate image content (later copies dropped). An empty label file is not an error (an image with
no objects) but is counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Container, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from training.formats import Box, Sample

log = logging.getLogger(__name__)

ProblemKind = Literal[
    "corrupt_image", "empty_image_file", "missing_image", "box_clipped", "box_outside", "degenerate_box",
    "unknown_class", "malformed_label", "duplicate_image",
]
MIN_BOX_PX = 1.0


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    image_path: str
    detail: str


@dataclass
class ValidationReport:
    """What validation found; ``samples`` are the cleaned samples (clipped boxes, bad ones removed)."""

    n_images: int = 0
    n_boxes: int = 0
    problems: list[Problem] = field(default_factory=list)
    notices: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list, repr=False)
    hashes: dict[str, str] = field(default_factory=dict, repr=False)
    """image path → sha256 of its bytes, for every readable image."""

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"n_images": self.n_images, "n_boxes": self.n_boxes, "n_clean_images": len(self.samples),
                "counts": self.counts, "notices": dict(sorted(self.notices.items())),
                "problems": [{"kind": p.kind, "image": p.image_path, "detail": p.detail} for p in self.problems]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    def table(self, max_rows: int = 20) -> str:
        lines = [f"images {self.n_images}  boxes {self.n_boxes}  clean images {len(self.samples)}",
                 f"{'problem':<20}{'count':>8}"]
        lines += [f"{k:<20}{v:>8}" for k, v in self.counts.items()]
        lines += [f"{k:<20}{v:>8}  (not an error)" for k, v in sorted(self.notices.items())]
        lines += [f"  {p.kind}: {p.image_path}: {p.detail}" for p in self.problems[:max_rows]]
        if len(self.problems) > max_rows:
            lines.append(f"  … {len(self.problems) - max_rows} more (see the JSON report)")
        return "\n".join(lines)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _decode_problem(path: Path) -> tuple[ProblemKind, str] | None:
    """Fully decode the image (at reduced scale for JPEG); a problem when that fails."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return "missing_image", "file not found"
    if path.stat().st_size == 0:
        return "empty_image_file", "0 bytes"
    try:
        with Image.open(path) as im:
            im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        return "corrupt_image", f"cannot decode: {exc}"
    return None


def _check_box(b: Box, w: int, h: int, known: Container[str]) -> tuple[Box | None, tuple[ProblemKind, str] | None]:
    """The box to keep (clipped) or None, and the problem found, if any."""
    x1, y1, x2, y2 = b.xyxy
    if b.class_name not in known:
        return None, ("unknown_class", f"class {b.class_name!r} not in the taxonomy")
    if x2 - x1 < MIN_BOX_PX or y2 - y1 < MIN_BOX_PX:
        return None, ("degenerate_box", f"{b.class_name} {_fmt(b.xyxy)} is under {MIN_BOX_PX} px wide or high")
    if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
        return None, ("box_outside", f"{b.class_name} {_fmt(b.xyxy)} lies outside the {w}x{h} image")
    c = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
    if c != b.xyxy:
        if c[2] - c[0] < MIN_BOX_PX or c[3] - c[1] < MIN_BOX_PX:
            return None, ("degenerate_box", f"{b.class_name} {_fmt(b.xyxy)} clipped to nothing")
        # sub-pixel overshoot from rounded normalised coordinates is noise, not a problem
        overshoot = max(abs(a - z) for a, z in zip(c, b.xyxy, strict=True))
        return Box(c, b.class_name), (("box_clipped", f"{b.class_name} {_fmt(b.xyxy)} clipped to {_fmt(c)}")
                                      if overshoot > 0.5 else None)
    return b, None


def _fmt(xyxy: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in xyxy) + ")"


def _notice(sample: Sample, report: ValidationReport) -> None:
    if sample.label_path is None:
        report.notices["no_label_file"] += 1
    elif sample.label_path.is_file() and not sample.label_path.read_text().strip():
        report.notices["empty_label_file"] += 1


def _validate_one(s: Sample, known: Container[str], report: ValidationReport,
                  seen: dict[str, str]) -> Sample | None:
    path = str(s.image_path)
    report.n_boxes += len(s.boxes)
    report.problems += [Problem("malformed_label", path, n) for n in s.notes]
    bad = _decode_problem(s.image_path)
    if bad is None and not (s.width > 0 and s.height > 0):
        bad = ("corrupt_image", "image size unknown")
    if bad is not None:
        report.problems.append(Problem(bad[0], path, bad[1]))
        return None
    digest = file_sha256(s.image_path)
    report.hashes[path] = digest
    if digest in seen:
        report.problems.append(Problem("duplicate_image", path, f"same content as {seen[digest]}"))
        return None
    seen[digest] = path
    _notice(s, report)
    kept = []
    for b in s.boxes:
        box, problem = _check_box(b, s.width, s.height, known)
        if problem is not None:
            report.problems.append(Problem(problem[0], path, problem[1]))
        elif box is not None and box.xyxy != b.xyxy:
            report.notices["box_clipped_subpixel"] += 1
        if box is not None:
            kept.append(box)
    return replace(s, boxes=kept, notes=[])


def validate(samples: Sequence[Sample], taxonomy: Container[str]) -> ValidationReport:
    """Check every sample against ``taxonomy`` (anything supporting ``name in taxonomy``)."""
    report = ValidationReport(n_images=len(samples))
    seen: dict[str, str] = {}
    for s in samples:
        clean = _validate_one(s, taxonomy, report, seen)
        if clean is not None:
            report.samples.append(clean)
    if report.problems:
        log.info("validation: %d problems in %d images: %s", len(report.problems), len(samples), report.counts)
    return report
