"""The crop classifier (the station's second look, ``model.classifier``): its crops, training, export, and
whether fusing it into the track vote decides streams better.

The station decides an item from the detector's class scores summed over its track (about 40 looks at
the belt frame scaled to the model's input). A classifier run once per decision on the item's evidence crop
(cut from the full-resolution frame) sees it larger. Four steps:

    .venv/bin/python bench/crop_classifier.py crops data/sortloop /tmp/cls/ds --renders 1200
    .venv/bin/python bench/crop_classifier.py train /tmp/cls/ds /tmp/cls/runs --epochs 12 --imgsz 128
    .venv/bin/python bench/crop_classifier.py export /tmp/cls/runs/crops/weights/best.pt \
        models/sortloop-crops.onnx --version sortloop-crops-1 --check /tmp/cls/ds/val
    .venv/bin/python bench/crop_classifier.py fuse models/sortloop-crops.onnx --seeds 3,8
    .venv/bin/python bench/crop_classifier.py speed models/sortloop-crops.onnx /tmp/cls/ds/val
    .venv/bin/python bench/crop_classifier.py replay /tmp/cls/ds work/hard1/hard.json /tmp/cls/ds-hard --times 3

``crops``: every labelled box of a dataset build's train and val splits, padded as the station pads its
evidence crops, plus boxes of full-scale simulator renders (1280 × 720, seeds 77 and 78, not the simulator
seeds the station is scored on), into an Ultralytics classification folder. ``train``: a YOLO11n-cls from
the COCO detection checkpoint's backbone. ``export``: ONNX at the trained size with our
metadata (version, taxonomy digest, validation top-1), checked against the checkpoint on the validation
crops (Ultralytics' predict against the station's ``CropClassifier``). ``fuse``: the headless station (track
vote alone) on simulator seeds with the shipped detector; each decision is re-decided with the station's own
rule (``DecisionLine.classify``: hazard doubt, minimum vote share) from the track's vote shares, the
classifier's probabilities on the decision's crop, their arithmetic mean and their geometric mean (the
station's ``fuse_second_look``); it prints stream accuracy over matched decisions per fusion and one JSON
line. A ``.onnx`` classifier runs through the station's ``CropClassifier``, a ``.pt`` through Ultralytics.
The station's own scorecard with the classifier in place: ``bench/compare_models.py --classifier``.
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

from station.classify import CropClassifier  # noqa: E402
from station.config import DecisionConfig  # noqa: E402
from station.decide import DecisionLine, fuse_second_look, padded_crop  # noqa: E402
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


def replay_crops(ds: Path, hard_json: Path, out: Path, times: int) -> dict[str, int]:
    """A classification folder ``out`` that is ``ds`` (links) plus ``times`` more links to every crop cut from a
    hard photo of ``hard_json`` (``sortloop data hard-examples``); its ``val`` is ``ds/val``."""
    stems = {Path(h["image"]).stem for h in json.loads(hard_json.read_text())["hard"]}
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "val").exists():
        (out / "val").symlink_to((ds / "val").resolve())
    counts = {"crops": 0, "hard_crops": 0, "links": 0}
    for folder in sorted(p for p in (ds / "train").iterdir() if p.is_dir()):
        dest = out / "train" / folder.name
        dest.mkdir(parents=True, exist_ok=True)
        for crop in sorted(folder.glob("*.jpg")):
            names = [crop.name]
            if crop.stem.startswith("b_") and crop.stem[2:].rsplit("_", 1)[0] in stems:
                names += [f"h{k}_{crop.name}" for k in range(1, times + 1)]
                counts["hard_crops"] += 1
            counts["crops"] += 1
            for name in names:
                if not (dest / name).exists():
                    (dest / name).symlink_to(crop.resolve())
                counts["links"] += 1
    return counts


def train(data: Path, project: Path, epochs: int, imgsz: int, base: Path, hours: float | None = None,
          optimizer: str = "SGD", lr0: float = 0.01) -> Path:
    """A YOLO11n-cls from the detection checkpoint's backbone; ``hours``: a wall-clock budget instead of
    ``epochs`` (Ultralytics fits the epoch count and its learning-rate schedule to it).

    The optimizer is named: Ultralytics' ``auto`` picks MuSGD above 10,000 iterations, whose Newton-Schulz
    step runs in bfloat16 and on this project's 2 CPU cores costs about 20 s per step against 0.4 s for the
    forward and backward pass of a batch of 64 (measured 2026-12-05)."""
    from ultralytics import YOLO

    model = YOLO("yolo11n-cls.yaml").load(str(base))
    model.train(data=str(data), imgsz=imgsz, epochs=epochs, batch=64, workers=2, device="cpu",
                project=str(project.resolve()), name="crops", plots=False, seed=0, exist_ok=True, amp=False,
                optimizer=optimizer, lr0=lr0, cos_lr=True, **({"time": hours} if hours else {}))
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


def read_crops(folder: Path, n: int | None = None) -> tuple[list[Path], list[npt.NDArray[np.uint8]]]:
    """The first ``n`` (all) crops of a folder of class folders, sorted, with their files."""
    import cv2

    files = sorted(folder.glob("*/*.jpg"))[:n]
    return files, [np.asarray(cv2.imread(str(f)), np.uint8) for f in files]


def classifier_probs(weights: Path, crops: list[npt.NDArray[np.uint8]], imgsz: int) -> npt.NDArray[np.float64]:
    """Class probabilities in taxonomy order: the station's CropClassifier for .onnx, Ultralytics for .pt."""
    tax = load_taxonomy()
    if weights.suffix == ".onnx":
        clf = CropClassifier(weights, taxonomy=tax)
        return np.array([clf(c) for c in crops])
    from ultralytics import YOLO

    model = YOLO(str(weights), task="classify")
    order = [list(model.names.values()).index(n) for n in tax.names]
    preds: Any = model.predict(crops, imgsz=imgsz, verbose=False)
    return np.array([r.probs.data.cpu().numpy()[order] for r in preds], np.float64)


