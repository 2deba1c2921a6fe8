"""Would a second-stage crop classifier fused into the track vote decide streams better? An experiment.

The station decides an item from the detector's class scores summed over its track (about 40 looks at
the belt frame scaled to the model's input). A classifier run once per decision on the item's evidence crop
(cut from the full-resolution frame) sees it larger. This measures that idea before it is built into the
runtime, in three steps:

    .venv/bin/python bench/crop_classifier.py crops data/sortloop /tmp/cls/ds --renders 1200
    .venv/bin/python bench/crop_classifier.py train /tmp/cls/ds /tmp/cls/runs --epochs 12 --imgsz 128
    .venv/bin/python bench/crop_classifier.py fuse /tmp/cls/runs/crops/weights/best.pt --seeds 3,5,8

``crops``: every labelled box of a dataset build's train and val splits, padded as the station pads its
evidence crops, plus boxes of full-scale simulator renders (1280 × 720, seeds 77 and 78, not the simulator
seeds the station is scored on), into an Ultralytics classification folder. ``train``: a YOLO11n-cls from
the COCO detection checkpoint's backbone. ``fuse``: the headless station on simulator seeds with the
shipped detector; each decision is re-decided with the station's own rule (``DecisionLine``: hazard
doubt, minimum vote share) from the track's vote shares fused with the classifier's probabilities on the
decision's crop (arithmetic mean, geometric mean); it prints stream accuracy over matched decisions per
fusion and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from compare_models import simulated  # noqa: E402

from station.config import DecisionConfig  # noqa: E402
from station.decide import DecisionLine, _Track, padded_crop  # noqa: E402
from station.simulator import match_truth, render_dataset  # noqa: E402
from station.taxonomy import load_taxonomy  # noqa: E402

PAD = DecisionConfig().crop_padding
SIDE = 128
MIN_PX = 12
FUSIONS = ["track", "classifier", "mean", "geometric"]


def crop_boxes(images: Path, labels: Path, out: Path, names: list[str], tag: str) -> int:
    """Write each labelled box (padded like the station's evidence crops, long side ≤ SIDE) to out/<class>/."""
    import cv2

    n = 0
    for img_path in sorted(images.glob("*.jpg")):
        label = labels / f"{img_path.stem}.txt"
        rows = [r.split() for r in label.read_text().splitlines() if r.strip()] if label.is_file() else []
        if not rows:
            continue
        img: npt.NDArray[np.uint8] | None = cv2.imread(str(img_path))  # type: ignore[assignment]
        if img is None:
            raise SystemExit(f"image {img_path} cannot be read; rebuild the dataset")
        h, w = img.shape[:2]
        for i, r in enumerate(rows):
            c, x, y, bw, bh = int(r[0]), *(float(v) for v in r[1:5])
            bw, bh = bw * w, bh * h
            if max(bw, bh) < MIN_PX:
                continue
            crop = padded_crop(img, (x * w - bw / 2, y * h - bh / 2, x * w + bw / 2, y * h + bh / 2), PAD)
            if crop is None:
                continue
            s = SIDE / max(crop.shape[:2])
            size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
            small = crop if s >= 1 else cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            folder = out / names[c]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{tag}_{img_path.stem}_{i}.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, 90])
            n += 1
    return n


