"""ONNX export: metadata, and the PyTorch-vs-ONNX parity check on real photos (it must catch a tampered model).

Uses the shared COCO checkpoint with a taxonomy made of its own class names, so no training is needed and the
photos (e-waste devices on tables) give real detections.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from shared_data import SHARED, needs_shared

from station.detect import Detector
from station.taxonomy import ItemClass, Stream, Taxonomy, load_taxonomy
from training.export import ExportConfig, ExportError, ParityError, check_parity, export

COCO_PT = SHARED / "weights" / "yolo11n-coco.pt"
PHOTOS = SHARED / "datasets" / "ewaste-devices" / "images"
IMGSZ = 160
CFG = ExportConfig(parity_conf=0.05)

COCO_ONNX = SHARED / "weights" / "yolo11n-coco-int8-320.onnx"

pytestmark = needs_shared(COCO_PT, COCO_ONNX, PHOTOS)


def coco_taxonomy() -> Taxonomy:
    """A taxonomy of the 80 COCO names (read from the shared COCO ONNX export's metadata)."""
    meta = {p.key: p.value for p in onnx.load(str(COCO_ONNX)).metadata_props}
    names = ast.literal_eval(meta["names"])
    classes = [ItemClass(name=names[i], stream=Stream.RESIDUAL, mass_kg=1.0) for i in range(len(names))]
    return Taxonomy(version=1, streams=[Stream.RESIDUAL], hazards=["none"], classes=classes)


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return sorted(PHOTOS.glob("*.jpg"))[:4]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> tuple[Path, object]:
    from training.train import ultralytics_env

    ultralytics_env()
    out = tmp_path_factory.mktemp("export") / "coco.onnx"
    result = export(COCO_PT, out, imgsz=IMGSZ, taxonomy=coco_taxonomy(), manifest_digest="m-digest",
                    metrics={"map50": 0.5}, version="coco-test", parity_images=photos, cfg=CFG)
    return out, result


def test_export_keeps_ultralytics_metadata_and_adds_ours(exported: tuple[Path, object]) -> None:
    out, _ = exported
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert {"names", "imgsz", "stride", "task"} <= meta.keys()
    assert meta["sortloop_version"] == "coco-test"
    assert meta["sortloop_manifest"] == "m-digest"
    assert meta["sortloop_taxonomy"] == coco_taxonomy().digest
    assert meta["sortloop_metrics"] == '{"map50": 0.5}'
    assert meta["sortloop_created"].startswith("20")
    assert "sortloop_train_imgsz" not in meta  # the COCO checkpoint does not record its training size
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, IMGSZ, IMGSZ]  # static shape
    det = Detector(out)
    assert det.version == "coco-test" and det.imgsz == (IMGSZ, IMGSZ)


@pytest.mark.parity
def test_parity_holds_for_the_export(exported: tuple[Path, object]) -> None:
    _, result = exported
    parity = result.parity  # type: ignore[attr-defined]
    assert parity.images == 4
    assert parity.boxes >= 4  # real detections were compared, not an empty set
    assert parity.max_box_px <= CFG.box_tol_px
    assert parity.max_score <= CFG.score_tol


def tamper(src: Path, dst: Path, initializer: str, shift: float, ramp: bool) -> Path:
    """Copy an ONNX model with one bias initializer shifted (uniformly, or by a ramp 0..shift over channels)."""
    model = onnx.load(str(src))
    init = next(i for i in model.graph.initializer if i.name == initializer)
    bias = numpy_helper.to_array(init).copy()
    bias += np.linspace(0, shift, bias.size, dtype=bias.dtype) if ramp else np.asarray(shift, bias.dtype)
    init.CopyFrom(numpy_helper.from_array(bias, initializer))
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parity
@pytest.mark.parametrize(
    ("initializer", "shift", "ramp"),
    [
        ("model.23.cv3.0.2.bias", 3.0, False),   # stride-8 class logits up: new, higher scores
        ("model.23.cv3.2.2.bias", -8.0, False),  # stride-32 class logits down: large items vanish
        ("model.23.cv2.2.2.bias", 4.0, True),    # stride-32 box (DFL) logits: large boxes move ~2 px
        ("model.23.cv2.0.2.bias", 4.0, True),    # stride-8 box (DFL) logits: boxes move
    ],
)
def test_parity_fails_on_a_tampered_model(exported: tuple[Path, object], photos: list[Path], tmp_path: Path,
                                          initializer: str, shift: float, ramp: bool) -> None:
    out, _ = exported
    bad = tamper(out, tmp_path / "tampered.onnx", initializer, shift, ramp)
    with pytest.raises(ParityError, match="does not reproduce") as err:
        check_parity(COCO_PT, bad, photos, imgsz=IMGSZ, cfg=CFG)
    assert ".jpg" in str(err.value)  # names the offending image


@pytest.mark.parity
def test_parity_of_an_untouched_copy_still_holds(exported: tuple[Path, object], photos: list[Path],
                                                 tmp_path: Path) -> None:
    out, _ = exported
    copy = shutil.copyfile(out, tmp_path / "copy.onnx")
    assert check_parity(COCO_PT, copy, photos[:2], imgsz=IMGSZ, cfg=CFG).boxes > 0


@pytest.mark.parametrize(
    ("weights", "taxonomy", "images", "error", "match"),
    [
        (COCO_PT, load_taxonomy(), None, ExportError, "not in the taxonomy"),
        (Path("/nonexistent/best.pt"), load_taxonomy(), None, ExportError, "not found"),
        (COCO_PT, None, [], ParityError, "needs images"),
    ],
)
def test_export_errors(tmp_path: Path, weights: Path, taxonomy: Taxonomy | None, images: list[Path] | None,
                       error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        export(weights, tmp_path / "m.onnx", imgsz=IMGSZ, taxonomy=taxonomy or coco_taxonomy(), manifest_digest="x",
               metrics={}, version="v", parity_images=images or [], cfg=CFG)
