"""Model registry: the promotion gate (table-driven), the atomic pointer, rollback and the audit trail."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from training.evaluate import ClassAP, EvalReport, ReliabilityBin
from training.registry import (
    ClassifierRegistry,
    GateConfig,
    GateRefused,
    Registry,
    RegistryError,
    atomic_write,
    judge,
    judge_pair,
)
from training.source_eval import SourceFigures, SourceReport


def make_report(hazard_recall: float | None = 0.95, map50_95: float = 0.40, data_digest: str = "val-1",
                created: str = "2025-01-01T00:00:00+00:00", conf: float = 0.25) -> EvalReport:
    """A report with just the numbers the gate reads (others plausible)."""
    return EvalReport(
        model="m.onnx", model_version="v", data="data.yaml", data_digest=data_digest, split="val",
        taxonomy_digest="t", images=10, items=20, conf=conf, iou=0.5, map50=map50_95 + 0.2, map50_95=map50_95,
        per_class=[ClassAP("battery", 5, 0.5, 0.3)], stream_rows=["electronics", "spurious"],
        stream_cols=["electronics", "missed"], stream_confusion=[[4, 1], [0, 0]], hazard_items=5,
        hazard_predictions=5, hazard_recall=hazard_recall, hazard_precision=0.9, ece=0.05,
        reliability=[ReliabilityBin(0.9, 1.0, 4, 0.95, 1.0)], images_per_s=100.0, created=created)


def make_onnx(path: Path, version: str | None) -> Path:
    """A real (tiny, identity) ONNX file carrying a sortloop_version."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
    if version:
        model.metadata_props.add(key="sortloop_version", value=version)
    onnx.save(model, str(path))
    return path


GATE = GateConfig(min_hazard_recall=0.9, map_tolerance=0.02)


@pytest.mark.parametrize(
    ("candidate", "current", "refused_because"),
    [
        (make_report(0.95, 0.40), None, None),                                          # first model, good
        (make_report(0.80, 0.50), None, "below the minimum"),                           # under the floor
        (make_report(None, 0.50), None, "no battery-hazard items"),                     # recall unknown
        (make_report(0.95, 0.40), make_report(0.95, 0.40), None),                       # equal
        (make_report(0.93, 0.60), make_report(0.95, 0.40), "lower than the current"),  # recall down, mAP up
        (make_report(0.95, 0.385), make_report(0.95, 0.40), None),                      # mAP drop within tolerance
        (make_report(0.95, 0.38), make_report(0.95, 0.40), None),                       # drop == tolerance
        (make_report(0.95, 0.37), make_report(0.95, 0.40), "below the current model's"),  # beyond tolerance
        (make_report(1.00, 0.30), make_report(0.95, 0.40), "mAP50-95"),                 # recall up, mAP down a lot
        (make_report(0.95, 0.40, "val-2"), make_report(0.95, 0.40), "other data"),      # not comparable
        (make_report(0.95, 0.40, conf=0.1), make_report(0.90, 0.40), "another operating point"),  # nor this
        (replace(make_report(0.95, 0.40), hazard_doubt=0.15), make_report(0.90, 0.40), "another operating point"),
    ],
)
def test_gate(candidate: EvalReport, current: EvalReport | None, refused_because: str | None) -> None:
    reasons = judge(candidate, current, GATE)
    if refused_because is None:
        assert reasons == []
    else:
        assert any(refused_because in r for r in reasons), reasons


def test_gate_puts_hazard_recall_first() -> None:
    reasons = judge(make_report(0.5, 0.1), make_report(0.95, 0.4), GATE)
    assert "hazard recall" in reasons[0]
    assert len(reasons) == 3


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


def add(reg: Registry, tmp_path: Path, version: str, report: EvalReport) -> None:
    reg.add(make_onnx(tmp_path / f"{version}.onnx", version), f"# {version}\n", report, by="tester")


