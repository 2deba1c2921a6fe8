"""The loop, end to end on the simulator (CPU): a station runs a model, people correct its systematic error
from the simulator's ground truth through the corrections path, the engineer view retrains on the corrections
in a background job, the candidate passes the gate, the running station hot-swaps to it (registry promote →
ModelWatcher.poll) and the corrected class's recall rises on frames neither model trained on.

By default the starting model is a tiny one trained here on simulator renders that never show ``plastic``
(so bottles go to other classes: the systematic error). Parameters (environment):

    SORTLOOP_LOOP_MODEL     start from this ONNX instead (e.g. models/sortloop-default.onnx)
    SORTLOOP_LOOP_WEIGHTS   its .pt checkpoint (default: beside the ONNX); needed to fine-tune
    SORTLOOP_LOOP_DATA      data.yaml of its training data (replay, evaluation; default: training.yaml's)
    SORTLOOP_LOOP_CLASSES   simulator classes, comma-separated
    SORTLOOP_LOOP_FRAMES    frames of each measuring run on seed B (default 1200)
    SORTLOOP_LOOP_FRAMES_A  frames of the corrected run on seed A (default 2400: about 40 corrected bottles;
                            with half that, 22, 2 of 4 runs failed, one with no bottle decided as plastic
                            after the retraining)
    SORTLOOP_LOOP_EPOCHS    retraining epochs (default 10)
    SORTLOOP_LOOP_CACHE     folder to keep the tiny model in between runs (default: trained afresh)

Run: .venv/bin/pytest -q -m slow -s tests/test_loop.py
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from shared_data import SHARED, shared_file

from station.config import StationConfig
from station.events import Decision
from station.runtime import Built, build_station
from station.simulator import TruthItem, match_truth
from station.simulator.score import MATCH_WINDOW_S
from station.taxonomy import load_taxonomy
from training.registry import GateConfig, Registry, model_card
from ui.auth import ConsoleUser
from ui.context import ConsoleContext
from ui.corrections import CorrectionIn, Kind, submit
from ui.engineer import EngineerDesk, RetrainOptions, class_rows, summary_rows
from ui.jobs import JobState
from ui.retrain import RetrainResult

pytestmark = pytest.mark.slow

TAX = load_taxonomy()
ROOT = Path(__file__).resolve().parents[1]
ENV = os.environ.get
FRAMES = int(ENV("SORTLOOP_LOOP_FRAMES", "1200"))
FRAMES_A = int(ENV("SORTLOOP_LOOP_FRAMES_A", "2400"))
EPOCHS = int(ENV("SORTLOOP_LOOP_EPOCHS", "10"))
TINY_CLASSES = ["battery", "can", "glass"]  # what the tiny model learns; plastic stays unknown to it
TINY_IMAGES, TINY_EPOCHS = 240, 16
SIM_CLASSES = (ENV("SORTLOOP_LOOP_CLASSES") or ",".join([*TINY_CLASSES, "plastic"])).split(",")
ENGINEER = ConsoleUser("erin", "engineer")
# A tiny model finds too few batteries for the production floor (0.9); the relative rules stay: no drop of
# hazard recall against the current model, mAP50-95 within tolerance, both on the same data.
GATE = GateConfig(min_hazard_recall=0.0, map_tolerance=0.05)


@dataclass
class Start:
    onnx: Path
    weights: Path
    data: Path


def _tiny_model(work: Path) -> Start:
    from station.simulator import render_dataset
    from training.export import ExportConfig, export
    from training.train import TrainConfig, train

    data, onnx, best = work / "base", work / "v1.onnx", work / "runs" / "base" / "weights" / "best.pt"
    if onnx.is_file() and best.is_file():  # kept from an earlier run (SORTLOOP_LOOP_CACHE)
        return Start(onnx, best, data / "data.yaml")
    shutil.rmtree(work, ignore_errors=True)
    render_dataset(data / "train", TINY_IMAGES, seed=1, width=640, height=352, taxonomy=TAX,
                   classes=TINY_CLASSES, items_per_image=(2, 5))
    render_dataset(data / "val", 40, seed=2, width=640, height=352, taxonomy=TAX, classes=TINY_CLASSES,
                   items_per_image=(2, 5))
    names = dict(enumerate(TAX.names))
    (data / "data.yaml").write_text(yaml.safe_dump({"path": str(data), "train": "train/images",
                                                    "val": "val/images", "names": names}))
    coco = shared_file(SHARED / "weights" / "yolo11n-coco.pt")
    cfg = TrainConfig(data=str(data / "data.yaml"), base_weights=str(coco),
                      epochs=TINY_EPOCHS, imgsz=320, batch=16, workers=0, plots=False, name="base",
                      runs_dir=str(work / "runs"), patience=100, close_mosaic=2)
    best = train(cfg).best
    export(best, onnx, imgsz=320, taxonomy=TAX, manifest_digest="loop-test", metrics={}, version="v1",
           parity_images=sorted((data / "val" / "images").glob("*.jpg"))[:8],
           cfg=ExportConfig(parity_conf=0.25))
    return Start(onnx, best, data / "data.yaml")


def _given_model() -> Start | None:
    if not ENV("SORTLOOP_LOOP_MODEL"):
        return None
    onnx = Path(ENV("SORTLOOP_LOOP_MODEL", ""))
    weights = Path(ENV("SORTLOOP_LOOP_WEIGHTS") or onnx.with_suffix(".pt"))
    from training.train import load_settings

    train_cfg = load_settings().train
    data = Path(ENV("SORTLOOP_LOOP_DATA") or train_cfg.resolve(train_cfg.data))
    for path in (onnx, weights, data):
        if not path.is_file():
            pytest.skip(f"{path} not found: the loop needs the model, its .pt and its data.yaml")
    return Start(onnx, weights, data)


def _training_yaml(path: Path, tiny: bool) -> Path:
    """configs/training.yaml with the test's gate; for the tiny model, parity on its confident boxes only."""
    src = ROOT / "configs" / "training.yaml"
    data = yaml.safe_load(src.read_text()) if src.is_file() else {}
    if tiny:
        data.setdefault("export", {})["parity_conf"] = 0.25
    data["gate"] = GATE.model_dump()
    path.write_text(yaml.safe_dump(data))
    return path


