"""Station fps while 40 clients flood ``/login``, against the same station idle.

Starts ``sortloop run`` (the simulator, unpaced so fps shows CPU contention) with a throw-away store, counts
frames through ``/metrics`` (a metrics token), and measures in turn: idle, a flood of 40 parallel logins with
the default back-off, and the same flood with the back-off off (``--no-backoff`` pass: every login reaches the
argon2 hash pool, which is what bounds it). The flood runs in its own process at nice 19, standing in for
an attacker on another machine. Idle is measured before and after the flood and averaged, so a drift of
other work on the machine does not pass for the flood's cost. Prints one JSON object: fps per phase, the
ratio to idle, logins answered per status, and the station's peak RSS per phase.

    .venv/bin/python bench/login_flood.py                 # 20 s per phase
    .venv/bin/python bench/login_flood.py --seconds 10 --clients 40
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PASSWORD = "correct horse battery"
CLI = [sys.executable, "-m", "station"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(work: Path, port: int, backoff: bool) -> Path:
    cfg = {"source": {"kind": "simulator", "realtime": False},
           "model": {"watch_registry": False},
           "store": {"url": f"sqlite:///{work / 'station.db'}", "evidence_dir": str(work / "evidence")},
           "api": {"host": "127.0.0.1", "port": port},
           "security": {} if backoff else {"login_backoff_after": 1_000_000, "lock_after": 1_000_000}}
    path = work / f"station-{'backoff' if backoff else 'pool'}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(*args: str, stdin: str = "") -> str:
    out = subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout


def frames(url: str, token: str) -> float:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30).text
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("sortloop_frames_total "))


def measure(url: str, token: str, proc: psutil.Process, seconds: float) -> tuple[float, float]:
    """(fps, peak RSS MiB) over ``seconds``."""
    peak, start_frames, t0 = 0.0, frames(url, token), time.monotonic()
    while time.monotonic() - t0 < seconds:
        peak = max(peak, proc.memory_info().rss / 2**20)
        time.sleep(0.25)
    return (frames(url, token) - start_frames) / (time.monotonic() - t0), peak


def flood(url: str, clients: int, seconds: float) -> dict[int, int]:
    """``clients`` threads posting wrong logins for ``seconds``; the count of each answer's status."""
    stop, statuses, lock = threading.Event(), collections.Counter[int](), threading.Lock()

    def one(i: int) -> None:
        with httpx.Client(timeout=120) as c:
            while not stop.is_set():
                try:
                    code = c.post(f"{url}/login", data={"username": f"nobody{i}", "password": "not the password"},
                                  follow_redirects=False).status_code
                except httpx.HTTPError:
                    code = 0
                with lock:
                    statuses[code] += 1

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(130)
    return dict(sorted(statuses.items()))


def start_flood(url: str, clients: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """The flood in its own process at nice 19: it shares this machine's cores, but stands in for an attacker
    elsewhere, so what is measured is the station's own cost of answering the logins."""
    return subprocess.Popen(["nice", "-n", "19", sys.executable, __file__, "--flood", url, "--clients", str(clients),
                             "--seconds", str(seconds), "--out", str(out)], cwd=ROOT)


def run_station(work: Path, backoff: bool, seconds: float, clients: int, warmup: float) -> dict[str, object]:
    port = free_port()
    config = write_config(work, port, backoff)
    if not (work / "station.db").exists():
        run_cli("users", "add", "admin", "--role", "admin", "--password-stdin", "--config", str(config),
                stdin=PASSWORD + "\n")
    token = run_cli("tokens", "create", "--name", f"bench-{port}", "--scope", "metrics", "--config",
                    str(config)).splitlines()[0]
    station = subprocess.Popen([*CLI, "run", "--config", str(config)], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "YOLO_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                frames(url, token)
                break
            except (httpx.HTTPError, StopIteration):
                if time.monotonic() > deadline or station.poll() is not None:
                    raise RuntimeError("the station did not start") from None
                time.sleep(0.5)
        time.sleep(warmup)
        proc = psutil.Process(station.pid)
        before_fps, idle_rss = measure(url, token, proc, seconds)
        out = work / "flood.json"
        flooder = start_flood(url, clients, seconds + 4, out)
        time.sleep(2)  # the flood builds up
        flood_fps, flood_rss = measure(url, token, proc, seconds)
        flooder.wait(200)
        time.sleep(3)  # the queued logins drain
        after_fps, _ = measure(url, token, proc, seconds)
        statuses = json.loads(out.read_text())
        # idle on both sides of the flood: other work on the machine drifts over a minute (a training run)
        idle_fps = (before_fps + after_fps) / 2
        return {"idle_fps": round(idle_fps, 2), "idle_before_fps": round(before_fps, 2),
                "idle_after_fps": round(after_fps, 2), "flood_fps": round(flood_fps, 2),
                "flood_vs_idle": round(flood_fps / idle_fps, 3) if idle_fps else None,
                "idle_rss_mib": round(idle_rss), "flood_rss_mib": round(flood_rss),
                "login_statuses": statuses}
    finally:
        station.terminate()
        station.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="Length of each measured phase (s).")
    ap.add_argument("--clients", type=int, default=40, help="Parallel login clients.")
    ap.add_argument("--warmup", type=float, default=5.0, help="Seconds after start before measuring.")
    ap.add_argument("--flood", metavar="URL", help=argparse.SUPPRESS)  # the flood process
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.flood:
        args.out.write_text(json.dumps(flood(args.flood, args.clients, args.seconds)))
        return
    with tempfile.TemporaryDirectory(prefix="sortloop-flood-") as tmp:
        work = Path(tmp)
        result = {"cpus": os.cpu_count(), "clients": args.clients, "seconds": args.seconds,
                  "with_backoff": run_station(work, True, args.seconds, args.clients, args.warmup),
                  "hash_pool_only": run_station(work, False, args.seconds, args.clients, args.warmup)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