def test_add_promote_refuse_rollback(registry: Registry, tmp_path: Path) -> None:
    add(registry, tmp_path, "v1", make_report(0.95, 0.40, created="2025-01-01T00:00:00+00:00"))
    add(registry, tmp_path, "v2", make_report(0.96, 0.41, created="2025-01-02T00:00:00+00:00"))
    add(registry, tmp_path, "v3", make_report(0.90, 0.45, created="2025-01-03T00:00:00+00:00"))
    assert [v.version for v in registry.versions()] == ["v1", "v2", "v3"]
    assert registry.current() is None

    assert registry.promote("v1", GATE, by="alice").accepted
    assert registry.promote("v2", GATE, by="alice").current == "v1"
    with pytest.raises(GateRefused, match="lower than the current") as refused:
        registry.promote("v3", GATE, by="bob")
    assert refused.value.decision.current == "v2"
    current = registry.current()
    assert current is not None and current.version == "v2"

    assert registry.rollback(by="carol").version == "v1"
    pointer = json.loads((registry.root / "current.json").read_text())
    assert pointer["version"] == "v1" and (registry.root / pointer["path"]).is_file()
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback(by="carol")

    audit = registry.audit()
    assert [(a.action, a.version, a.outcome) for a in audit[3:]] == [
        ("promote", "v1", "accepted"), ("promote", "v2", "accepted"), ("promote", "v3", "refused"),
        ("rollback", "v1", "ok")]
    assert audit[5].by == "bob" and "lower than the current" in audit[5].reasons[0]
    assert audit[5].metrics["hazard_recall"] == pytest.approx(0.90)


def test_version_folder_holds_model_card_and_eval(registry: Registry, tmp_path: Path) -> None:
    report = make_report()
    add(registry, tmp_path, "v1", report)
    mv = registry.get("v1")
    assert {p.name for p in mv.folder.iterdir()} == {"model.onnx", "card.md", "eval.json"}
    assert mv.report == report
    assert onnx.load(str(mv.model)).metadata_props[0].value == "v1"


@pytest.mark.parametrize(
    ("version_in_file", "version_given", "error"),
    [
        ("v1", None, None),
        (None, "v7", None),
        ("v1", "v1", None),
        ("v1", "v2", "differs from the model's sortloop_version"),
        (None, "../escape", "not a valid folder name"),
    ],
)
def test_add_versions(registry: Registry, tmp_path: Path, version_in_file: str | None, version_given: str | None,
                      error: str | None) -> None:
    model = make_onnx(tmp_path / "m.onnx", version_in_file)
    if error:
        with pytest.raises(RegistryError, match=error):
            registry.add(model, "", make_report(), version=version_given)
        return
    mv = registry.add(model, "", make_report(), version=version_given)
    assert mv.version == (version_given or version_in_file)


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda reg, tmp: reg.add(make_onnx(tmp / "a.onnx", "v1"), "", make_report()), "already registered"),
        (lambda reg, tmp: reg.promote("nope", GATE, by="x"), "not in"),
        (lambda reg, tmp: reg.add(tmp / "missing.onnx", "", make_report()), "not found"),
        (lambda reg, tmp: reg.promote("v1", GATE, by="x") and reg.promote("v1", GATE, by="x"), "already the current"),
    ],
)
def test_registry_errors(registry: Registry, tmp_path: Path, action, error: str) -> None:
    add(registry, tmp_path, "v1", make_report())
    with pytest.raises(RegistryError, match=error):
        action(registry, tmp_path)