def _register_v1(start: Start, registry: Path) -> str:
    from training.evaluate import evaluate

    conf = StationConfig().model.confidence
    report = evaluate(start.onnx, start.data, split="val", conf=conf, taxonomy=TAX)
    reg = Registry(registry)
    mv = reg.add(start.onnx, model_card(start.onnx, report), report, by="test")
    shutil.copyfile(start.weights, mv.folder / "model.pt")
    reg.promote(mv.version, GATE, by="test")
    return mv.version


def _config(work: Path, registry: Path, seed: int, name: str, frames: int = FRAMES) -> StationConfig:
    return StationConfig.model_validate({
        "source": {"kind": "simulator", "realtime": False, "max_frames": frames},
        "simulator": {"width": 640, "height": 360, "px_per_m": 500, "items_per_min": 120, "seed": seed,
                      "classes": SIM_CLASSES},
        "routing": {"px_per_m": 500},
        "model": {"registry": str(registry), "watch_registry": True},
        "store": {"url": f"sqlite:///{work / name / 'station.db'}",
                  "evidence_dir": str(work / name / "evidence")},
    })


def _run(built: Built) -> tuple[list[Decision], list[TruthItem], float]:
    st = built.station
    st.start()
    st.wait()
    assert st.last_frame is not None
    from station.capture import SimulatorSource

    assert isinstance(st.source, SimulatorSource)
    return list(st.decisions), list(st.source.sim.truth), st.last_frame.timestamp