def fuse(weights: Path, seeds: list[int], frames: int, model: Path, imgsz: int) -> dict[str, Any]:
    tax = load_taxonomy()
    line = DecisionLine(DecisionConfig(), tax, station_id="bench")
    result: dict[str, Any] = {}
    for seed in seeds:
        rows = station_decisions(seed, frames, model)
        probs = classifier_probs(weights, [row["crop"] for row in rows], imgsz)
        right = dict.fromkeys(FUSIONS, 0)
        for row, p in zip(rows, probs, strict=True):
            v = np.array([row["votes"].get(n, 0.0) for n in tax.names], np.float64)
            v /= max(v.sum(), 1e-9)
            fused = {"track": v, "classifier": p, "mean": (v + p) / 2, "geometric": fuse_second_look(v, p)}
            for name, dist in fused.items():
                # the station's rule, on the fused shares weighted as many looks as the track had
                stream = line.classify(dist / dist.sum() * row["obs"], row["obs"]).stream
                right[name] += stream.value == row["truth"]
        result[str(seed)] = {"decisions": len(rows), **{k: round(v / len(rows), 3) for k, v in right.items()}}
        print(f"seed {seed}: {len(rows)} decisions  " + "  ".join(f"{k} {result[str(seed)][k]:.3f}" for k in FUSIONS),
              flush=True)
    return result