def test_adopt_makes_the_station_model_current_with_its_checkpoint(registry: Registry, tmp_path: Path) -> None:
    """The shipped model a station runs before any promotion becomes the baseline: current without the gate
    (its recall is under the gate's floor here), its checkpoint kept for fine-tuning, audited."""
    shipped = make_onnx(tmp_path / "default.onnx", "default-4")
    (tmp_path / "default.pt").write_bytes(b"checkpoint")
    mv = registry.adopt(shipped, "# default", make_report(0.5), weights=tmp_path / "default.pt", by="erin")
    current = registry.current()
    assert current is not None and current.version == "default-4" == mv.version
    assert (mv.folder / "model.pt").read_bytes() == b"checkpoint"
    assert [(a.action, a.version, a.by) for a in registry.audit()] == [("add", "default-4", "erin"),
                                                                        ("adopt", "default-4", "erin")]
    with pytest.raises(RegistryError, match="already has a current model"):
        registry.adopt(shipped, "", make_report(), by="erin")
    # a candidate is then judged against it
    add(registry, tmp_path, "v2", make_report(0.45))
    with pytest.raises(GateRefused, match="lower than the current"):
        registry.promote("v2", GateConfig(min_hazard_recall=0.0), by="erin")


@pytest.mark.parametrize(("same_file", "error"), [(True, None), (False, "with another model file")])
def test_adopt_reuses_a_registered_version_only_for_the_same_file(registry: Registry, tmp_path: Path,
                                                                   same_file: bool, error: str | None) -> None:
    registered = make_onnx(tmp_path / "v1.onnx", "v1")
    registry.add(registered, "", make_report(0.9), by="x")
    shipped = registered
    if not same_file:  # another export under the same version name
        model = onnx.load(str(registered))
        model.doc_string = "another export"
        shipped = tmp_path / "other.onnx"
        onnx.save(model, str(shipped))
    if error:
        with pytest.raises(RegistryError, match=error):
            registry.adopt(shipped, "", make_report(0.7), by="x")
        assert registry.current() is None
        return
    mv = registry.adopt(shipped, "", make_report(0.7), by="x")
    assert mv.version == "v1" and mv.report.hazard_recall == pytest.approx(0.7)  # re-evaluated, recorded
    assert [a.action for a in registry.audit()] == ["add", "record_eval", "adopt"]


