"""Engineer view: background jobs (threads and real child processes), the retraining dataset, corrections per
class, permission checks on every action, comparison tables, promotion through the gate and rollback."""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from station.config import StationConfig
from station.events import Actuation, Decision, Reason, new_id
from station.simulator import render_dataset
from station.store import JsonValue, Store
from station.taxonomy import load_taxonomy
from training.evaluate import ClassAP, EvalReport, ReliabilityBin
from training.formats import Box, Sample, read_yolo
from training.registry import GateConfig, GateRefused, Registry, RegistryError
from ui.auth import AuthError, ConsoleUser, ForbiddenError, NotLoggedInError
from ui.context import ConsoleContext
from ui.corrections import CorrectionIn, Kind, submit
from ui.engineer import EngineerDesk, RetrainOptions, class_rows, stream_rows, summary_rows
from ui.jobs import JobBusyError, JobContext, JobFailedError, JobManager, JobState, emit, process_runner
from ui.retrain import (
    Comparison,
    DatasetInfo,
    RetrainError,
    RetrainSpec,
    adopt_station_model,
    build_dataset,
    model_input,
    pack,
    start_weights,
    trained_size,
)

TAX = load_taxonomy()
ROOT = Path(__file__).resolve().parents[1]
ENGINEER = ConsoleUser("erin", "engineer")
GATE = GateConfig(min_hazard_recall=0.9, map_tolerance=0.02)


@pytest.fixture(autouse=True)
def _downloads_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads the views write to fresh temporary folders land in the test's folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


# ------------------------------------------------------------------------------------------------ jobs


def test_a_thread_job_reports_progress_and_its_result() -> None:
    jobs, go = JobManager(), threading.Event()

    def work(ctx: JobContext) -> JsonValue:
        ctx.report(0.25, "a quarter", "first")
        ctx.log("hello")
        go.wait(10)
        ctx.report(0.75, "three quarters", "second")
        return {"answer": 42}

    started = jobs.start("retrain", "erin", work)
    assert started.state is JobState.RUNNING
    while jobs.status(started.job_id).progress < 0.25:
        threading.Event().wait(0.01)
    running = jobs.status(started.job_id)
    assert (running.stage, running.message, running.log) == ("first", "a quarter", ["hello"])
    with pytest.raises(JobBusyError, match="already running"):
        jobs.start("retrain", "ada", work)
    go.set()
    done = jobs.wait(started.job_id, 10)
    assert (done.state, done.progress, done.result, done.error) == \
        (JobState.SUCCEEDED, 1.0, {"answer": 42}, None)
    assert done.stages == ["first", "second", "done"]
    assert jobs.latest("retrain") == done


@pytest.mark.parametrize(("exc", "state", "message"), [
    (JobFailedError("no data"), JobState.FAILED, "no data"),
    (ValueError("bad value"), JobState.FAILED, "bad value"), (KeyError("k"), JobState.FAILED, "'k'")])
def test_a_failing_job_keeps_its_error(exc: Exception, state: JobState, message: str) -> None:
    def work(ctx: JobContext) -> None:
        ctx.report(0.5, "half way")
        raise exc

    jobs = JobManager()
    done = jobs.wait(jobs.start("retrain", "erin", work).job_id, 10)
    assert (done.state, done.error, done.progress) == (state, message, 0.5)


