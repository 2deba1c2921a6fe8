"""What an open console costs the station: fps on the simulator (fast mode: every frame processed, none
dropped) without a web app, and with the app served by uvicorn, the console mounted and a client polling
what an open console polls at its real rate: the MJPEG live view (api.live_fps), and every ``poll_s`` the
items strip, active alarms and health, plus the session check every 30 s. Each run is its own process;
the modes alternate so that load from elsewhere on the machine hits both alike.

    .venv/bin/python bench/console_overhead.py                 # 600 frames, 2 rounds
    .venv/bin/python bench/console_overhead.py --frames 900 --rounds 3 --model models/sortloop-default.onnx
"""

from __future__ import annotations

import argparse
import json
import socket
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
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_MODEL = ROOT / "models" / "sortloop-default.onnx"
FALLBACK_MODEL = SHARED / "yolo11n-coco-int8-320.onnx"
PASSWORD = "bench-password-123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp: Path, model: Path, frames: int, port: int) -> object:
    from station_fps import COCO_TO_TAXONOMY

    from station.config import StationConfig

    class_map = COCO_TO_TAXONOMY if model == FALLBACK_MODEL else {}
    return StationConfig.model_validate({
        "source": {"kind": "simulator", "realtime": False, "max_frames": frames},
        "simulator": {"seed": 7, "items_per_min": 60},
        "model": {"path": str(model), "watch_registry": False, "class_map": class_map},
        "store": {"url": f"sqlite:///{tmp / 'station.db'}", "evidence_dir": str(tmp / "evidence")},
        "api": {"host": "127.0.0.1", "port": port},
    })


class Poller:
    """A client thread doing what an open console does: MJPEG stream + periodic polls."""

    def __init__(self, base: str, poll_s: float, cookies: dict[str, str]) -> None:
        import httpx

        self.client = httpx.Client(base_url=base, cookies=cookies, timeout=10)
        self.poll_s, self.requests, self.mjpeg_bytes = poll_s, 0, 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._poll, daemon=True),
                        threading.Thread(target=self._live, daemon=True)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _poll(self) -> None:
        last_session = 0.0
        while not self.stop.is_set():
            for path in ("/api/items?page_size=12", "/api/alarms?active=true&limit=50", "/health"):
                self.client.get(path)
                self.requests += 1
            if time.monotonic() - last_session >= 30:
                self.client.get("/auth/session")
                self.requests += 1
                last_session = time.monotonic()
            self.stop.wait(self.poll_s)

    def _live(self) -> None:
        with self.client.stream("GET", "/live.mjpg") as r:
            for chunk in r.iter_bytes():
                self.mjpeg_bytes += len(chunk)
                if self.stop.is_set():
                    return


def _serve(built: object, cfg: object, port: int) -> tuple[object, threading.Thread, dict[str, str]]:
    """uvicorn with the station's app, the console mounted, a logged-in admin's cookies."""
    import httpx
    import uvicorn

    from station.api import create_app
    from ui.app import mount_console
    from ui.auth import hash_password
    from ui.impact import impact_router

    st = built.station  # type: ignore[attr-defined]
    web = create_app(st.store, st, st.live, st.metrics, cfg)  # type: ignore[arg-type]
    console = mount_console(web, st, cfg)  # type: ignore[arg-type]
    web.include_router(impact_router(console.ctx))
    console.repo.add_user("bench", hash_password(PASSWORD), "admin")
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{base}/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    form = {"username": "bench", "password": PASSWORD}
    login = httpx.post(f"{base}/login", data=form, follow_redirects=False)
    cookies = dict(login.cookies)
    page = httpx.get(f"{base}/ui/", cookies=cookies, timeout=30)  # the console page, as a browser opens it
    if page.status_code != 200:
        raise RuntimeError(f"console page: HTTP {page.status_code}; the login did not work")
    return server, thread, cookies


def child(mode: str, frames: int, model: Path, poll_s: float) -> dict[str, object]:
    from station.runtime import build_station

    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        cfg = _config(Path(tmp), model, frames, port)
        built = build_station(cfg, run_kind="bench")  # type: ignore[arg-type]
        st = built.station
        poller = server = None
        if mode == "console":
            server, thread, cookies = _serve(built, cfg, port)
            poller = Poller(f"http://127.0.0.1:{port}", poll_s, cookies)
            poller.start()
        t0 = time.perf_counter()
        st.start()
        st.wait()
        seconds = time.perf_counter() - t0
        out: dict[str, object] = {"mode": mode, "frames": st.stats.frames, "seconds": round(seconds, 3),
                                  "fps": round(st.stats.frames / seconds, 2), "decisions": st.stats.decisions,
                                  "dropped": st.frames.dropped}
        if poller is not None and server is not None:
            poller.stop.set()
            st.live.close()  # type: ignore[union-attr]
            server.should_exit = True  # type: ignore[attr-defined]
            thread.join(10)
            out.update(requests=poller.requests, mjpeg_mb=round(poller.mjpeg_bytes / 2**20, 1))
        st.store.close()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=2, help="Alternating runs of each mode (median reported).")
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the station's default "
                    "model, else the shared COCO YOLO11n with a class map).")
    ap.add_argument("--poll-s", type=float, default=None, help="Console refresh period (default: the console "
                    "settings' poll_s).")
    ap.add_argument("--child", choices=["plain", "console"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    model = args.model or (DEFAULT_MODEL if DEFAULT_MODEL.is_file() else FALLBACK_MODEL)
    if args.poll_s is None:
        from ui.settings import load_settings

        args.poll_s = load_settings().poll_s
    if args.child:
        print(json.dumps(child(args.child, args.frames, model, args.poll_s)))
        return
    runs: dict[str, list[dict[str, object]]] = {"plain": [], "console": []}
    for _ in range(args.rounds):
        for mode in ("plain", "console"):
            cmd = [sys.executable, __file__, "--child", mode, "--frames", str(args.frames),
                   "--model", str(model), "--poll-s", str(args.poll_s)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
            runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {mode:<8} {runs[mode][-1]}", flush=True)
    fps = {m: statistics.median(float(r["fps"]) for r in rs) for m, rs in runs.items()}  # type: ignore[arg-type]
    ratio = fps["console"] / fps["plain"]
    print(f"\n{'':<30}{'no console':>12}{'console open':>14}")
    print(f"{'station fps (median)':<30}{fps['plain']:>12.1f}{fps['console']:>14.1f}")
    print(f"{'ratio console / none':<30}{ratio:>26.3f}")
    print(json.dumps({"bench": "console_overhead", "model": model.name, "frames": args.frames,
                      "rounds": args.rounds, "poll_s": args.poll_s, "fps_plain": round(fps["plain"], 2),
                      "fps_console": round(fps["console"], 2), "ratio": round(ratio, 4),
                      "requests": [r.get("requests") for r in runs["console"]]}))


if __name__ == "__main__":
    main()
