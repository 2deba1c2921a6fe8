"""One round of the operator loop on the simulator, with the shipped model: what a round of corrections buys.

The station runs its model on simulator seeds (not the acceptance test's seed 5), a stand-in operator answers
every decision from the simulator's ground truth through the console's corrections path (confirm, re-class or
"not an item"), and the engineer view's retraining runs in its background job. With an empty registry the
retraining first adopts the station's model (`models/sortloop-default.onnx`, with `models/sortloop-default.pt`
when `make default-model` wrote it, else with a checkpoint recovered from the ONNX file's weights).
The candidate is left registered, not promoted, in ``OUT/reg``; evaluate it with `sortloop eval` and the slow
simulator test's scorecard before adopting anything.

    .venv/bin/python bench/correction_round.py OUT --seeds 101,102,103,104 --frames 3000 --epochs 4 \
        --replay data/sortloop/data.yaml --replay-n 400

Prints the answers per seed, the confusions the operator fixed, the job's progress, and one JSON line with
the retraining's result (version, model path, image counts, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

from station.config import StationConfig  # noqa: E402
from station.runtime import build_station  # noqa: E402
from station.simulator import match_truth  # noqa: E402
from station.taxonomy import load_taxonomy  # noqa: E402
from training.registry import GateConfig  # noqa: E402
from ui.auth import ConsoleUser  # noqa: E402
from ui.context import ConsoleContext  # noqa: E402
from ui.corrections import CorrectionIn, Kind, submit  # noqa: E402
from ui.engineer import EngineerDesk, RetrainOptions  # noqa: E402

ENGINEER = ConsoleUser("bench", "engineer")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="Working folder (store, evidence, registry, retraining job).")
    ap.add_argument("--seeds", default="101,102,103,104", help="Simulator seeds, comma-separated.")
    ap.add_argument("--frames", type=int, default=3000, help="Frames per seed.")
    ap.add_argument("--model", default="models/sortloop-default.onnx", help="The station's model.")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--replay", default=None, help="data.yaml of the base training data (replay sample).")
    ap.add_argument("--replay-n", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        ap.error(f"{args.out} is not empty; give a new folder (its registry and store would mix with this run)")
    tax = load_taxonomy()
    base = StationConfig.model_validate({
        "source": {"kind": "simulator", "realtime": False, "max_frames": args.frames},
        "model": {"path": str(Path(args.model).resolve()), "registry": str(args.out / "reg"),
                  "watch_registry": False},
        "store": {"url": f"sqlite:///{args.out / 'station.db'}", "evidence_dir": str(args.out / "evidence")}})
    answers, fixed = Counter[str](), Counter[str]()
    desk = None
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = base.model_copy(deep=True)
        cfg.simulator.seed = seed
        st = build_station(cfg, keep_results=True).station
        st.start()
        st.wait()
        desk = EngineerDesk(ConsoleContext(st.cfg, tax, st.store, st), gate=GateConfig(),
                            work_dir=args.out / "console")
        console = desk._console()
        for d in st.decisions:
            item = match_truth(st.source.sim.truth, d)  # type: ignore[attr-defined]
            if item is None:
                answer = CorrectionIn(kind=Kind.NOT_ITEM, item_id=d.item_id)
            elif item.class_name != d.class_name:
                answer = CorrectionIn(kind=Kind.RECLASS, item_id=d.item_id, class_name=item.class_name)
                fixed[f"{d.class_name} → {item.class_name}"] += 1
            else:
                answer = CorrectionIn(kind=Kind.CONFIRM, item_id=d.item_id)
            answers[submit(console, ENGINEER, answer).kind] += 1
        print(f"seed {seed}: {len(st.decisions)} decisions; answers so far {dict(answers)}", flush=True)
    assert desk is not None
    print("fixed:", ", ".join(f"{k} {v}" for k, v in fixed.most_common()) or "nothing", flush=True)
    job = desk.start_retrain(ENGINEER, RetrainOptions(epochs=args.epochs, replay_data=args.replay,
                                                      replay_n=args.replay_n, batch=args.batch))
    while not (status := desk.jobs.wait(job.job_id, 30)).done:
        print(f"  {status.stage} {status.progress:.0%} {status.message[:110]}", flush=True)
    if status.error:
        print(status.error, file=sys.stderr)
        return 1
    print(json.dumps(status.result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