def child(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text("import sys\nfrom ui.jobs import emit\n" + textwrap.dedent(body))
    return [sys.executable, str(script)]


ROOT = Path(__file__).resolve().parents[1]
CHILDREN: list[tuple[str, JobState, str | None, object]] = [
    ("""emit(progress=0.3, message="dataset", stage="dataset")\nprint("a log line")\n"""
     """emit(result={"v": "x1"})\n""", JobState.SUCCEEDED, None, {"v": "x1"}),
    ("""emit(progress=0.4, message="train")\nemit(error="RetrainError: no corrections")\nsys.exit(1)\n""",
     JobState.FAILED, "exit code 1: RetrainError: no corrections", None),
    ("""print("something broke here")\nraise SystemExit(3)\n""", JobState.FAILED,
     "exit code 3: something broke here", None),
]


@pytest.mark.parametrize(("body", "state", "error", "result"), CHILDREN)
def test_a_child_process_job_follows_the_childs_events(tmp_path: Path, body: str, state: JobState,
                                                       error: str | None, result: object) -> None:
    jobs = JobManager()
    work = process_runner(child(tmp_path, body), cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    done = jobs.wait(jobs.start("retrain", "erin", work).job_id, 60)
    assert (done.state, done.error, done.result) == (state, error, result)
    assert done.progress == (1.0 if state is JobState.SUCCEEDED else 0.4 if "0.4" in body else 0.0)


def test_cancel_stops_the_child(tmp_path: Path) -> None:
    jobs = JobManager()
    work = process_runner(child(tmp_path, """emit(progress=0.1)\nimport time\ntime.sleep(60)\n"""), cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT)})
    job = jobs.start("retrain", "erin", work)
    while jobs.status(job.job_id).progress < 0.1:
        threading.Event().wait(0.02)
    jobs.cancel(job.job_id)
    done = jobs.wait(job.job_id, 30)
    assert (done.state, done.error) == (JobState.CANCELLED, "cancelled")


def test_emit_writes_one_marked_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    emit(progress=0.5, message="x")
    assert capsys.readouterr().out == '@sortloop {"progress": 0.5, "message": "x"}\n'


# --------------------------------------------------------------------------------------- the dataset


def crop_sample(tmp_path: Path, name: str, size: tuple[int, int], cls: str | None) -> Sample:
    w, h = size
    img = np.full((h, w, 3), 90, np.uint8)
    cv2.rectangle(img, (5, 5), (w - 6, h - 6), (0, 200, 255), -1)
    path = tmp_path / f"{name}.jpg"
    cv2.imwrite(str(path), img)
    boxes = [] if cls is None else [Box((5.0, 5.0, w - 5.0, h - 5.0), cls)]
    return Sample(path, w, h, boxes, source="console", group=name)


