"""Candidate models side by side with the shipped one: held-out real photos and simulator seeds, in one run.

An adoption decision (models/sortloop-default.md) needs the same figures for every model: battery and phone
photos flagged as a hazard the way the station flags them, mAP50 on held-out photo lists, and the simulator's
scorecard on seeds chosen in advance. This runs them all with the station's own detector and pipeline and
prints one table, then one JSON line.

    .venv/bin/python bench/compare_models.py models/sortloop-default.onnx runs/default7/d7_last.onnx \
        --seeds 3,8 --frames 9000                     # with the station's crop classifier (model.classifier)
    .venv/bin/python bench/compare_models.py models/sortloop-default.onnx --classifier ''   # the track vote alone

Photo lists default to the held-out lists of the build in data/sortloop (`make default-model`); name others
with --lists (a .txt list of images, a YOLO folder or a data.yaml's test split). Keep the acceptance test's
seed (5) out of the seeds a model is chosen by: a model picked on it only fits the test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

from station.config import ModelConfig, StationConfig  # noqa: E402
from station.runtime import Built, build_station, scorecard  # noqa: E402
from training.evaluate import HazardRule, evaluate  # noqa: E402

DEFAULT_LISTS = ["test_battery_crops", "test_phone_crops", "test_crops", "test_trashnetpp", "test_ewaste-devices"]
SIM_FIGURES = ["stream_accuracy", "wrong_stream", "hazards_missed", "hazards_false", "missed", "doubled",
               "actuations_early", "actuations_late"]


def photo_figures(model: Path, data: Path, conf: float) -> dict[str, float | int | None]:
    """mAP50 and hazard items flagged by the station's rule (``HazardRule.of_station``) at ``conf``."""
    r = evaluate(model, data, conf=conf, hazard_rule=HazardRule.of_station())
    flagged = None if r.hazard_recall is None else round(r.hazard_recall * r.hazard_items)
    return {"images": r.images, "map50": round(r.map50, 3), "hazard_items": r.hazard_items,
            "hazards_flagged": flagged}


@contextmanager
def simulated(model: Path, seed: int, frames: int, classifier: Path | None = None) -> Iterator[tuple[Built, float]]:
    """The headless station run to the end of ``frames`` simulator frames (every frame processed, as the
    acceptance test runs it), its decisions kept, and its last frame's time; its store lives until the block
    ends. ``classifier``: the crop classifier's second look (none: the track vote alone)."""
    with tempfile.TemporaryDirectory(prefix="sortloop-sim-") as tmp:
        cfg = StationConfig.model_validate({
            "source": {"kind": "simulator", "realtime": False, "max_frames": frames},
            "simulator": {"seed": seed},
            "model": {"path": str(model), "watch_registry": False,
                      "classifier": None if classifier is None else str(classifier)},
            "store": {"url": f"sqlite:///{tmp}/station.db", "evidence_dir": f"{tmp}/evidence"},
        })
        built = build_station(cfg, keep_results=True, run_kind="bench")
        built.station.start()
        built.station.wait(3600)
        last = built.station.last_frame
        if last is None or last.index != frames - 1:
            raise SystemExit(f"error: {model} on seed {seed}: the station stopped before frame {frames - 1}; "
                             "see the log above")
        yield built, last.timestamp


def sim_figures(model: Path, seed: int, frames: int, classifier: Path | None = None) -> dict[str, float | int]:
    """The simulator's scorecard of the headless station on one seed."""
    with simulated(model, seed, frames, classifier) as (built, end):
        card = scorecard(built, end).to_dict()
    return {k: card[k] for k in SIM_FIGURES}


def _lists(arg: str | None) -> list[Path]:
    if arg:
        paths = [Path(p) for p in arg.split(",") if p]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise SystemExit(f"error: --lists: not found: {', '.join(missing)}")
        return paths
    found = [p for n in DEFAULT_LISTS if (p := ROOT / "data" / "sortloop" / "lists" / f"{n}.txt").exists()]
    if not found:
        print("no photo lists: data/sortloop has no build (make default-model builds it; or pass --lists)",
              file=sys.stderr)
    return found


def _cell(v: object) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="ONNX models; the first is the reference")
    ap.add_argument("--lists", help="comma-separated photo lists (default: data/sortloop/lists/test_*.txt)")
    ap.add_argument("--conf", type=float, default=0.1,
                    help="operating threshold for the photo figures (default 0.1: the station's hazard floor, "
                    "model.hazard_confidence, as the model card counts 'station rule' flags)")
    ap.add_argument("--seeds", default="3,8", help="simulator seeds, comma-separated ('' for none)")
    ap.add_argument("--frames", type=int, default=9000, help="frames per simulator run (the acceptance test: 9000)")
    ap.add_argument("--classifier", default=ModelConfig().classifier or "",
                    help="crop classifier (model.classifier) for every model's simulator runs, '' for none (the "
                    "track vote alone); the photo figures are the detector's alone (default: the station's)")
    args = ap.parse_args()
    args.classifier = Path(args.classifier) if args.classifier else None
    logging.getLogger("station").setLevel(logging.ERROR)  # the runs' hazard alarms are not this table's news
    missing = [str(m) for m in args.models if not m.is_file()]
    if missing:
        raise SystemExit(f"error: model not found: {', '.join(missing)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    lists = _lists(args.lists)

    results: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for m in args.models:
        t0 = time.perf_counter()
        res = results[str(m)] = {}
        for data in lists:
            res[f"photos:{data.stem}"] = photo_figures(m, data, args.conf)
        for seed in seeds:
            res[f"sim:{seed}"] = dict(sim_figures(m, seed, args.frames, args.classifier))
        print(f"{m}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    names = [m.name if len({x.name for x in args.models}) == len(args.models) else str(m) for m in args.models]
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    rows: list[tuple[str, str, str]] = []
    for data in lists:
        key = f"photos:{data.stem}"
        rows.append((f"{data.stem}: hazards flagged / items", key, "hazards_flagged"))
        rows.append((f"{data.stem}: mAP50", key, "map50"))
    for seed in seeds:
        rows += [(f"sim seed {seed}: {f}", f"sim:{seed}", f) for f in SIM_FIGURES]
    for label, key, fig in rows:
        cells = []
        for m in args.models:
            r = results[str(m)][key]
            v = r[fig]
            cells.append(f"{_cell(v)} / {r['hazard_items']}" if fig == "hazards_flagged" else _cell(v))
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(json.dumps({"conf": args.conf, "frames": args.frames, "seeds": seeds,
                      "classifier": None if args.classifier is None else str(args.classifier), "results": results}))


if __name__ == "__main__":
    main()
