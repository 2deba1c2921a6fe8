"""Soak: the station on the simulator for an hour at twice the default item rate, real time.

Every ``--every`` minutes it prints the process RSS and its growth since the first report (the first
``--every`` minutes are the warm-up: model arenas, caches), and the window's scorecard against the
simulator's ground truth: items, missed, doubled, hazards missed; frames dropped; commands not sent; the
frame-to-command latency percentiles; and the health level. The bench scores each window and then lets go of
its decisions, so what grows is the station's own memory.

    .venv/bin/python bench/soak.py                       # 60 min, reports every 5 min, 80 items/min
    .venv/bin/python bench/soak.py --minutes 20 --every 2.5 --json var/soak.json

Acceptance (issue 20): RSS growth < 5 % after the first 5 minutes, no hazard missed silently.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from station.config import SimulatorConfig, StationConfig  # noqa: E402
from station.runtime import Built, build_station  # noqa: E402
from station.simulator import score  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Window:
    minute: float
    rss_mb: float
    growth_pct: float | None
    items: int
    missed: int
    doubled: int
    hazards_missed: int
    dropped: int
    not_sent: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    health: str

    def line(self) -> str:
        g = "  warm-up" if self.growth_pct is None else f"{self.growth_pct:+8.2f}%"
        return (f"{self.minute:6.1f} min  RSS {self.rss_mb:7.1f} MB {g}  items {self.items:4d}  missed "
                f"{self.missed:3d}  doubled {self.doubled:3d}  hazards missed {self.hazards_missed:2d}  dropped "
                f"{self.dropped:5d}  not sent {self.not_sent:3d}  latency p50/p95/p99 {self.p50_ms:5.0f}/"
                f"{self.p95_ms:5.0f}/{self.p99_ms:5.0f} ms  {self.health}")


def config(work: Path, rate: float, seed: int) -> StationConfig:
    return StationConfig.model_validate({
        "source": {"kind": "simulator", "realtime": True},
        "simulator": {"items_per_min": SimulatorConfig().items_per_min * rate, "seed": seed},
        "model": {"watch_registry": False},
        "store": {"url": f"sqlite:///{work}/station.db", "evidence_dir": str(work / "evidence")},
    })


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


class Soak:
    def __init__(self, built: Built) -> None:
        self.built = built
        self.st = built.station
        self.start_s = 0.0  # source seconds scored so far
        self.base_rss: float | None = None
        self.dropped = self.not_sent = self.latencies_seen = 0

    def window(self, minute: float) -> Window:
        st = self.st
        sim = st.source.sim  # type: ignore[attr-defined]
        now_s = st.last_frame.timestamp if st.last_frame else 0.0
        end_s = now_s - 4.0  # items past the line by now have been decided
        bins = {name: b.distance_m for name, b in st.cfg.routing.bins.items()}
        card = score(sim.truth, list(st.decisions), list(st.actuations), start=self.start_s, end=end_s,
                     bin_distances=bins, ticks_to_time=sim.time_at_ticks)
        self._let_go(end_s - 2.0)
        self.start_s = end_s
        lat = list(st.stats.latencies_ms)[self.latencies_seen:]
        self.latencies_seen += len(lat)
        rss = rss_mb()
        growth = None if self.base_rss is None else (rss / self.base_rss - 1) * 100
        if self.base_rss is None:
            self.base_rss = rss
        dropped, self.dropped = st.frames.dropped - self.dropped, st.frames.dropped
        not_sent, self.not_sent = st.recorder.missed - self.not_sent, st.recorder.missed
        return Window(minute, rss, growth, card.items, card.missed, card.doubled, card.hazards_missed, dropped,
                      not_sent, pct(lat, 0.5), pct(lat, 0.95), pct(lat, 0.99), st.health().level.label)

    def _let_go(self, before_s: float) -> None:
        """Drop scored decisions (the station appends at the end; the prefix is ours to cut)."""
        st = self.st
        k = 0
        n = min(len(st.decisions), len(st.actuations))
        while k < n and st.decisions[k].crossed_at < before_s:
            k += 1
        del st.decisions[:k]
        del st.actuations[:k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--every", type=float, default=5.0, help="Minutes between reports (the first is warm-up).")
    ap.add_argument("--rate", type=float, default=2.0, help="Item rate as a multiple of the default.")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="Also write the windows here.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sortloop-soak-") as tmp:
        built = build_station(config(Path(tmp), args.rate, args.seed), keep_results=True, run_kind="bench")
        soak, windows = Soak(built), []
        built.station.start()
        t0 = time.monotonic()
        print(f"soak: {args.minutes:g} min, {config(Path(tmp), args.rate, args.seed).simulator.items_per_min:g} "
              f"items/min, report every {args.every:g} min; RSS at start {rss_mb():.1f} MB", flush=True)
        try:
            for k in range(1, int(args.minutes / args.every) + 1):
                time.sleep(max(0.0, t0 + k * args.every * 60 - time.monotonic()))
                w = soak.window((time.monotonic() - t0) / 60)
                windows.append(w)
                print(w.line(), flush=True)
        finally:
            built.station.stop()
    growth = [w.growth_pct for w in windows if w.growth_pct is not None]
    summary = {"rss_growth_pct_after_warmup": growth[-1] if growth else None,
               "rss_growth_pct_max": max(growth) if growth else None,
               "missed": sum(w.missed for w in windows), "doubled": sum(w.doubled for w in windows),
               "hazards_missed": sum(w.hazards_missed for w in windows),
               "not_sent": sum(w.not_sent for w in windows), "dropped": sum(w.dropped for w in windows)}
    print(json.dumps(summary), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"windows": [asdict(w) for w in windows], "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