def test_pack_puts_crops_at_their_scale_on_frame_sized_sheets(tmp_path: Path) -> None:
    crops = [crop_sample(tmp_path, f"c{k}", (120 + 10 * k, 150), "plastic") for k in range(9)]
    crops.append(crop_sample(tmp_path, "bg", (100, 80), None))
    frame = crop_sample(tmp_path, "frame", (600, 400), "can")
    out = pack([*crops, frame], (640, 360), tmp_path / "sheets", "fix")
    assert out[0] is frame  # large images are kept as they are
    sheets = out[1:]
    assert all((s.width, s.height) == (640, 360) for s in sheets)
    assert sum(len(s.boxes) for s in sheets) == 9 and len(sheets) >= 2
    for s in sheets:
        img = cv2.imread(str(s.image_path))
        assert img is not None and img.shape == (360, 640, 3)
        for b in s.boxes:
            x1, y1, x2, y2 = (int(v) for v in b.xyxy)
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360
            assert x2 - x1 in {110 + 10 * k for k in range(9)}  # the crop's box, not rescaled
            assert img[(y1 + y2) // 2, (x1 + x2) // 2].tolist() == pytest.approx([0, 200, 255], abs=12)
        for p, q in itertools.combinations([b.xyxy for b in s.boxes], 2):  # no two crops overlap
            assert p[2] <= q[0] or q[2] <= p[0] or p[3] <= q[1] or q[3] <= p[1]


def test_retrain_dataset_mixes_corrections_and_replay(tmp_path: Path) -> None:
    from training.formats import write_yolo

    corr = [crop_sample(tmp_path, f"c{k}", (100, 70), "plastic" if k % 3 else "glass") for k in range(20)]
    write_yolo(corr, tmp_path / "corrections", TAX.names, copy_images=True)
    replay = tmp_path / "base"
    for split in ("train", "val"):
        render_dataset(replay / split, 6, seed=3, width=160, height=96, taxonomy=TAX, classes=["can"])
    (replay / "data.yaml").write_text("path: .\ntrain: train/images\nval: val/images\nnames: "
                                      + str(list(TAX.names)) + "\n")
    spec = RetrainSpec(version="v2", by="erin", corrections=str(tmp_path / "corrections"),
                       work_dir=str(tmp_path / "job"), registry=str(tmp_path / "reg"),
                       taxonomy="datasets/taxonomy.yaml", replay_data=str(replay / "data.yaml"), replay_n=4,
                       canvas=(320, 180), val_fraction=0.25, repeats=3)
    info = build_dataset(spec, TAX)
    train = read_yolo(info.data_yaml.parent, split="train")
    val = read_yolo(info.data_yaml.parent, split="val")
    assert info.correction_images == 20 and info.replay_images == 4
    assert sum(1 for s in train if "replay" in s.image_path.name) == 4
    assert info.fixes_yaml is not None
    held = sum(len(s.boxes) for s in read_yolo(info.fixes_yaml.parent, split="val"))
    assert 0 < held < 20
    trained = [b for s in train if "replay" not in s.image_path.name for b in s.boxes]
    assert len(trained) == 3 * (20 - held) and {b.class_name for b in trained} == {"plastic", "glass"}
    assert sum(len(s.boxes) for s in val if "replay" not in s.image_path.name) == held
    assert info.val_images == len(val)


@pytest.mark.parametrize(("imgsz", "shape"), [
    ("[320, 576]", (320, 576)), ("[640, 640]", (640, 640)), ("320", (320, 320)), (None, None), ("[]", None),
    ("not a size", None)])
def test_a_candidate_keeps_the_current_models_input_shape(tmp_path: Path, imgsz: str | None,
                                                         shape: tuple[int, int] | None) -> None:
    """The retraining exports at the current model's whole input: a 16:9 belt model stays 320 x 576."""
    assert model_input(onnx_with(tmp_path, "imgsz", imgsz)) == shape


@pytest.mark.parametrize(("value", "size"), [("320", 320), ("640", 640), (None, None), ("0", None), ("-320", None),
                                             ("[320, 576]", None), ("", None)])
def test_a_candidate_trains_at_the_size_the_current_model_was_trained_at(tmp_path: Path, value: str | None,
                                                                        size: int | None) -> None:
    """The default model runs at 256 x 448 but was trained at 320: its export records 320 and a retraining
    trains at that size (without the record, at the input's height)."""
    assert trained_size(onnx_with(tmp_path, "sortloop_train_imgsz", value)) == size


def onnx_with(tmp_path: Path, key: str, value: str | None) -> Path:
    """A real ONNX file with one more metadata entry (none for None)."""
    path = onnx_file(tmp_path / "m.onnx", "v1")
    if value is not None:
        model = onnx.load(str(path))
        model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(path))
    return path


def test_retrain_adopts_the_station_model_when_the_registry_has_none(tmp_path: Path) -> None:
    """A fresh station runs the shipped default model with an empty registry: the first retraining registers
    that model (evaluated on the retraining's data) as the current version with its checkpoint, so the
    candidate is fine-tuned from it and the gate compares against it."""
    shipped = tmp_path / "models" / "sortloop-default.onnx"  # the shipped model, its checkpoint beside it
    shipped.parent.mkdir()
    shutil.copyfile(ROOT / "models" / "sortloop-default.onnx", shipped)
    shipped.with_suffix(".pt").write_bytes(b"checkpoint")
    render_dataset(tmp_path / "data" / "val", 4, seed=5, width=640, height=352, taxonomy=TAX,
                   classes=["battery", "can", "plastic"])
    data = tmp_path / "data" / "data.yaml"
    data.write_text(f"path: .\ntrain: val/images\nval: val/images\nnames: {list(TAX.names)}\n")
    info = DatasetInfo(data, 4, 4, 1, 0, None)

    def spec(model: Path) -> RetrainSpec:
        return RetrainSpec(version="v2", by="erin", corrections=str(tmp_path / "corr"), work_dir=str(tmp_path),
                           registry=str(tmp_path / "reg"), taxonomy="datasets/taxonomy.yaml",
                           station_model=str(model), conf=0.25)

    assert adopt_station_model(spec(tmp_path / "absent.onnx"), info, TAX) is None
    assert Registry(tmp_path / "reg").pointer() is None
    adopted = adopt_station_model(spec(shipped), info, TAX)
    assert adopted is not None and adopted.checkpoint == "its checkpoint"
    mv = adopted.version
    registry = Registry(tmp_path / "reg")
    current = registry.current()
    assert current is not None and current.version == mv.version == "sortloop-default-5"
    assert current.report.data == str(data) and current.report.images == 4
    assert (mv.folder / "model.pt").read_bytes() == b"checkpoint"
    assert registry.audit()[-1].action == "adopt"
    assert adopt_station_model(spec(shipped), info, TAX) is None  # once current, never again


