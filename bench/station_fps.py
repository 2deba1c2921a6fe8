"""Station pipeline fps against Ultralytics' own ``YOLO(...).track(...)`` on the same clip, in one run.

Every frame is processed by each contender (no drops), same input size, same model: its PyTorch
weights and the same ONNX file through Ultralytics' ONNX backend; the ratio is against the faster of
the two. Each contender runs in its own process so RSS and threads do not mix.

Contenders run in turn for ``--rounds`` rounds (this machine's speed drifts between minutes); the
figures are the median of each contender's rounds. Frame→decision latency comes from a separate real-time
pass (the clip played at 30 fps, as a camera delivers it) with the station's default model, which decides
the clip's items; in the every-frame passes frames wait in the queue, so their latency says nothing.

    .venv/bin/python bench/station_fps.py            # COCO YOLO11n at 320 on a 1280×720 clip, 3 rounds
    .venv/bin/python bench/station_fps.py --variants # also YOLO26n and INT8 exports, reported apart
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "weights"
sys.path.insert(0, str(ROOT))

SPIN = {"1": True, "0": False}.get(os.environ.get("SORTLOOP_BENCH_SPIN", ""))  # model.spin; unset: the default
COCO_TO_TAXONOMY = {"cell phone": "phone", "laptop": "laptop", "keyboard": "keyboard", "mouse": "mouse",
                    "tv": "monitor", "remote": "e_device", "bottle": "plastic", "cup": "plastic",
                    "scissors": "metal", "book": "paper", "handbag": "textile", "tie": "textile",
                    "backpack": "textile", "wine glass": "glass", "vase": "glass"}


def make_clip(path: Path, frames: int, seed: int = 7) -> Path:
    """A 1280×720 conveyor clip from the simulator (written once, reused)."""
    import cv2

    from station.config import SimulatorConfig
    from station.simulator import ConveyorSimulator
    from station.taxonomy import load_taxonomy

    path.parent.mkdir(parents=True, exist_ok=True)
    sim = ConveyorSimulator(SimulatorConfig(seed=seed, items_per_min=60), load_taxonomy())
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (1280, 720))
    for frame in sim:
        if frame.index >= frames:
            break
        vw.write(frame.image)
    vw.release()
    return path


class RssPeak:
    def __init__(self) -> None:
        import psutil

        self._p = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._p.memory_info().rss)

    def stop(self) -> float:
        self._stop.set()
        self.peak = max(self.peak, self._p.memory_info().rss)
        return self.peak / 2**20


def run_sortloop(clip: Path, model: Path, imgsz: int, threads: int, realtime: bool = False,
                 detect_workers: int | None = None) -> dict:
    del imgsz  # the ONNX file fixes the input size
    from station.config import StationConfig
    from station.runtime import build_station

    rss = RssPeak()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = StationConfig.model_validate({
            "source": {"kind": "video", "uri": str(clip), "realtime": realtime},
            "model": {"path": str(model), "watch_registry": False, "threads": threads, "spin": SPIN,
                      "class_map": {} if _native(model) else COCO_TO_TAXONOMY},
            "store": {"url": f"sqlite:///{tmp}/bench.db", "evidence_dir": f"{tmp}/evidence"},
            "pipeline": {"detect_workers": detect_workers},
        })
        built = build_station(cfg, keep_results=False, run_kind="bench")
        st = built.station
        t0 = time.perf_counter()
        st.start()
        st.wait()
        dt = time.perf_counter() - t0
        lat = sorted(st.stats.latencies_ms)
    return {"fps": st.stats.frames / dt, "frames": st.stats.frames, "seconds": dt, "rss_mb": rss.stop(),
            "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "decisions": st.stats.decisions,
            "dropped": st.frames.dropped}


def _native(model: Path) -> bool:
    from station.detect import Detector
    from station.taxonomy import load_taxonomy

    names = Detector(model).names
    return all(n in load_taxonomy() for n in names)


def run_ultralytics(clip: Path, model: Path, imgsz: int, threads: int) -> dict:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from ultralytics import YOLO

    rss = RssPeak()
    yolo = YOLO(str(model), task="detect")
    n = 0
    t0 = time.perf_counter()
    for _ in yolo.track(source=str(clip), imgsz=imgsz, stream=True, verbose=False, tracker="bytetrack.yaml",
                        device="cpu", persist=True):
        n += 1
    dt = time.perf_counter() - t0
    return {"fps": n / dt, "frames": n, "seconds": dt, "rss_mb": rss.stop()}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    k = min(len(values) - 1, round(q / 100 * (len(values) - 1)))
    return round(values[k], 2)


def contender(kind: str, clip: Path, model: Path, imgsz: int, threads: int, detect_workers: int | None = None
              ) -> dict:
    """Run one contender in a fresh process; its JSON result. ``kind`` sortloop-realtime plays the clip at 30 fps."""
    cmd = [sys.executable, __file__, "--worker", kind, "--clip", str(clip), "--model", str(model),
           "--imgsz", str(imgsz), "--threads", str(threads)]
    if detect_workers is not None:
        cmd += ["--detect-workers", str(detect_workers)]
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(ROOT / "var" / "ultralytics")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} on {model.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def export_variants(imgsz: int, out: Path) -> list[tuple[str, Path]]:
    """Extra models the station may legitimately choose: YOLO26n (NMS-free) and INT8, at the same size."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from ultralytics import YOLO

    out.mkdir(parents=True, exist_ok=True)
    variants = []
    for stem in ("yolo11n-coco", "yolo26n-coco"):
        fp32 = out / f"{stem}-{imgsz}.onnx"
        if not fp32.exists():
            # Ultralytics writes the export beside the weights: export a working copy, never into ../shared
            work = out / f"{stem}.pt"
            shutil.copyfile(SHARED / f"{stem}.pt", work)
            exported = YOLO(str(work)).export(format="onnx", imgsz=imgsz, simplify=True)
            Path(exported).replace(fp32)
        int8 = out / f"{stem}-{imgsz}-int8.onnx"
        if not int8.exists():
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QUInt8)
        variants += [(f"{stem} fp32", fp32), (f"{stem} int8 (dynamic)", int8)]
    return variants


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["sortloop", "sortloop-realtime", "ultralytics"])
    ap.add_argument("--clip", type=Path, default=ROOT / "var" / "bench" / "clip-1280x720.mp4")
    ap.add_argument("--frames", type=int, default=600, help="clip length when the clip is made")
    ap.add_argument("--model", type=Path, default=SHARED / "yolo11n-coco-int8-320.onnx")
    ap.add_argument("--pt", type=Path, default=SHARED / "yolo11n-coco.pt")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--threads", type=int, default=0, help="inference threads (0 = library default)")
    ap.add_argument("--detect-workers", type=int, default=None,
                    help="the station's pipeline.detect_workers (default: its automatic choice)")
    ap.add_argument("--variants", action="store_true", help="also YOLO26n and INT8 exports, reported apart")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every contender; figures are medians")
    ap.add_argument("--latency-model", type=Path, default=ROOT / "models" / "sortloop-default.onnx",
                    help="model of the real-time latency pass (one that decides the clip's items)")
    a = ap.parse_args()
    if a.worker in ("sortloop", "sortloop-realtime"):
        print(json.dumps(run_sortloop(a.clip, a.model, a.imgsz, a.threads, realtime=a.worker != "sortloop",
                                      detect_workers=a.detect_workers)))
        return
    if a.worker == "ultralytics":
        print(json.dumps(run_ultralytics(a.clip, a.model, a.imgsz, a.threads)))
        return
    if not a.clip.exists():
        make_clip(a.clip, a.frames)
    names = {"sortloop (onnxruntime)": ("sortloop", a.model), "ultralytics track (PyTorch)": ("ultralytics", a.pt),
             "ultralytics track (ONNX)": ("ultralytics", a.model)}
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(a.rounds):
        order = list(names)[r % len(names):] + list(names)[:r % len(names)]  # rotate who runs first
        for name in order:
            kind, model = names[name]
            runs[name].append(contender(kind, a.clip, model, a.imgsz, a.threads, a.detect_workers))
        print(f"round {r + 1}: " + ", ".join(f"{n} {runs[n][-1]['fps']:.1f} fps" for n in names), flush=True)
    rows = {name: _median(rs) for name, rs in runs.items()}
    latency = contender("sortloop-realtime", a.clip, a.latency_model, a.imgsz, a.threads, a.detect_workers)
    _print(rows, a)
    print(f"  frame→decision latency, real time (30 fps), {a.latency_model.name}: p50 {latency['p50_ms']} ms  "
          f"p99 {latency['p99_ms']} ms over {latency['decisions']} decisions, {latency['dropped']} frames dropped")
    ours, best = rows["sortloop (onnxruntime)"], max(rows["ultralytics track (PyTorch)"]["fps"],
                                                     rows["ultralytics track (ONNX)"]["fps"])
    if a.variants:
        extra = {name: _median([contender("sortloop", a.clip, path, a.imgsz, a.threads, a.detect_workers)
                                for _ in range(a.rounds)])
                 for name, path in export_variants(a.imgsz, ROOT / "var" / "bench" / "models")}
        print("\nstation with other models it may choose (not the same-model comparison):")
        for name, res in extra.items():
            print(f"  {name:28s} {res['fps']:7.1f} fps  rss {res['rss_mb']:.0f} MB")
    print(json.dumps({"sortloop_fps": round(ours["fps"], 2), "ultralytics_fps": round(best, 2),
                      "ratio": round(ours["fps"] / best, 3), "p50_ms": latency["p50_ms"],
                      "p99_ms": latency["p99_ms"], "rss_mb": round(ours["rss_mb"], 1), "rounds": a.rounds}))


def _median(results: list[dict]) -> dict:
    """The run with the median fps (its other figures with it); fps is the median itself."""
    ranked = sorted(results, key=lambda r: r["fps"])
    return {**ranked[len(ranked) // 2], "fps": statistics.median(r["fps"] for r in results),
            "fps_all": [round(r["fps"], 1) for r in results]}


def _print(rows: dict[str, dict], a: argparse.Namespace) -> None:
    print(f"clip {a.clip.name}, model {a.model.name} / {a.pt.name}, imgsz {a.imgsz}, every frame processed, "
          f"median of {a.rounds} rounds")
    for name, r in rows.items():
        print(f"  {name:30s} {r['fps']:7.1f} fps median of {r['fps_all']}  ({r['frames']} frames)  "
              f"rss {r['rss_mb']:.0f} MB")
    best = max(rows["ultralytics track (PyTorch)"]["fps"], rows["ultralytics track (ONNX)"]["fps"])
    print(f"  ratio sortloop / faster ultralytics: {rows['sortloop (onnxruntime)']['fps'] / best:.2f}×")


if __name__ == "__main__":
    main()
