"""Dataset manifest: what a built dataset is made of, so a model card can name it and a rebuild can be
compared. ``digest()`` hashes everything except ``created_at``: the same inputs and seed give the same digest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SourceInfo:
    name: str
    path: str
    licence: str
    attribution: str
    kind: str = "boxes"
    changes: str = ""


@dataclass(frozen=True)
class FileEntry:
    """One label file of the dataset: its path (relative to the dataset), sha256, and the image it labels."""

    label: str
    sha256: str
    image: str


@dataclass
class Manifest:
    """What a built dataset holds and how it was made."""

    seed: int
    taxonomy_digest: str
    classes: list[str]
    sources: list[SourceInfo] = field(default_factory=list)
    class_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    """Source name → (source label, or per-file override path → taxonomy class or 'drop')."""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Split → class → boxes."""
    images: dict[str, dict[str, int]] = field(default_factory=dict)
    """Split → source → images."""
    synthetic_share: dict[str, float] = field(default_factory=dict)
    """Split → share of images that are synthetic (pasted scenes and simulator renders)."""
    refinement: dict[str, dict[str, int]] = field(default_factory=dict)
    """Coarse source label → fine class → boxes (teacher refinement)."""
    validation: dict[str, int] = field(default_factory=dict)
    """Problem kind → count over all real sources."""
    cutouts: dict[str, dict[str, int]] = field(default_factory=dict)
    """'accepted' / 'rejected' → class → count."""
    spare: dict[str, int] = field(default_factory=dict)
    """Source → images beyond ``--limit`` kept for evaluation only (``lists/spare_*.txt``)."""
    lists: dict[str, str] = field(default_factory=dict)
    """Per-source evaluation list name → path relative to the dataset."""
    settings: dict[str, Any] = field(default_factory=dict)
    files: list[FileEntry] = field(default_factory=list)
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    def save(self, path: Path) -> Path:
        path.write_text(self.to_json())
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        d = dict(d)
        d["sources"] = [SourceInfo(**s) for s in d.get("sources", [])]
        d["files"] = [FileEntry(**f) for f in d.get("files", [])]
        return cls(**d)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"manifest {path} cannot be read ({exc}); rebuild the dataset") from exc

    def digest(self) -> str:
        """sha256 (16 hex) of the manifest without ``created_at``."""
        d = self.to_dict()
        d.pop("created_at", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def table(self) -> str:
        splits = list(self.counts)
        lines = [f"{'class':<12}" + "".join(f"{s:>8}" for s in splits)]
        for c in self.classes:
            lines.append(f"{c:<12}" + "".join(f"{self.counts[s].get(c, 0):>8}" for s in splits))
        lines.append(f"{'images':<12}" + "".join(f"{sum(self.images.get(s, {}).values()):>8}" for s in splits))
        lines.append(f"{'synthetic':<12}" + "".join(f"{self.synthetic_share.get(s, 0):>8.0%}" for s in splits))
        if self.spare:
            lines.append(f"spare (evaluation only): {sum(self.spare.values())} images in lists/spare_*.txt")
        return "\n".join(lines)