def test_retrain_recovers_a_checkpoint_when_none_lies_beside_the_station_model(tmp_path: Path) -> None:
    """A fresh clone has only the ONNX file: the adopted version gets a checkpoint rebuilt from its weights
    (calibrated on the retraining's training images), so the candidate is still fine-tuned from that model."""
    shipped = tmp_path / "models" / "sortloop-default.onnx"
    shipped.parent.mkdir()
    shutil.copyfile(ROOT / "models" / "sortloop-default.onnx", shipped)
    render_dataset(tmp_path / "data" / "train", 6, seed=7, width=1280, height=720, taxonomy=TAX)
    data = tmp_path / "data" / "data.yaml"
    data.write_text(f"path: .\ntrain: train/images\nval: train/images\nnames: {list(TAX.names)}\n")
    spec = RetrainSpec(version="v2", by="erin", corrections=str(tmp_path / "corr"), work_dir=str(tmp_path / "work"),
                       registry=str(tmp_path / "reg"), taxonomy="datasets/taxonomy.yaml",
                       station_model=str(shipped), conf=0.25)
    adopted = adopt_station_model(spec, DatasetInfo(data, 6, 6, 1, 0, None), TAX)
    assert adopted is not None and adopted.checkpoint == "a checkpoint recovered from its ONNX weights"
    mv = adopted.version
    assert (mv.folder / "model.pt").is_file()
    import torch

    ckpt = torch.load(mv.folder / "model.pt", map_location="cpu", weights_only=False)
    assert ckpt["sortloop_recovered_from"] | {"train_mode_gap": None} == {
        "onnx": "sortloop-default.onnx", "version": "sortloop-default-5", "calibration_images": 6,
        "train_mode_gap": None}  # every training image calibrates; none is left to measure the gap on
    assert start_weights(spec, tmp_path / "base.pt") == mv.folder / "model.pt"


# -------------------------------------------------------------------------------------- engineer desk


def onnx_file(path: Path, version: str) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
    model.metadata_props.add(key="sortloop_version", value=version)
    onnx.save(model, str(path))
    return path


def report(recall: float | None, map50_95: float, digest: str = "val-1", plastic: float = 0.3) -> EvalReport:
    return EvalReport(
        model="m.onnx", model_version="v", data="data.yaml", data_digest=digest, split="val",
        taxonomy_digest="t",
        images=10, items=20, conf=0.25, iou=0.5, map50=map50_95 + 0.2, map50_95=map50_95,
        per_class=[ClassAP("battery", 5, 0.5, 0.3), ClassAP("plastic", 6, plastic, plastic / 2),
                   ClassAP("can", 0, None, None)],
        stream_rows=["electronics", "plastic", "spurious"], stream_cols=["electronics", "plastic", "missed"],
        stream_confusion=[[4, 0, 1], [1, 2, 3], [0, 1, 0]], hazard_items=5, hazard_predictions=5,
        hazard_recall=recall, hazard_precision=0.9, ece=0.05,
        reliability=[ReliabilityBin(0.9, 1.0, 4, 0.95, 1.0)], images_per_s=100.0)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[EngineerDesk]:
    store = Store.open(f"sqlite:///{tmp_path / 'station.db'}", tmp_path / "evidence")
    cfg = StationConfig.model_validate({"model": {"registry": str(tmp_path / "registry")}})
    yield EngineerDesk(ConsoleContext(cfg, TAX, store), gate=GATE, work_dir=tmp_path / "console")
    store.close()


