"""Data → model end to end on the CPU, tiny: simulator images → train (interrupted, resumed) → export with parity
check and INT8 → evaluate → registry add → promote → a worse candidate refused → rollback; plus the CLI.

Nothing may reach the network meanwhile: an audit hook records every socket lookup or connection.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from onnx import numpy_helper
from shared_data import SHARED, needs_shared
from typer.testing import CliRunner

from station.taxonomy import load_taxonomy
from training.evaluate import EvalReport, evaluate, save_report
from training.export import ExportConfig, ExportResult, export, write_metadata
from training.registry import GateConfig, GateRefused, Registry, model_card
from training.train import EpochStats, TrainConfig, TrainError, TrainResult, train

ROOT = Path(__file__).resolve().parent.parent
BASE = SHARED / "weights" / "yolo11n-coco.pt"
IMGSZ = 128
CLASSES = ["battery", "phone", "plastic", "can", "textile"]

pytestmark = needs_shared(BASE)

# ------------------------------------------------------------------------------------ network watch

_NET: list[tuple[str, str]] = []
_WATCHING = [False]
_LOCAL = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::")


def _audit(event: str, args: tuple[object, ...]) -> None:
    if not _WATCHING[0] or event not in ("socket.getaddrinfo", "socket.connect"):
        return
    target = args[0] if event == "socket.getaddrinfo" else args[1]
    host = target[0] if isinstance(target, tuple) else target
    if isinstance(host, str | bytes) and str(host) not in _LOCAL and not str(host).startswith("/"):
        _NET.append((event, repr(target)))


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def no_network() -> Iterator[list[tuple[str, str]]]:
    _WATCHING[0] = True
    try:
        yield _NET
    finally:
        _WATCHING[0] = False


# ------------------------------------------------------------------------------------------- stages


@dataclass
class Run:
    data: Path
    cfg: TrainConfig
    result: TrainResult
    lines: list[str]


class _Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from station.simulator import render_dataset

    out = tmp_path_factory.mktemp("sim")
    render_dataset(out, 16, seed=0, width=160, height=160, classes=CLASSES, items_per_image=(1, 3))
    return out / "data.yaml"


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory, no_network: list[tuple[str, str]]) -> Run:
    """Two epochs, interrupted after the first and resumed from last.pt."""
    cfg = TrainConfig(data=str(data), base_weights=str(BASE), epochs=2, imgsz=IMGSZ, batch=8, workers=0,
                      runs_dir=str(tmp_path_factory.mktemp("runs")), name="tiny", mosaic=0.0, close_mosaic=0,
                      optimizer="AdamW", lr0=0.002, patience=0, seed=1)
    lines: list[str] = []

    def stop_after_first(stats: EpochStats) -> None:
        lines.append(stats.line())
        if stats.epoch == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(cfg, progress=stop_after_first)
    resumed = cfg.model_copy(update={"resume": True})
    result = train(resumed, progress=lambda s: lines.append(s.line()))
    return Run(data, resumed, result, lines)


@pytest.fixture(scope="module")
def exported(run: Run) -> ExportResult:
    images = sorted((run.data.parent / "images").glob("*.jpg"))[:8]
    best = run.result.best_epoch
    assert best is not None
    return export(run.result.best, run.cfg.run_dir / "tiny.onnx", imgsz=IMGSZ, taxonomy=load_taxonomy(),
                  manifest_digest="sim-16", metrics=best.metrics, version="tiny-1", int8=True,
                  parity_images=images, eval_data=run.data, cfg=ExportConfig(parity_conf=0.01))


@pytest.fixture(scope="module")
def report(exported: ExportResult, run: Run) -> EvalReport:
    return evaluate(exported.onnx, run.data, split="val", conf=0.25)


# -------------------------------------------------------------------------------------------- tests


def test_training_resumes_and_writes_its_run_folder(run: Run) -> None:
    folder = run.cfg.run_dir
    assert folder == Path(run.cfg.runs_dir) / "tiny"
    assert [ln.split()[1] for ln in run.lines] == ["1/2", "2/2"]
    assert "mAP50" in run.lines[0] and "ETA" in run.lines[0]
    for name in ("results.csv", "train_summary.json", "weights/best.pt", "weights/last.pt", "results.png"):
        assert (folder / name).is_file(), name
    assert len((folder / "results.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    summary = json.loads((folder / "train_summary.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert summary["config"]["imgsz"] == IMGSZ and summary["best"]["metrics"].keys() >= {"map50", "map50_95"}
    assert all(e["seconds"] > 0 for e in summary["epochs"])


def test_a_finished_run_is_not_overwritten(run: Run) -> None:
    with pytest.raises(TrainError, match="already holds a run"):
        train(run.cfg.model_copy(update={"resume": False}))


@pytest.mark.parametrize(
    ("update", "match"),
    [
        ({"base_weights": "/nonexistent/w.pt"}, "base weights /nonexistent/w.pt not found"),
        ({"resume": True}, "cannot resume"),
        ({"data": "/nonexistent/data.yaml"}, "dataset /nonexistent/data.yaml not found"),
        ({"data": str(SHARED / "datasets/trashnetpp/data.yaml")}, "lies in the shared data"),
        ({"data": "OTHER_NAMES"}, r"classes \['Cable', 'E-waste'"),
    ],
)
def test_training_errors_name_the_fix(tmp_path: Path, data: Path, update: dict[str, object], match: str) -> None:
    if update.get("data") == "OTHER_NAMES":  # a dataset of our own whose class names are not the taxonomy's
        other = tmp_path / "other.yaml"
        other.write_text(f"path: {data.parent}\ntrain: images\nval: images\nnames: ['Cable', 'E-waste']\n")
        update = {"data": str(other)}
    cfg = TrainConfig(data=str(data), base_weights=str(BASE), runs_dir=str(tmp_path / "runs"), name="x")
    with pytest.raises(TrainError, match=match):
        train(cfg.model_copy(update=update))


@pytest.mark.parity
def test_export_passes_parity_and_reports_int8(exported: ExportResult) -> None:
    assert exported.parity.boxes > 0
    assert exported.parity.max_box_px <= 1.0 and exported.parity.max_score <= 1e-3
    assert exported.metadata["sortloop_version"] == "tiny-1"
    assert exported.metadata["sortloop_train_imgsz"] == str(IMGSZ)  # a retraining trains at it
    assert exported.int8 is not None and exported.int8.is_file()
    assert exported.int8_map50_delta is not None and -1.0 <= exported.int8_map50_delta <= 1.0
    assert exported.reports["fp32"].map50 - exported.reports["int8"].map50 == pytest.approx(-exported.int8_map50_delta)


def test_evaluation_report(report: EvalReport, tmp_path: Path) -> None:
    assert report.images == 16 and report.items > 16
    assert report.model_version == "tiny-1"
    assert report.map50_95 > 0  # two epochs from COCO weights do learn something on these scenes
    matched = np.array(report.stream_confusion)
    assert matched[:-1].sum() == report.items  # every item is matched or missed exactly once
    assert report.hazard_items > 0
    assert sum(b.count for b in report.reliability) == matched[:, :-1].sum()
    out = save_report(report, tmp_path / "eval")
    for name in ("report.json", "report.md", "confusion_streams.png", "reliability.png", "per_class_ap.png"):
        assert (out / name).stat().st_size > 0
    assert EvalReport.load(out / "report.json") == report
    assert "| battery |" in report.to_markdown()


def worse_copy(src: Path, dst: Path, version: str) -> Path:
    """The same model with every class logit pushed far down: it finds nothing."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        if init.name.startswith("model.23.cv3.") and init.name.endswith(".2.bias"):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) - 20.0, init.name))
    onnx.save(model, str(dst))
    write_metadata(dst, {"sortloop_version": version})
    return dst