def test_corrupt_pointer_is_named(registry: Registry, tmp_path: Path) -> None:
    add(registry, tmp_path, "v1", make_report())
    (registry.root / "current.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"current\.json is corrupt"):
        registry.current()


def test_pointer_is_replaced_atomically(tmp_path: Path) -> None:
    """A reader polling the pointer while it is rewritten sees only complete JSON documents."""
    target = tmp_path / "current.json"
    atomic_write(target, json.dumps({"version": "v0", "pad": "x" * 50_000}))
    stop, seen, bad = threading.Event(), set(), []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(json.loads(target.read_text())["version"])
            except json.JSONDecodeError as exc:
                bad.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(200):
            atomic_write(target, json.dumps({"version": f"v{i}", "pad": "x" * 50_000}))
    finally:
        stop.set()
        t.join()
    assert bad == []
    assert json.loads(target.read_text())["version"] == "v199"
    assert [p.name for p in tmp_path.iterdir()] == ["current.json"]  # no temporary files left behind


def test_pointer_write_keeps_old_file_when_it_fails(tmp_path: Path) -> None:
    target = tmp_path / "current.json"
    atomic_write(target, '{"version": "v1"}')
    with pytest.raises(TypeError):
        atomic_write(target, None)  # type: ignore[arg-type]
    assert target.read_text() == '{"version": "v1"}'
    assert os.listdir(tmp_path) == ["current.json"]


# ------------------------------------------------------------------------------ crop classifiers' gate

def pair(hazard: tuple[int, int] = (29, 30), clean: tuple[int, int] = (2, 200), right: tuple[int, int] = (400, 500),
         digest: str = "lists-1", detector: str = "det-1", point: str = "op-1", classifier: str = "crops-x",
         created: str = "2025-01-01T00:00:00+00:00") -> SourceReport:
    """A pair report of two lists: ``battery_crops`` (hazard photos) and ``trashnetpp`` (clean photos, items)."""
    batteries = SourceFigures("battery_crops", photos=hazard[1], items=hazard[1], found=hazard[1], right=hazard[0],
                              hazard_photos=hazard[1], hazard_flagged=hazard[0])
    household = SourceFigures("trashnetpp", photos=clean[1], items=right[1], found=right[1], right=right[0],
                              clean_photos=clean[1], clean_flagged=clean[0])
    return SourceReport(detector, classifier, "build", [batteries, household], data_digest=digest,
                        operating_point=point, created=created)


PAIR_GATE = GateConfig(min_hazard_recall=0.9, false_hazard_tolerance=0.01, stream_tolerance=0.01)


@pytest.mark.parametrize(
    ("candidate", "current", "refused_because"),
    [
        (pair(), None, None),                                                        # first classifier, good
        (pair(hazard=(20, 30)), None, "below the minimum"),                          # under the floor
        (pair(hazard=(0, 0)), None, "hazard recall is unknown"),                     # no hazard photos
        (pair(), pair(), None),                                                      # equal
        (pair(hazard=(28, 30), right=(480, 500)), pair(), "hazard photos flagged"),  # one battery fewer, big gain
        (pair(clean=(4, 200)), pair(), None),                                        # +0.01 false hazard: tolerated
        (pair(clean=(5, 200)), pair(), "false hazard 0.025"),                        # beyond the tolerance
        (pair(right=(395, 500)), pair(), None),                                      # -0.01 right stream: tolerated
        (pair(right=(394, 500)), pair(), "right stream 0.798"),                      # beyond
        (pair(digest="lists-2"), pair(), "other lists"),                             # not comparable
        (pair(detector="det-2"), pair(), "other detector"),
        (pair(point="op-2"), pair(), "other station thresholds"),
    ],
)
def test_classifier_gate(candidate: SourceReport, current: SourceReport | None, refused_because: str | None) -> None:
    reasons = judge_pair(candidate, current, PAIR_GATE)
    if refused_because is None:
        assert reasons == []
    else:
        assert any(refused_because in r for r in reasons), reasons


def test_classifier_versions_register_promote_refuse_and_roll_back(tmp_path: Path) -> None:
    detectors = Registry(tmp_path / "registry")
    reg = ClassifierRegistry.beside(detectors.root)
    for i, (version, report) in enumerate([("crops-a", pair()), ("crops-b", pair(right=(420, 500))),
                                           ("crops-c", pair(hazard=(28, 30), right=(490, 500)))]):
        report = replace(report, classifier=version, created=f"2025-01-0{i + 1}T00:00:00+00:00")
        reg.add(make_onnx(tmp_path / f"{version}.onnx", version), f"# {version}\n", report, by="tester")
    again = reg.get("crops-b").report
    household = again.row("trashnetpp")
    assert household is not None and household.right == 420 and again.totals().right == 449  # eval.json round-trips
    assert reg.promote("crops-a", PAIR_GATE, by="eng").accepted
    assert reg.promote("crops-b", PAIR_GATE, by="eng").current == "crops-a"
    with pytest.raises(GateRefused, match="28 of 30 hazard photos flagged"):
        reg.promote("crops-c", PAIR_GATE, by="eng")
    assert reg.rollback(by="eng").version == "crops-a"
    assert detectors.pointer() is None and detectors.versions() == []  # the detectors' registry is untouched
    audit = reg.audit()
    assert [(a.action, a.version, a.outcome) for a in audit[3:]] == [
        ("promote", "crops-a", "accepted"), ("promote", "crops-b", "accepted"), ("promote", "crops-c", "refused"),
        ("rollback", "crops-a", "ok")]
    assert audit[5].metrics["hazard_recall"] == pytest.approx(28 / 30, abs=1e-4)
    with pytest.raises(RegistryError, match="classifier version 'crops-z' is not in"):
        reg.get("crops-z")
