"""The crop classifier (second look): Ultralytics' classification pre-processing, class order, refusal of
files that do not fit, and in the running station: evidence stored with each decision, a changed file
swapped in without a restart, a broken one refused while the last good one stays."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared_data import SHARED, needs_shared
from test_detect import build_onnx, ultra_meta

from station.classify import CropClassifier
from station.config import StationConfig
from station.detect import ModelError
from station.runtime import ModelWatcher, build_station
from station.taxonomy import load_taxonomy

TAX = load_taxonomy()
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "sortloop-default.onnx"
SHIPPED = ROOT / "models" / "sortloop-crops.onnx"
PHOTOS = SHARED / "datasets" / "ewaste-devices" / "images"
SIDE = 32


def cls_meta(names: list[str], side: int = SIDE, **extra: str) -> dict[str, str]:
    return ultra_meta(names, (side, side), task="classify", **extra)


def constant_classifier(path: Path, probs: dict[str, float], names: list[str] | None = None,
                        version: str = "crops-test") -> Path:
    """A classifier export (model class order ``names``) whose output is always ``probs``."""
    names = names or list(reversed(TAX.names))
    out = np.array([[probs.get(n, 0.0) for n in names]], np.float32)
    return build_onnx(path, out, input_shape=(1, 3, SIDE, SIDE),
                      metadata=cls_meta(names, sortloop_version=version))


def test_probabilities_come_in_taxonomy_order(tmp_path: Path) -> None:
    names = list(reversed(TAX.names))
    clf = CropClassifier(constant_classifier(tmp_path / "c.onnx", {"can": 0.7, "battery": 0.2, "paper": 0.1},
                                             names), taxonomy=TAX)
    p = clf(np.zeros((50, 90, 3), np.uint8))
    assert p.shape == (len(TAX.names),)
    assert (p[TAX.index("can")], p[TAX.index("battery")], p[TAX.index("paper")]) == pytest.approx((0.7, 0.2, 0.1))
    assert clf.version == "crops-test" and clf.imgsz == SIDE


@pytest.mark.parametrize("shape", [(60, 200), (200, 60), (20, 25), (400, 400), (33, 1000)])
def test_preprocessing_matches_ultralytics(tmp_path: Path, shape: tuple[int, int]) -> None:
    """Shorter side to the input size and a centre crop, as Ultralytics' classify_transforms on a PIL image."""
    from PIL import Image
    from ultralytics.data.augment import classify_transforms

    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    small = rng.integers(0, 256, (max(2, shape[0] // 16), max(2, shape[1] // 16), 3), dtype=np.uint8)
    crop = cv2.resize(small, shape[::-1], interpolation=cv2.INTER_LINEAR)  # smooth content, as photos are
    clf = CropClassifier(constant_classifier(tmp_path / "c.onnx", {"can": 1.0}), taxonomy=TAX)
    ours = clf.preprocess(crop)
    theirs = classify_transforms(SIDE)(Image.fromarray(crop[:, :, ::-1].copy())).numpy()[None]
    assert ours.shape == theirs.shape == (1, 3, SIDE, SIDE)
    assert float(np.abs(ours - theirs).mean()) < 0.02


@pytest.mark.parametrize("crop", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                  np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10, 3), np.float32)])
def test_a_crop_of_the_wrong_kind_is_refused(tmp_path: Path, crop: np.ndarray) -> None:
    clf = CropClassifier(constant_classifier(tmp_path / "c.onnx", {"can": 1.0}), taxonomy=TAX)
    with pytest.raises(ValueError, match="BGR uint8 crop"):
        clf(crop)