def export(weights: Path, out: Path, version: str, check: Path | None) -> dict[str, Any]:
    """``weights`` → ONNX at its trained size with our metadata; with ``check`` (a folder of class folders of
    crops), top-1 of the export through the station's CropClassifier and its agreement with the checkpoint."""
    import shutil

    from ultralytics import YOLO

    from training.export import META_PREFIX, write_metadata

    tax = load_taxonomy()
    model = YOLO(str(weights), task="classify")
    names = list(model.names.values())
    if sorted(names) != sorted(tax.names):
        raise SystemExit(f"error: {weights} classes {names} are not the taxonomy's; train on `crops` output")
    args = model.ckpt.get("train_args", {}) if isinstance(model.ckpt, dict) else {}
    imgsz = int(args.get("imgsz") or SIDE)
    top1 = None
    metrics = model.ckpt.get("train_metrics", {}) if isinstance(model.ckpt, dict) else {}
    if isinstance(metrics, dict) and "metrics/accuracy_top1" in metrics:
        top1 = round(float(metrics["metrics/accuracy_top1"]), 4)
    with tempfile.TemporaryDirectory(prefix="sortloop-cls-export-") as tmp:
        local = Path(tmp) / "model.pt"
        shutil.copyfile(weights, local)
        exported = Path(YOLO(str(local), task="classify").export(format="onnx", imgsz=imgsz, dynamic=False,
                                                                 simplify=True, device="cpu", verbose=False))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, out)
    from datetime import UTC, datetime

    write_metadata(out, {f"{META_PREFIX}{k}": v for k, v in {
        "version": version, "taxonomy": tax.digest, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": json.dumps({"val_top1": top1}), "train_imgsz": str(imgsz)}.items()})
    result: dict[str, Any] = {"onnx": str(out), "version": version, "imgsz": imgsz, "val_top1_checkpoint": top1}
    if check is not None:
        files, crops = read_crops(check)
        truth = np.array([tax.index(f.parent.name) for f in files])
        onnx_p = classifier_probs(out, crops, imgsz)
        pt_p = classifier_probs(weights, crops, imgsz)
        result |= {"check_crops": len(files),
                   "top1_onnx_station": round(float((onnx_p.argmax(1) == truth).mean()), 4),
                   "top1_checkpoint_ultralytics": round(float((pt_p.argmax(1) == truth).mean()), 4),
                   "top1_agreement": round(float((onnx_p.argmax(1) == pt_p.argmax(1)).mean()), 4),
                   "max_prob_diff_p99": round(float(np.quantile(np.abs(onnx_p - pt_p).max(1), 0.99)), 4)}
    return result


def speed(weights: Path, crops: Path, n: int) -> dict[str, Any]:
    """Milliseconds per crop through the station's CropClassifier on one thread, as the station runs it (one
    crop per decision): median and 99th percentile over ``n`` crops of a crops folder."""
    import time

    clf = CropClassifier(weights, taxonomy=load_taxonomy(), threads=1)
    clf.warm_up()
    _, images = read_crops(crops, n)
    ms = []
    for image in images:
        t0 = time.perf_counter()
        clf(image)
        ms.append((time.perf_counter() - t0) * 1000)
    return {"crops": len(ms), "p50_ms": round(float(np.median(ms)), 2),
            "p99_ms": round(float(np.quantile(ms, 0.99)), 2)}


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
    t.add_argument("--time-hours", type=float, default=None, help="wall-clock budget instead of --epochs")
    t.add_argument("--imgsz", type=int, default=SIDE)
    t.add_argument("--optimizer", default="SGD", help="an Ultralytics optimizer name (auto picks MuSGD: slow on CPU)")
    t.add_argument("--lr0", type=float, default=0.01)
    t.add_argument("--base", type=Path, default=ROOT.parent / "shared" / "weights" / "yolo11n-coco.pt")
    r = sub.add_parser("replay")
    r.add_argument("ds", type=Path, help="a crops folder (the crops step's output)")
    r.add_argument("hard", type=Path, help="hard.json of `sortloop data hard-examples`")
    r.add_argument("out", type=Path)
    r.add_argument("--times", type=int, default=3)
    e = sub.add_parser("export")
    e.add_argument("weights", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--version", required=True)
    e.add_argument("--check", type=Path, default=None, help="folder of class folders of crops (e.g. DS/val)")
    s = sub.add_parser("speed")
    s.add_argument("weights", type=Path)
    s.add_argument("crops", type=Path, help="folder of class folders of crops (e.g. DS/val)")
    s.add_argument("--n", type=int, default=500)
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
        best = train(a.data, a.project, a.epochs, a.imgsz, a.base, a.time_hours, a.optimizer, a.lr0)
        print(json.dumps({"best": str(best)}))
    elif a.step == "replay":
        print(json.dumps(replay_crops(a.ds, a.hard, a.out, a.times)))
    elif a.step == "speed":
        print(json.dumps(speed(a.weights, a.crops, a.n)))
    elif a.step == "export":
        print(json.dumps(export(a.weights, a.out, a.version, a.check)))
    else:
        print(json.dumps(fuse(a.weights, [int(s) for s in a.seeds.split(",")], a.frames, a.model, a.imgsz)))


if __name__ == "__main__":
    main()