def _confusion(decisions: list[Decision], truth: list[TruthItem], start: float,
               end: float) -> dict[str, Counter[str]]:
    """Truth class → what the station decided for its items whose line time is in [start, end]."""
    decided = {}
    for d in sorted(decisions, key=lambda d: d.crossed_at):
        t = match_truth(truth, d)
        if t is not None and t.item_id not in decided:
            decided[t.item_id] = d.class_name or "(no class)"
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for t in truth:
        if start <= t.line_time <= end:
            out[t.class_name][decided.get(t.item_id, "(missed)")] += 1
    return out


def _table(conf: dict[str, Counter[str]]) -> str:
    return "; ".join(f"{k}: {dict(v)}" for k, v in sorted(conf.items()))


def _recall(conf: dict[str, Counter[str]], cls: str) -> float:
    n = sum(conf[cls].values())
    return conf[cls][cls] / n if n else 0.0


def _correct_from_truth(decisions: list[Decision], truth: list[TruthItem],
                        desk: EngineerDesk) -> Counter[str]:
    """People go through the decisions in the console: they fix the wrong ones and confirm the right ones."""
    console = desk._console()
    kinds = Counter[str]()
    for d in decisions:
        t = match_truth(truth, d)
        if t is None:
            answer = CorrectionIn(kind=Kind.NOT_ITEM, item_id=d.item_id)
        elif d.class_name != t.class_name:
            answer = CorrectionIn(kind=Kind.RECLASS, item_id=d.item_id, class_name=t.class_name)
        else:
            answer = CorrectionIn(kind=Kind.CONFIRM, item_id=d.item_id)
        kinds[submit(console, ENGINEER, answer).kind] += 1
    return kinds


