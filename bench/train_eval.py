"""Benchmark the model side against plain Ultralytics on the same data.

* training seconds/epoch: ``training.train.train`` vs ``YOLO(pt).train(...)`` (same settings, same timing hooks)
* evaluation images/s: ``training.evaluate.evaluate`` (station Detector + faster-coco-eval + item metrics) vs
  ``YOLO(onnx).val(...)`` on the same ONNX file, wall clock of the whole call and the per-image pipeline alone

Without --data it renders a simulator dataset first. Prints a side-by-side table and a final JSON line.

    .venv/bin/python bench/train_eval.py --n 64 --epochs 2 --imgsz 320
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def _data(args: argparse.Namespace, tmp: Path) -> Path:
    if args.data:
        return Path(args.data)
    from station.simulator import render_dataset

    render_dataset(tmp / "sim", args.n, seed=0, width=args.imgsz * 2, height=args.imgsz * 2)
    return tmp / "sim" / "data.yaml"


class _EpochClock:
    def __init__(self) -> None:
        self.start = 0.0
        self.seconds: list[float] = []

    def begin(self, trainer: Any) -> None:
        self.start = time.perf_counter()

    def end(self, trainer: Any) -> None:
        if len(self.seconds) < trainer.epochs:
            self.seconds.append(time.perf_counter() - self.start)


def warm_mean(seconds: list[float]) -> float:
    """Mean seconds per epoch, leaving out the first (cold caches) when there are more."""
    warm = seconds[1:] or seconds
    return sum(warm) / max(len(warm), 1)


def _train_ours(args: argparse.Namespace, data: Path, runs: Path) -> tuple[Path, float]:
    from training.train import TrainConfig, train

    cfg = TrainConfig(data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=args.workers,
                      device=args.device, runs_dir=str(runs), name="ours", plots=False)
    result = train(cfg, progress=lambda s: print("  ours ", s.line(), flush=True))
    return result.best, warm_mean([e.seconds for e in result.epochs])


def _train_plain(args: argparse.Namespace, data: Path, runs: Path) -> float:
    from training.train import TrainConfig, resolve_data_yaml, ultralytics_env

    ultralytics_env()
    from ultralytics import YOLO

    base = TrainConfig().resolve(TrainConfig().base_weights)
    clock = _EpochClock()
    model = YOLO(str(base))
    model.add_callback("on_train_epoch_start", clock.begin)
    model.add_callback("on_fit_epoch_end", clock.end)
    model.train(data=str(resolve_data_yaml(data, runs / "plain-data")), epochs=args.epochs, imgsz=args.imgsz,
                batch=args.batch, workers=args.workers, device=args.device, project=str(runs), name="plain",
                exist_ok=True, plots=False, amp=False, verbose=False)
    return warm_mean(clock.seconds)


def _export(best: Path, data: Path, args: argparse.Namespace, out: Path) -> Path:
    from station.taxonomy import load_taxonomy
    from training.evaluate import resolve_data
    from training.export import export

    tax = load_taxonomy()
    _, images = resolve_data(data, "val", tax)
    return export(best, out, imgsz=args.imgsz, taxonomy=tax, manifest_digest="bench", metrics={}, version="bench",
                  parity_images=images[:8]).onnx


def _eval_ours(onnx: Path, data: Path) -> dict[str, float]:
    from training.evaluate import evaluate

    t0 = time.perf_counter()
    report = evaluate(onnx, data, split="val", conf=0.25, iou=0.5)
    wall = time.perf_counter() - t0
    return {"images_per_s": report.images / wall, "pipeline_images_per_s": report.images_per_s,
            "map50": report.map50, "images": report.images}


def _eval_plain(onnx: Path, data: Path, runs: Path, imgsz: int, n: int) -> dict[str, float]:
    from training.train import resolve_data_yaml, ultralytics_env

    ultralytics_env()
    from ultralytics import YOLO

    t0 = time.perf_counter()
    m = YOLO(str(onnx), task="detect").val(data=str(resolve_data_yaml(data, runs / "val-data")), imgsz=imgsz,
                                           batch=1, conf=0.001, iou=0.5, plots=False, device="cpu", verbose=False,
                                           project=str(runs), name="val", exist_ok=True)
    wall = time.perf_counter() - t0
    per_image_ms = sum(m.speed.values())
    return {"images_per_s": n / wall, "pipeline_images_per_s": 1000.0 / per_image_ms if per_image_ms else 0.0,
            "map50": float(m.box.map50), "images": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="data.yaml (default: render a simulator dataset)")
    ap.add_argument("--n", type=int, default=64, help="simulator images when --data is not given")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sortloop-bench-") as t:
        tmp = Path(t)
        data = _data(args, tmp)
        plain_epoch = _train_plain(args, data, tmp / "runs")  # first: it pays for the label cache
        best, ours_epoch = _train_ours(args, data, tmp / "runs")
        onnx = _export(best, data, args, tmp / "bench.onnx")
        ours = _eval_ours(onnx, data)
        plain = _eval_plain(onnx, data, tmp / "runs", args.imgsz, int(ours["images"]))
    rows = [("train s/epoch", ours_epoch, plain_epoch),
            ("eval images/s (whole call)", ours["images_per_s"], plain["images_per_s"]),
            ("eval images/s (per-image pipeline)", ours["pipeline_images_per_s"], plain["pipeline_images_per_s"]),
            ("mAP50 (info)", ours["map50"], plain["map50"])]
    print(f"\n{'measure':<38}{'sortloop':>12}{'ultralytics':>14}{'ratio':>8}")
    for name, a, b in rows:
        print(f"{name:<38}{a:>12.3f}{b:>14.3f}{(a / b if b else float('nan')):>8.2f}")
    print(json.dumps({"bench": "train_eval", "device": args.device, "imgsz": args.imgsz, "epochs": args.epochs,
                      "train_s_per_epoch": {"sortloop": ours_epoch, "ultralytics": plain_epoch},
                      "eval": {"sortloop": ours, "ultralytics": plain}}))


if __name__ == "__main__":
    main()