def make_crops(build: Path, out: Path, renders: int) -> dict[str, int]:
    names = load_taxonomy().names
    counts = {}
    for split in ("train", "val"):
        counts[f"build_{split}"] = crop_boxes(build / "images" / split, build / "labels" / split, out / split,
                                              names, "b")
    with tempfile.TemporaryDirectory(prefix="sortloop-crops-") as tmp:
        for split, n, seed in (("train", renders, 77), ("val", max(1, renders // 6), 78)):
            sim = Path(tmp) / split
            render_dataset(sim, n, seed=seed, width=1280, height=720)
            counts[f"renders_{split}"] = crop_boxes(sim / "images", sim / "labels", out / split, names, "s")
    return counts


def train(data: Path, project: Path, epochs: int, imgsz: int, base: Path) -> Path:
    from ultralytics import YOLO

    model = YOLO("yolo11n-cls.yaml").load(str(base))
    model.train(data=str(data), imgsz=imgsz, epochs=epochs, batch=64, workers=2, device="cpu", project=str(project),
                name="crops", plots=False, seed=0, exist_ok=True, amp=False)
    return project / "crops" / "weights" / "best.pt"


def station_decisions(seed: int, frames: int, model: Path) -> list[dict[str, Any]]:
    """The headless station's matched decisions on one simulator seed: votes, crop, truth."""
    with simulated(model, seed, frames) as (built, _):
        truth = built.station.source.sim.truth  # type: ignore[attr-defined]
        out = []
        for d in built.station.decisions:
            t = match_truth(truth, d)
            if t is not None and d.crop is not None:
                out.append({"votes": d.votes, "obs": d.observations, "crop": d.crop, "truth": t.stream.value,
                            "stream": d.stream.value})
        return out


def fuse(weights: Path, seeds: list[int], frames: int, model: Path, imgsz: int) -> dict[str, Any]:
    from ultralytics import YOLO

    tax = load_taxonomy()
    clf = YOLO(str(weights), task="classify")
    order = [list(clf.names.values()).index(n) for n in tax.names]
    line = DecisionLine(DecisionConfig(), tax, station_id="bench")
    result: dict[str, Any] = {}
    for seed in seeds:
        rows = station_decisions(seed, frames, model)
        preds: Any = clf.predict([row["crop"] for row in rows], imgsz=imgsz, verbose=False)
        probs = np.array([r.probs.data.cpu().numpy()[order] for r in preds])
        right = dict.fromkeys(FUSIONS, 0)
        for row, p in zip(rows, probs, strict=True):
            v = np.array([row["votes"].get(n, 0.0) for n in tax.names], np.float64)
            v /= max(v.sum(), 1e-9)
            fused = {"track": v, "classifier": p, "mean": (v + p) / 2, "geometric": np.sqrt((v + 1e-3) * (p + 1e-3))}
            for name, dist in fused.items():
                # the station's rule, on the fused shares weighted as many looks as the track had
                tr = _Track(0, dist / dist.sum() * row["obs"], observations=row["obs"])
                stream = line._classify(tr)[1]
                right[name] += stream.value == row["truth"]
        result[str(seed)] = {"decisions": len(rows), **{k: round(v / len(rows), 3) for k, v in right.items()}}
        print(f"seed {seed}: {len(rows)} decisions  " + "  ".join(f"{k} {result[str(seed)][k]:.3f}" for k in FUSIONS),
              flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    c = sub.add_parser("crops")
    c.add_argument("build", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--renders", type=int, default=1200)
    t = sub.add_parser("train")
    t.add_argument("data", type=Path)
    t.add_argument("project", type=Path)
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--imgsz", type=int, default=SIDE)
    t.add_argument("--base", type=Path, default=ROOT.parent / "shared" / "weights" / "yolo11n-coco.pt")
    f = sub.add_parser("fuse")
    f.add_argument("weights", type=Path)
    f.add_argument("--seeds", default="3,8")
    f.add_argument("--frames", type=int, default=9000)
    f.add_argument("--model", type=Path, default=ROOT / "models" / "sortloop-default.onnx")
    f.add_argument("--imgsz", type=int, default=SIDE)
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if a.step == "crops":
        print(json.dumps(make_crops(a.build, a.out, a.renders)))
    elif a.step == "train":
        print(json.dumps({"best": str(train(a.data, a.project, a.epochs, a.imgsz, a.base))}))
    else:
        print(json.dumps(fuse(a.weights, [int(s) for s in a.seeds.split(",")], a.frames, a.model, a.imgsz)))


if __name__ == "__main__":
    main()