def same_copy(src: Path, dst: Path, version: str) -> Path:
    shutil.copyfile(src, dst)
    write_metadata(dst, {"sortloop_version": version})
    return dst


def test_registry_gate_and_rollback(exported: ExportResult, report: EvalReport, run: Run, tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry")
    gate = GateConfig(min_hazard_recall=0.0, map_tolerance=0.0)
    reg.add(exported.onnx, model_card(exported.onnx, report), report, by="ci")
    assert reg.promote("tiny-1", gate, by="ci").accepted

    worse = worse_copy(exported.onnx, tmp_path / "worse.onnx", "tiny-2")
    worse_report = evaluate(worse, run.data, split="val", conf=0.25)
    assert worse_report.map50_95 == 0.0 and worse_report.data_digest == report.data_digest
    reg.add(worse, model_card(worse, worse_report), worse_report, by="ci")
    with pytest.raises(GateRefused, match="mAP50-95"):
        reg.promote("tiny-2", gate, by="ci")

    same = same_copy(exported.onnx, tmp_path / "same.onnx", "tiny-3")
    same_report = evaluate(same, run.data, split="val", conf=0.25)
    reg.add(same, model_card(same, same_report), same_report, by="ci")
    assert reg.promote("tiny-3", gate, by="ci").current == "tiny-1"
    assert reg.rollback(by="ci").version == "tiny-1"
    current = reg.current()
    assert current is not None and current.version == "tiny-1"
    assert "# Model card: tiny-1" in current.card.read_text()
    assert [(a.action, a.version, a.outcome) for a in reg.audit() if a.action != "add"] == [
        ("promote", "tiny-1", "accepted"), ("promote", "tiny-2", "refused"), ("promote", "tiny-3", "accepted"),
        ("rollback", "tiny-1", "ok")]


def test_the_network_watch_sees_a_lookup(no_network: list[tuple[str, str]]) -> None:
    import socket

    before = len(no_network)
    with pytest.raises(OSError):
        socket.getaddrinfo("sortloop.invalid", 443)
    assert no_network[before:] == [("socket.getaddrinfo", "'sortloop.invalid'")]
    del no_network[before:]


def test_nothing_reached_the_network(exported: ExportResult, report: EvalReport,
                                     no_network: list[tuple[str, str]]) -> None:
    assert no_network == []


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    from training.cli import register

    app = typer.Typer()
    register(app)
    return app


def test_cli_eval_json_and_registry(cli: typer.Typer, exported: ExportResult, report: EvalReport, run: Run,
                                    tmp_path: Path) -> None:
    runner = CliRunner()
    reg = str(tmp_path / "registry")
    res = runner.invoke(cli, ["eval", "--model", str(exported.onnx), "--data", str(run.data), "--split", "val",
                              "--conf", "0.25", "--json", "--register", "--registry", reg, "--by", "ci"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed["map50_95"] == pytest.approx(report.map50_95)
    assert printed["data_digest"] == report.data_digest
    res = runner.invoke(cli, ["models", "--registry", reg, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout.splitlines()[0])["version"] == "tiny-1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--base-weights", "/nonexistent/w.pt", "--name", "cli-x"], "base weights /nonexistent/w.pt"),
        (["train", "--epochs", "0", "--name", "cli-x"], "--epochs"),
        (["eval", "--model", "/nonexistent/m.onnx", "--data", "/nonexistent"], "not found"),
        (["promote", "nope"], "'nope' is not in"),
        (["rollback"], "nothing to roll back"),
        (["export", "--weights", "/nonexistent/best.pt", "--data", "DATA"], "checkpoint /nonexistent/best.pt"),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(cli: typer.Typer, run: Run, tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    args = [a.replace("DATA", str(run.data)) for a in args]
    if args[0] in {"promote", "rollback"}:
        args += ["--registry", str(tmp_path / "registry")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


# ----------------------------------------------------------------------------------- evaluation parts


@pytest.mark.parametrize(
    ("gt", "pred", "pairs"),
    [
        ([[0, 0, 10, 10]], [[0, 0, 10, 10]], [(0, 0)]),
        ([[0, 0, 10, 10]], [[5, 0, 15, 10]], []),                                    # IoU 1/3 < 0.5
        ([[0, 0, 10, 10]], [[0, 0, 10, 9], [0, 0, 10, 10]], [(0, 1)]),               # best IoU wins, once
        ([[0, 0, 10, 10], [20, 0, 30, 10]], [[21, 0, 30, 10], [0, 0, 10, 10]], [(1, 0), (0, 1)]),
        ([], [[0, 0, 10, 10]], []),
    ],
)
def test_match_items(gt: list[list[float]], pred: list[list[float]], pairs: list[tuple[int, int]]) -> None:
    from training.evaluate import match_items

    got = match_items(np.array(gt, np.float32).reshape(-1, 4), np.array(pred, np.float32).reshape(-1, 4), 0.5)
    assert sorted(got) == sorted(pairs)


@pytest.mark.parametrize(
    ("conf", "correct", "ece"),
    [
        ([0.95, 0.95], [True, True], 0.05),
        ([0.95, 0.95], [False, False], 0.95),
        ([0.55, 0.55, 0.95, 0.95], [True, False, True, True], 0.5 * 0.05 + 0.5 * 0.05),
        ([], [], 0.0),
    ],
)
def test_reliability(conf: list[float], correct: list[bool], ece: float) -> None:
    from training.evaluate import reliability

    got, bins = reliability(conf, correct)
    assert got == pytest.approx(ece)
    assert sum(b.count for b in bins) == len(conf) and len(bins) == 10


def _list_file(data: Path, tmp: Path) -> Path:
    images = sorted((data.parent / "images").glob("*.jpg"))[:5]
    out = tmp / "list.txt"
    out.write_text("\n".join(str(p) for p in images))
    return out


@pytest.mark.parametrize(
    ("make", "split", "count", "error"),
    [
        (lambda d, t: d, "val", 16, None),
        (lambda d, t: d.parent, "val", 16, None),                       # folder holding data.yaml
        (lambda d, t: _list_file(d, t), "val", 5, None),                # .txt list of images
        (lambda d, t: d, "test", 0, "has no 'test' split"),
        (lambda d, t: t / "nothing", "val", 0, "not found"),
    ],
)
def test_resolve_data(data: Path, tmp_path: Path, make, split: str, count: int, error: str | None) -> None:
    from training.evaluate import EvalError, resolve_data

    target = make(data, tmp_path)
    if error:
        with pytest.raises(EvalError, match=error):
            resolve_data(target, split, load_taxonomy())
        return
    names, images = resolve_data(target, split, load_taxonomy())
    assert len(images) == count and names == load_taxonomy().names


@pytest.mark.parametrize(("time_hours", "expected"), [(None, None), (0.13, 0.13), (0, "error")])
def test_a_time_budget_reaches_ultralytics(time_hours: float | None, expected: object) -> None:
    """`--time-hours` (a GPU lease): Ultralytics fits the epochs to it; without it the epochs stand."""
    from pydantic import ValidationError

    from training.train import _train_args

    if expected == "error":
        with pytest.raises(ValidationError, match="time_hours"):
            TrainConfig(time_hours=time_hours)
        return
    args = _train_args(TrainConfig(time_hours=time_hours), Path("data.yaml"), plots=False)
    assert args.get("time") == expected and args["epochs"] == 50


@pytest.mark.parametrize(("warmup_epochs", "expected"), [(None, 3.0), (0, 0.0), (1.5, 1.5), (-1, "error")])
def test_the_warm_up_reaches_ultralytics(warmup_epochs: float | None, expected: object) -> None:
    """The warm-up length, 0 for none, reaches Ultralytics as given; a negative one is refused."""
    from pydantic import ValidationError

    from training.train import _train_args

    given = {} if warmup_epochs is None else {"warmup_epochs": warmup_epochs}
    if expected == "error":
        with pytest.raises(ValidationError, match="warmup_epochs"):
            TrainConfig(**given)
        return
    assert _train_args(TrainConfig(**given), Path("data.yaml"), plots=False)["warmup_epochs"] == expected
