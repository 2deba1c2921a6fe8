"""onnxruntime alone, no pipeline: one inference spread over threads against inferences side by side.

The figure behind ``pipeline.detect_workers``: for a nano detector at a small input, one inference does not
spread well over the cores, while one-thread inferences on successive frames run side by side almost
independently. Each layout runs ``--runs`` inferences of a fixed random tensor after a warm-up, in turn, for
``--rounds`` rounds (medians reported), in this one process.

    .venv/bin/python bench/inference_parallel.py                       # ../shared COCO YOLO11n int8 at 320
    .venv/bin/python bench/inference_parallel.py --model models/sortloop-default.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
SHARED_MODEL = ROOT.parent / "shared" / "weights" / "yolo11n-coco-int8-320.onnx"


def session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the station below 4 cores
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def throughput(sess: ort.InferenceSession, callers: int, runs: int) -> float:
    """Inferences per second with ``callers`` threads each running ``runs`` inferences on the one session."""
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(3):
        sess.run(None, {inp.name: x})

    def loop() -> None:
        for _ in range(runs):
            sess.run(None, {inp.name: x})

    threads = [threading.Thread(target=loop) for _ in range(callers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return callers * runs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=SHARED_MODEL)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="threads / callers to compare")
    ap.add_argument("--runs", type=int, default=150, help="inferences per caller per round")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    n = max(1, a.cores)
    layouts = {"1 caller x 1 thread": (1, 1), f"1 caller x {n} threads": (n, 1),
               f"{n} callers x 1 thread": (1, n)}
    sessions = {threads: session(a.model, threads) for threads, _ in layouts.values()}
    fps: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(a.rounds):
        for name, (threads, callers) in layouts.items():
            fps[name].append(throughput(sessions[threads], callers, a.runs))
    med = {name: statistics.median(v) for name, v in fps.items()}
    print(f"{a.model.name}, {n} cores, {a.runs} inferences per caller, median of {a.rounds} rounds")
    for name, v in med.items():
        print(f"  {name:24s} {v:7.1f} inferences/s  {[round(f, 1) for f in fps[name]]}")
    side, spread = med[f"{n} callers x 1 thread"], med[f"1 caller x {n} threads"]
    print(f"  side by side / spread over threads: {side / spread:.2f}x")
    print(json.dumps({"model": a.model.name, "cores": n, "one_thread": round(med["1 caller x 1 thread"], 2),
                      "spread": round(spread, 2), "side_by_side": round(side, 2), "ratio": round(side / spread, 3)}))


if __name__ == "__main__":
    main()
