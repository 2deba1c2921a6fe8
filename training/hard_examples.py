"""Hard examples: the training photos that the station's detector + classifier pair decides wrong.

Hard-example mining for the real sources: every photo of a build's training lists of real photos goes through
the station's still-photo path (``station.still``, the same rule as the running station, the same tally as the
cross-source report). A photo is **hard** when the pair misses one of its items, sends one to the wrong stream,
flags a hazard on a photo that holds none, or misses a hazard. Only training lists are read: no validation or test
photo, so a model trained on the replay is still judged on photos it never saw.

``replay_data`` writes a training ``data.yaml`` whose training set is the build's plus a replay list: the hard
photos ``hard_times`` more times and the other photos of the named sources ``source_times`` more times (an
Ultralytics list of image paths may name a photo more than once; each copy is one more draw per epoch).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from station.taxonomy import Taxonomy
from training.evaluate import EvalError
from training.source_eval import SourceFigures, judge_photo

if TYPE_CHECKING:
    from station.detect import Detector
    from station.still import StillDecider

REAL_TRAIN_LISTS = ("train_trashnetpp", "train_ewaste-devices", "train_crop-photos")
"""The build's training lists of real photos (boxed photos and single-item crop photos)."""


@dataclass(frozen=True)
class HardPhoto:
    """One training photo the pair decides wrong, and why."""

    image: str
    source: str
    reasons: tuple[str, ...]


def faults(row: SourceFigures) -> tuple[str, ...]:
    """What is wrong with one photo's figures (empty: the pair decides it right)."""
    out = []
    if row.found < row.items:
        out.append("missed")
    if row.right < row.found:
        out.append("wrong stream")
    if row.clean_flagged:
        out.append("false hazard")
    if row.hazard_photos > row.hazard_flagged:
        out.append("missed hazard")
    return tuple(out)


def photo_sources(build: Path) -> dict[str, str]:
    """Image file name in the build → the real source it came from (by the manifest's record of each file)."""
    try:
        manifest = json.loads((build / "manifest.json").read_text())
        shared = Path(manifest["settings"]["shared_root"])
        roots = [(str(shared / s["path"]) + "/", s["name"]) for s in manifest["sources"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise EvalError(f"{build}/manifest.json cannot be read ({exc}); pass a folder made by `sortloop data build`"
                        ) from exc
    out = {}
    for f in manifest.get("files", []):
        name = Path(f["label"]).with_suffix("").name
        src = next((n for root, n in roots if str(f.get("image", "")).startswith(root)), None)
        if src is not None:
            out[name] = src
    return out


def training_lists(build: Path, names: Sequence[str] = REAL_TRAIN_LISTS) -> list[Path]:
    lists = [build / "lists" / f"{n}.txt" for n in names]
    missing = [str(p) for p in lists if not p.is_file()]
    if missing:
        raise EvalError(f"{', '.join(missing)} missing; name lists of {build}/lists (e.g. train_trashnetpp) or "
                        f"rebuild it with `sortloop data build`")
    return lists


def mine(build: Path, detector: Detector, decider: StillDecider, taxonomy: Taxonomy,
         lists: Sequence[Path]) -> tuple[list[HardPhoto], int]:
    """The hard photos of ``lists`` and how many photos were judged."""
    if any(p.stem.startswith(("val_", "test_")) for p in lists):
        raise EvalError("hard examples are mined from training lists only (lists/train_*.txt): a validation or "
                        "test photo replayed in training would no longer be held out")
    sources = photo_sources(build)
    names = list(taxonomy.names)
    hard, seen = [], 0
    for lst in lists:
        for line in lst.read_text().split():
            image = Path(line)
            row = SourceFigures(lst.stem)
            judge_photo(row, image, lst, detector, decider, taxonomy, names)
            seen += 1
            why = faults(row)
            if why:
                hard.append(HardPhoto(str(image), sources.get(image.stem, lst.stem.removeprefix("train_")), why))
    return hard, seen


def summary(hard: Sequence[HardPhoto], seen: int) -> dict[str, object]:
    by_source = Counter(h.source for h in hard)
    reasons = Counter(r for h in hard for r in h.reasons)
    return {"photos": seen, "hard": len(hard), "by_source": dict(sorted(by_source.items())),
            "reasons": dict(sorted(reasons.items()))}


def replay_data(build: Path, hard: Sequence[HardPhoto], out: Path, *, hard_times: int = 3,
                sources: Sequence[str] = (), source_times: int = 1, lists: Sequence[Path] = (),
                val: Path | None = None) -> Path:
    """Write ``out/replay.txt``, ``out/hard.json`` and ``out/data.yaml`` (the build's data with the replay added to
    its training set); return the data.yaml."""
    if hard_times < 0 or source_times < 0:
        raise EvalError("--hard-times and --source-times count extra copies: 0 or more")
    try:
        data = yaml.safe_load((build / "data.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EvalError(f"{build}/data.yaml cannot be read ({exc}); rebuild with `sortloop data build`") from exc
    out.mkdir(parents=True, exist_ok=True)
    hard_set = {h.image for h in hard}
    origin = photo_sources(build)
    unknown = sorted(set(sources) - set(origin.values()))
    if unknown:
        raise EvalError(f"no source named {', '.join(unknown)} in {build}; the build's sources: "
                        f"{', '.join(sorted(set(origin.values())))}")
    replay = [h.image for h in hard for _ in range(hard_times)]
    for lst in lists:
        for line in lst.read_text().split():
            if line not in hard_set and origin.get(Path(line).stem) in sources:
                replay += [line] * source_times
    (out / "replay.txt").write_text("".join(f"{p}\n" for p in replay))
    (out / "hard.json").write_text(json.dumps({"build": str(build), "hard_times": hard_times,
                                               "sources": list(sources), "source_times": source_times,
                                               "replayed": len(replay),
                                               "hard": [asdict(h) for h in hard]}, indent=1))
    root = Path(data["path"]) if Path(str(data.get("path", ""))).is_absolute() else build.resolve()
    data["path"] = str(root)
    data["train"] = [str(root / str(data["train"])), str((out / "replay.txt").resolve())]
    if val is not None:
        data["val"] = str(val.resolve())
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return out / "data.yaml"