def register(desk: EngineerDesk, version: str, rep: EvalReport, tmp_path: Path) -> None:
    mv = Registry(desk.ctx.registry).add(onnx_file(tmp_path / f"{version}.onnx", version), "# card", rep,
                                         version=version, by="test")
    Comparison(version, None, rep, None).save(mv.folder / "comparison.json")


def record_item(store: Store, cls: str) -> str:
    crop = np.full((60, 80, 3), 120, np.uint8)
    d = Decision(new_id(), "station-1", 1, 5, 1.0, None, cls, TAX.stream_of(cls), TAX.hazard_of(cls), 0.9,
                 {cls: 0.9}, 8, Reason.OK, (100.0, 50.0, 164.0, 98.0), "m-1", crop=crop)
    store.record(d, Actuation(new_id(), d.item_id, "residual", 5, 2.0, None, d.decided_at_wall + 2))
    return d.item_id


ACTIONS: list[tuple[str, Callable[[EngineerDesk, object], object]]] = [
    ("active_model", lambda d, u: d.active_model(u)), ("counts", lambda d, u: d.correction_counts(u)),
    ("csv", lambda d, u: d.corrections_csv(u)), ("zip", lambda d, u: d.corrections_zip(u)),
    ("retrain", lambda d, u: d.start_retrain(u)), ("job", lambda d, u: d.job(u)),
    ("cancel", lambda d, u: d.cancel(u)), ("candidates", lambda d, u: d.candidates(u)),
    ("comparison", lambda d, u: d.comparison(u, "v1")), ("gate", lambda d, u: d.gate_preview(u, "v1")),
    ("promote", lambda d, u: d.promote(u, "v1")), ("rollback", lambda d, u: d.rollback(u))]


@pytest.mark.parametrize(("user", "error"), [
    (None, NotLoggedInError), (ConsoleUser("olga", "operator"), ForbiddenError),
    (ConsoleUser("mia", "manager"), ForbiddenError), (("mia", "manager"), ForbiddenError),
    ({"username": "x", "role": "visitor"}, ForbiddenError)])