@pytest.fixture(autouse=True)
def _item_ids_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decisions get random ids, and the retraining set follows them (evidence file names set the training
    order, their hash the held-out share), so the same run gave another candidate each time: with random ids
    2 of 3 runs passed, one refused by the gate (hazard recall 0.468 -> 0.447). In order, every run is the
    same run (the simulator, the tiny model's training and the retraining are seeded): plastic recall 0.000 ->
    0.455 on seed B; hazard recall on the gate data, counted as the station flags batteries, 0.596 -> 0.596
    (a tie passes; counted the plain way it was 0.468 -> 0.489)."""
    counter = itertools.count(1)
    monkeypatch.setattr("station.decide.new_id", lambda: f"{next(counter):032x}")


@pytest.mark.timeout(3600)
def test_corrections_retrain_gate_hot_swap_raise_the_corrected_class_recall(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    os.environ["YOLO_OFFLINE"] = "1"
    given = _given_model()
    start = given or _tiny_model(Path(ENV("SORTLOOP_LOOP_CACHE") or tmp_path / "tiny"))
    t_model = time.perf_counter() - t0
    registry = tmp_path / "registry"
    v1 = _register_v1(start, registry)

    # 1. the station runs v1 on seed A; people correct its mistakes from the ground truth
    built_a = build_station(_config(tmp_path, registry, seed=11, name="a", frames=FRAMES_A), keep_results=True)
    assert built_a.station.model_version == v1
    dec_a, truth_a, end_a = _run(built_a)
    warm = 1.5
    conf_a = _confusion(dec_a, truth_a, warm, end_a - 0.5)
    worst = min((c for c in SIM_CLASSES if sum(conf_a[c].values()) >= 5), key=lambda c: _recall(conf_a, c))
    ctx = ConsoleContext(built_a.station.cfg, TAX, built_a.station.store, built_a.station)
    desk = EngineerDesk(ctx, gate=GATE, work_dir=tmp_path / "console")
    answers = _correct_from_truth(dec_a, truth_a, desk)
    t_run_a = time.perf_counter() - t0

    # 2. retrain on the corrections in the background job (a child process), as the engineer view does
    job = desk.start_retrain(ENGINEER, RetrainOptions(
        epochs=EPOCHS, replay_data=str(start.data), replay_n=150, batch=16, eval_data=str(start.data),
        training_config=str(_training_yaml(tmp_path / "training.yaml", tiny=given is None))))
    while not (status := desk.jobs.wait(job.job_id, 10)).done:
        print(f"  job {status.stage}: {status.progress:.0%} {status.message[:100]}")
    assert status.state is JobState.SUCCEEDED, f"{status.error}\n" + "\n".join(status.log[-30:])
    result = RetrainResult.from_dict(status.result)
    assert status.stages == ["dataset", "train", "export", "evaluate", "register", "done"]
    cmp = desk.comparison(ENGINEER, result.version)
    print("  candidate vs current:", "; ".join(" ".join(r) for r in summary_rows(cmp)))
    print("  AP50 per class:", "; ".join(" ".join(r) for r in class_rows(cmp)))
    t_retrain = time.perf_counter() - t0

    # 3. v1 on seed B (the measure before)
    built_before = build_station(_config(tmp_path, registry, seed=23, name="before"), keep_results=True)
    dec_before, truth_b, end_b = _run(built_before)

    # 4. the same frames on a running station that hot-swaps to the promoted candidate
    built_b = build_station(_config(tmp_path, registry, seed=23, name="after"), keep_results=True)
    assert built_b.station.model_version == v1 and built_b.watcher is not None
    reasons = desk.gate_preview(ENGINEER, result.version)
    assert reasons == [], f"the gate refuses {result.version}: {reasons}"
    built_b.station.start()
    decision = desk.promote(ENGINEER, result.version)
    assert decision.accepted and decision.current == v1
    assert built_b.watcher.poll()  # hands the promoted model to the running station
    built_b.station.wait()
    dec_after = list(built_b.station.decisions)
    versions = Counter(d.model_version for d in dec_after)
    swap_end = max([warm] + [d.crossed_at + MATCH_WINDOW_S for d in dec_after if d.model_version != result.version])
    conf_before = _confusion(dec_before, truth_b, swap_end, end_b - 0.5)
    conf_after = _confusion(dec_after, truth_b, swap_end, end_b - 0.5)
    t_total = time.perf_counter() - t0

    # nothing dropped: every frame processed, every decision recorded, the store knows the new model
    st = built_b.station
    assert st.stats.frames == FRAMES and st.frames.dropped == 0
    assert st.store.list_items(page_size=1).total == len(dec_after)
    active = st.store.active_model()
    assert active is not None and active.version == result.version == st.model_version

    before, after = _recall(conf_before, worst), _recall(conf_after, worst)
    print(f"\nloop: corrected class {worst!r}; answers to {len(dec_a)} decisions on seed A: {dict(answers)}")
    print(f"  seed A with {v1}: {_table(conf_a)}")
    print(f"  seed B before ({v1}): {_table(conf_before)}")
    print(f"  seed B after ({result.version}): {_table(conf_after)}")
    print(f"  recall of {worst}: {before:.3f} -> {after:.3f}   (decisions by version: {dict(versions)})")
    cur, cand = cmp.base_current, cmp.base_candidate
    assert cur is not None
    print(f"  gate data: mAP50-95 {cur.map50_95:.4f} -> {cand.map50_95:.4f}, hazard recall "
          f"{cur.hazard_recall} -> {cand.hazard_recall}")
    print(f"  retrain: {result.train_images} training images ({result.correction_images} corrected, "
          f"{result.replay_images} replay), {result.epochs} epochs, {result.seconds:.0f} s")
    print(f"  wall time: model {t_model:.0f} s, run A + corrections {t_run_a - t_model:.0f} s, retrain "
          f"{t_retrain - t_run_a:.0f} s, runs B {t_total - t_retrain:.0f} s, total {t_total:.0f} s")
    assert sum(conf_after[worst].values()) >= 5
    assert after > before