ONE = np.zeros((1, len(TAX.names)), np.float32)
BAD = {
    "missing file": (lambda d: d / "nope.onnx", r"not found \(model.classifier\).*set it to null"),
    "a detection model": (lambda d: build_onnx(d / "m.onnx", np.zeros((1, 4 + len(TAX.names), 8)),
                                               metadata=ultra_meta(TAX.names)), "not a classification model"),
    "a class short": (lambda d: build_onnx(d / "m.onnx", ONE[:, 1:], input_shape=(1, 3, SIDE, SIDE),
                                           metadata=cls_meta(TAX.names[1:])), f"missing: {TAX.names[0]}"),
    "a class unknown": (lambda d: build_onnx(d / "m.onnx", ONE, input_shape=(1, 3, SIDE, SIDE),
                                             metadata=cls_meta([*TAX.names[:-1], "toaster"])),
                        "not in the taxonomy: toaster"),
    "not square": (lambda d: build_onnx(d / "m.onnx", ONE, input_shape=(1, 3, SIDE, 48),
                                        metadata=ultra_meta(TAX.names, (SIDE, 48), task="classify")), "not square"),
    "input disagrees with imgsz": (lambda d: build_onnx(d / "m.onnx", ONE, input_shape=(1, 3, 64, 64),
                                                        metadata=cls_meta(TAX.names)), "input shape"),
    "output not one row of classes": (lambda d: build_onnx(d / "m.onnx", np.zeros((1, len(TAX.names), 2)),
                                                           input_shape=(1, 3, SIDE, SIDE),
                                                           metadata=cls_meta(TAX.names)), "output shape"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_classifier_that_does_not_fit_is_refused(tmp_path: Path, case: str) -> None:
    make, message = BAD[case]
    with pytest.raises(ModelError, match=message):
        CropClassifier(make(tmp_path), taxonomy=TAX)


def real_crops(n: int) -> list[np.ndarray]:
    """Evidence crops (the station's padding) of the first ``n`` labelled boxes of real e-waste photos."""
    from station.decide import padded_crop

    crops: list[np.ndarray] = []
    for label in sorted(PHOTOS.parent.joinpath("labels").glob("*.txt"))[:n]:
        image = cv2.imread(str(PHOTOS / f"{label.stem}.jpg"))
        assert image is not None, label
        h, w = image.shape[:2]
        _, x, y, bw, bh = (float(v) for v in label.read_text().split()[:5])
        box = ((x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h)
        crop = padded_crop(np.asarray(image, np.uint8), box, 0.1)
        assert crop is not None
        crops.append(crop)
    return crops


@needs_shared(PHOTOS)
def test_the_shipped_classifier_agrees_with_ultralytics_on_real_photos() -> None:
    """models/sortloop-crops.onnx through the station and through Ultralytics' own ONNX backend, same crops."""
    from ultralytics import YOLO

    clf = CropClassifier(SHIPPED, taxonomy=TAX)
    assert clf.version == "sortloop-crops-1" and clf.imgsz == 128
    crops = real_crops(16)
    ours = np.array([clf(c) for c in crops])
    model = YOLO(str(SHIPPED), task="classify")
    order = [list(model.names.values()).index(n) for n in TAX.names]
    theirs = np.array([r.probs.data.cpu().numpy()[order] for r in model.predict(crops, imgsz=128, verbose=False)])
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 15 / 16
    assert float(np.abs(ours - theirs).mean()) < 0.01


# ---------------------------------------------------------------- in the station

def sim_config(tmp_path: Path, classifier: Path | None, frames: int = 330) -> StationConfig:
    return StationConfig.model_validate({
        "source": {"kind": "simulator", "realtime": False, "max_frames": frames},
        "simulator": {"seed": 11},
        "model": {"path": str(DEFAULT_MODEL), "watch_registry": False, "threads": 1,
                  "classifier": None if classifier is None else str(classifier)},
        "pipeline": {"detect_workers": 1},
        "store": {"url": f"sqlite:///{tmp_path}/station.db", "evidence_dir": str(tmp_path / "evidence")},
    })


def test_each_decision_carries_the_second_look(tmp_path: Path) -> None:
    """A classifier sure of 'paper' on every crop: items the track vote calls otherwise but not unanimously
    move towards paper; every decision stores the classifier's scores and version."""
    clf = constant_classifier(tmp_path / "crops.onnx", {"paper": 0.97, "plastic": 0.03})
    built = build_station(sim_config(tmp_path, clf), keep_results=True)
    assert built.watcher is not None  # it watches the classifier's file
    st = built.station
    st.start()
    st.wait(120)
    assert st.classifier_version == "crops-test"
    # kept results carry no crops (bounded memory): the stored item says whether the decision had one
    decided = [d for d in st.decisions if d.class_name is not None
               and (item := st.store.get_item(d.item_id)) is not None and item.crop_path is not None]
    assert len(decided) >= 3, "the run must hold decisions to check"
    for d in decided:
        assert d.crop_scores == {"paper": 0.97, "plastic": 0.03} and d.classifier_version == "crops-test"
        item = st.store.get_item(d.item_id)
        assert item is not None and item.crop_scores == d.crop_scores and item.classifier_version == "crops-test"
    active = st.store.active_model("classifier")
    assert active is not None and active.version == "crops-test" and active.path == str(clf)
    detector = st.store.active_model()
    assert detector is not None and detector.version == st.model_version


def test_a_changed_classifier_is_swapped_in_and_a_broken_one_refused(tmp_path: Path) -> None:
    path = constant_classifier(tmp_path / "crops.onnx", {"can": 1.0}, version="crops-a")
    built = build_station(sim_config(tmp_path, path, frames=30), keep_results=True)
    st = built.station
    watcher = built.watcher
    assert isinstance(watcher, ModelWatcher)
    assert not watcher.poll_classifier()  # unchanged
    staged = constant_classifier(tmp_path / "staged.onnx", {"can": 1.0}, version="crops-b")
    shutil.copyfile(staged, path)
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert watcher.poll_classifier()
    st._maybe_swap()  # the in-order stage applies it between two frames
    assert st.classifier_version == "crops-b"
    path.write_bytes(b"not an onnx model")
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert not watcher.poll_classifier()
    st._maybe_swap()
    assert st.classifier_version == "crops-b"
    alarms = [a for a in st.store.alarms() if a.kind == "model.rejected"]
    assert alarms and "keeping crops-b" in alarms[0].message and str(path) in alarms[0].message
    st.stop()


def test_a_station_with_a_classifier_that_does_not_fit_does_not_start(tmp_path: Path) -> None:
    bad = build_onnx(tmp_path / "det.onnx", np.zeros((1, 4 + len(TAX.names), 8)), metadata=ultra_meta(TAX.names))
    with pytest.raises(ModelError, match="not a classification model"):
        build_station(sim_config(tmp_path, bad))


def test_a_promoted_classifier_replaces_the_configured_one_and_a_rollback_brings_it_back(tmp_path: Path) -> None:
    """The crop classifiers' registry (``<registry>/classifiers``): the station starts on the promoted version,
    swaps on a promotion or a rollback, and the configured file is used while nothing is promoted."""
    from test_registry import PAIR_GATE, pair

    from training.registry import ClassifierRegistry

    configured = constant_classifier(tmp_path / "crops.onnx", {"can": 1.0}, version="crops-file")
    cfg = sim_config(tmp_path, configured, frames=30)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={
        "watch_registry": True, "registry": str(tmp_path / "registry")})})
    reg = ClassifierRegistry.beside(tmp_path / "registry")
    for version in ("crops-a", "crops-b"):
        reg.add(constant_classifier(tmp_path / f"{version}.onnx", {"can": 1.0}, version=version), "# c\n",
                pair(classifier=version), by="eng")
    reg.promote("crops-a", PAIR_GATE, by="eng")
    built = build_station(cfg, keep_results=True)
    st, watcher = built.station, built.watcher
    assert isinstance(watcher, ModelWatcher)
    assert st.classifier_version == "crops-a"  # the promoted one, not the configured file
    assert not watcher.poll_classifier()
    reg.promote("crops-b", PAIR_GATE, by="eng")
    assert watcher.poll_classifier()
    st._maybe_swap()
    assert st.classifier_version == "crops-b"
    reg.rollback(by="eng")
    assert watcher.poll_classifier()
    st._maybe_swap()
    assert st.classifier_version == "crops-a"
    (reg.root / "current.json").unlink()  # nothing promoted: the configured file again
    assert watcher.poll_classifier()
    st._maybe_swap()
    assert st.classifier_version == "crops-file"
    st.stop()