@pytest.mark.parametrize(("name", "action"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_engineer_actions_refuse_everyone_but_engineers(
        desk: EngineerDesk, tmp_path: Path, user: object, error: type[AuthError], name: str,
        action: Callable[[EngineerDesk, object], object]) -> None:
    register(desk, "v1", report(0.95, 0.4), tmp_path)
    with pytest.raises(error):
        action(desk, user)
    assert Registry(desk.ctx.registry).pointer() is None and desk.jobs.latest("retrain") is None


def test_corrections_per_class_and_their_csv(desk: EngineerDesk) -> None:
    console = desk._console()
    items = {cls: record_item(desk.ctx.store, cls) for cls in ("glass", "can", "cable", "paper")}
    submit(console, ENGINEER, CorrectionIn(kind=Kind.RECLASS, item_id=items["glass"], class_name="plastic"))
    submit(console, ENGINEER, CorrectionIn(kind=Kind.RECLASS, item_id=items["can"], class_name="plastic"))
    submit(console, ENGINEER, CorrectionIn(kind=Kind.NOT_ITEM, item_id=items["cable"]))
    submit(console, ENGINEER, CorrectionIn(kind=Kind.CONFIRM, item_id=items["paper"]))
    rows = {r.class_name: (r.corrected_to, r.corrected_from, r.not_item, r.missed, r.confirmed)
            for r in desk.correction_counts(ENGINEER)}
    assert rows == {"plastic": (2, 0, 0, 0, 0), "glass": (0, 1, 0, 0, 0), "can": (0, 1, 0, 0, 0),
                    "cable": (0, 0, 1, 0, 0), "paper": (0, 0, 0, 0, 1)}
    lines = desk.corrections_csv(ENGINEER).read_text().splitlines()
    assert lines[0] == "class,corrected to,corrected from,not an item,missed,confirmed"
    assert sorted(lines[1:]) == sorted(f"{k},{','.join(map(str, v))}" for k, v in rows.items())


def test_retrain_needs_corrections_and_reports_a_failing_child(desk: EngineerDesk, tmp_path: Path) -> None:
    with pytest.raises(RetrainError, match="no corrections"):
        desk.start_retrain(ENGINEER)
    item = record_item(desk.ctx.store, "glass")
    submit(desk._console(), ENGINEER, CorrectionIn(kind=Kind.RECLASS, item_id=item, class_name="plastic"))
    status = desk.start_retrain(ENGINEER, RetrainOptions(replay_data=str(tmp_path / "absent" / "data.yaml")))
    assert status.owner == "erin"
    done = desk.jobs.wait(status.job_id, 120)
    assert done.state is JobState.FAILED and "RetrainError" in (done.error or "")
    assert "absent" in (done.error or "") and done.progress >= 0.01 and done.stages == ["dataset"]
    assert (tmp_path / "console" / "retrain").is_dir()
    spec = RetrainSpec.model_validate_json(next((tmp_path / "console" / "retrain").glob("*/spec.json")).read_text())
    assert spec.station_model == str(ROOT / "models" / "sortloop-default.onnx")  # adopted when none is current
    assert desk.job(ENGINEER) == done


def test_promote_goes_through_the_gate_and_rollback_returns(desk: EngineerDesk, tmp_path: Path) -> None:
    register(desk, "v1", report(0.95, 0.40), tmp_path)
    register(desk, "v2", report(0.80, 0.55), tmp_path)
    register(desk, "v3", report(0.96, 0.41, plastic=0.6), tmp_path)
    assert desk.candidates(ENGINEER) == ["v3", "v2", "v1"]
    assert desk.promote(ENGINEER, "v1").accepted
    assert any("below the minimum" in r for r in desk.gate_preview(ENGINEER, "v2"))
    with pytest.raises(GateRefused, match=r"hazard recall 0\.800"):
        desk.promote(ENGINEER, "v2")
    assert desk.gate_preview(ENGINEER, "v3") == []
    assert desk.promote(ENGINEER, "v3").current == "v1"
    active = desk.active_model(ENGINEER)
    assert (active.promoted, active.promoted_by, active.history, active.station) == \
        ("v3", "erin", ["v1"], None)
    assert desk.rollback(ENGINEER) == "v1"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        desk.rollback(ENGINEER)
    audit = [(a.action, a.version, a.outcome, a.by) for a in Registry(desk.ctx.registry).audit()][3:]
    assert audit == [("promote", "v1", "accepted", "erin"), ("promote", "v2", "refused", "erin"),
                     ("promote", "v3", "accepted", "erin"), ("rollback", "v1", "ok", "erin")]


def test_comparison_tables_show_current_beside_candidate() -> None:
    c = Comparison("v2", "v1", report(0.96, 0.45, plastic=0.7), report(0.95, 0.40, plastic=0.2),
                   report(None, 0.5, "fix", plastic=0.8), report(None, 0.1, "fix", plastic=0.1))
    summary = {row[0]: row[1:] for row in summary_rows(c)}
    assert summary["mAP50-95"] == ["0.400", "0.450", "+0.050"]
    assert summary["hazard recall"] == ["0.950", "0.960", "+0.010"]
    assert summary["corrections mAP50-95"] == ["0.100", "0.500", "+0.400"]
    assert class_rows(c) == [["battery", "0.500", "0.500", "0.500", "0.500"],
                             ["plastic", "0.200", "0.700", "0.100", "0.800"]]
    assert stream_rows(c) == [["electronics", "0.800", "0.800"], ["plastic", "0.333", "0.333"]]


def test_the_tabs_build_inside_gradio_blocks(desk: EngineerDesk) -> None:
    import gradio as gr

    from ui.engineer import build_engineer_tab
    from ui.reports import build_reports_tab

    with gr.Blocks() as demo:
        user = gr.State(ENGINEER)
        with gr.Tab("Reports"):
            build_reports_tab(desk.ctx, user)
        with gr.Tab("Engineer"):
            build_engineer_tab(desk.ctx, user)
    labels = {getattr(b, "label", None) for b in demo.blocks.values()}
    assert {"Throughput", "Candidate", "Downloads (PDF, CSV, JSON)", "Log (latest lines)"} <= labels
