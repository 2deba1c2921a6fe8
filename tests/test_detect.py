"""Detector: real Ultralytics ONNX exports on real photos, synthetic ONNX models for exact post-processing,
refusal of models that do not fit, and ``detect_paths`` (the logic of ``sortloop detect``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared_data import SHARED, needs_shared

from station.detect import (
    Detector,
    ImageResult,
    Letterbox,
    ModelError,
    detect_paths,
    select_providers,
)
from station.taxonomy import load_taxonomy

WEIGHTS = SHARED / "weights"
YOLO11 = WEIGHTS / "yolo11n-coco-int8-320.onnx"
YOLO26 = WEIGHTS / "yolo26n-coco-int8-640.onnx"
PHOTOS = SHARED / "datasets" / "ewaste-devices"
PHOTO_CLASSES = {0: "cell phone", 1: "keyboard", 2: "laptop", 3: "tv", 4: "mouse"}  # dataset id → COCO name
CPU = "CPUExecutionProvider"

pytestmark = needs_shared(YOLO11, YOLO26, PHOTOS)


# ---------------------------------------------------------------- builders

def build_onnx(path: Path, output: np.ndarray, *, input_shape: tuple[int, ...] = (1, 3, 64, 64),
               metadata: dict[str, str] | None = None) -> Path:
    """A tiny ONNX model whose output is the constant ``output`` (input ``images`` of ``input_shape``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("Constant", [], ["output0"], value=numpy_helper.from_array(output.astype(np.float32)))
    graph = helper.make_graph(
        [node], "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path


def ultra_meta(names: list[str], imgsz: tuple[int, int] = (64, 64), **extra: str) -> dict[str, str]:
    """Metadata as an Ultralytics export writes it."""
    return {"names": str(dict(enumerate(names))), "imgsz": str(list(imgsz)), "task": "detect", **extra}


def nms_output(anchors: list[tuple[float, ...]]) -> np.ndarray:
    """[1, 4+C, N] from rows (cx, cy, w, h, score_0, ..., score_C-1)."""
    return np.asarray(anchors, np.float32).T[None]


def read_photo(name: str) -> np.ndarray:
    image = cv2.imread(str(PHOTOS / "images" / name))
    assert image is not None, name
    return np.asarray(image, np.uint8)


def label_boxes(image: str, width: int, height: int) -> list[tuple[str, np.ndarray]]:
    rows = np.loadtxt(PHOTOS / "labels" / f"{Path(image).stem}.txt", ndmin=2)
    return [(PHOTO_CLASSES[int(c)], np.array([(x - w / 2) * width, (y - h / 2) * height,
                                              (x + w / 2) * width, (y + h / 2) * height]))
            for c, x, y, w, h in rows]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


@pytest.fixture(scope="module")
def detectors() -> dict[str, Detector]:
    return {"yolo11": Detector(YOLO11, threads=1), "yolo26": Detector(YOLO26, threads=1)}


# ---------------------------------------------------------------- real models

@pytest.mark.parametrize(("key", "kind", "imgsz", "version"), [
    ("yolo11", "nms", (320, 320), "sha256:5ea9b19c6c4d"),
    ("yolo26", "end2end", (640, 640), "sha256:912af18b3084"),
])
def test_real_model_properties(detectors, key, kind, imgsz, version):
    det = detectors[key]
    assert (det.kind, det.imgsz, det.version) == (kind, imgsz, version)
    assert len(det.names) == 80 and det.names[63] == "laptop" and det.names[67] == "cell phone"
    assert det.metadata["imgsz"] == str(list(imgsz))
    assert det.providers[-1] == CPU
    assert det.path == (YOLO11 if key == "yolo11" else YOLO26)


@pytest.mark.parametrize(("key", "image", "wanted"), [
    ("yolo11", "1.jpg", "keyboard"),
    ("yolo11", "36.jpg", "laptop"),
    ("yolo11", "186.jpg", "cell phone"),
    ("yolo11", "140.jpg", "mouse"),
    ("yolo26", "2.jpg", "keyboard"),
    ("yolo26", "140.jpg", "cell phone"),
    ("yolo26", "152.jpg", "tv"),
])
def test_real_photo_matches_label(detectors, key, image, wanted):
    det = detectors[key]
    frame = read_photo(image)
    h, w = frame.shape[:2]
    dets = det(frame)
    truth = [box for name, box in label_boxes(image, w, h) if name == wanted]
    found = [box for box, k in zip(dets.xyxy, dets.class_id, strict=True) if det.names[k] == wanted]
    assert truth and max((iou(f, t) for f in found for t in truth), default=0.0) > 0.5
    assert (dets.xyxy[:, [0, 2]] >= 0).all() and (dets.xyxy[:, [0, 2]] <= w).all()
    assert (dets.xyxy[:, [1, 3]] >= 0).all() and (dets.xyxy[:, [1, 3]] <= h).all()
    assert (dets.confidence > 0.25).all()
    assert dets.class_scores is not None and dets.class_scores.shape == (len(dets), 80)
    rows = np.arange(len(dets))
    np.testing.assert_allclose(dets.class_scores[rows, dets.class_id], dets.confidence)
    assert (dets.class_scores.argmax(axis=1) == dets.class_id).all()
    if det.kind == "end2end":  # one-hot × score
        np.testing.assert_allclose(dets.class_scores.sum(axis=1), dets.confidence, rtol=1e-6)


def test_blank_frame_gives_empty_detections_with_score_columns(detectors):
    dets = detectors["yolo11"](np.full((720, 1280, 3), 114, np.uint8))
    assert len(dets) == 0 and dets.class_scores is not None and dets.class_scores.shape == (0, 80)


# ---------------------------------------------------------------- synthetic models: exact post-processing

# Model input 64×64; the frame is 128 (h) × 256 (w): gain 0.25, content 32×64 at top=16, left=0.
# A model box (x1, y1, x2, y2) maps to the frame as (x1 * 4, (y1 - 16) * 4, x2 * 4, (y2 - 16) * 4).
FRAME_HW = (128, 256)


@pytest.mark.parametrize(("anchors", "expected"), [
    pytest.param([(32, 32, 16, 8, 0.9, 0.0)], [((96, 48, 160, 80), 0, 0.9)], id="one box mapped back"),
    pytest.param([(32, 32, 16, 8, 0.9, 0.1), (33, 32, 16, 8, 0.8, 0.0)], [((96, 48, 160, 80), 0, 0.9)],
                 id="same class overlap suppressed"),
    pytest.param([(32, 32, 16, 8, 0.9, 0.0), (33, 32, 16, 8, 0.0, 0.8)],
                 [((96, 48, 160, 80), 0, 0.9), ((100, 48, 164, 80), 1, 0.8)], id="class-aware: both kept"),
    pytest.param([(32, 32, 16, 8, 0.2, 0.1)], [], id="below confidence dropped"),
    pytest.param([(8, 24, 8, 8, 0.5, 0.0), (48, 24, 8, 8, 0.7, 0.0)],
                 [((176, 16, 208, 48), 0, 0.7), ((16, 16, 48, 48), 0, 0.5)], id="apart: both kept"),
    pytest.param([(2, 18, 8, 8, 0.0, 0.6)], [((0, 0, 24, 24), 1, 0.6)], id="clipped to the frame"),
])
def test_nms_postprocess(tmp_path, anchors, expected):
    path = build_onnx(tmp_path / "nms.onnx", nms_output(anchors), metadata=ultra_meta(["phone", "battery"]))
    det = Detector(path, confidence=0.25, iou=0.5)
    dets = det(np.zeros((*FRAME_HW, 3), np.uint8))
    assert det.kind == "nms"
    assert len(dets) == len(expected)
    for i, (box, cls, conf) in enumerate(expected):
        np.testing.assert_allclose(dets.xyxy[i], box, atol=1e-3)
        assert dets.class_id[i] == cls
        assert dets.confidence[i] == pytest.approx(conf)
    assert dets.class_scores is not None and dets.class_scores.shape == (len(expected), 2)
    if expected:  # the full score row of the kept anchor travels with it, for the station's votes
        first = next(a for a in anchors if max(a[4:]) == pytest.approx(expected[0][2]))
        np.testing.assert_allclose(dets.class_scores[0], first[4:])


@pytest.mark.parametrize(("rows", "expected"), [
    pytest.param([(24, 28, 40, 36, 0.9, 1)], [((96, 48, 160, 80), 1, 0.9)], id="one row mapped back"),
    pytest.param([(24, 28, 40, 36, 0.9, 0), (25, 28, 40, 36, 0.8, 0)],
                 [((96, 48, 160, 80), 0, 0.9), ((100, 48, 160, 80), 0, 0.8)], id="no NMS after the model"),
    pytest.param([(24, 28, 40, 36, 0.1, 0), (0, 0, 0, 0, 0.0, 0)], [], id="below confidence dropped"),
    pytest.param([(-4, 10, 70, 50, 0.5, 1)], [((0, 0, 256, 128), 1, 0.5)], id="clipped to the frame"),
])
def test_end2end_postprocess(tmp_path, rows, expected):
    out = np.asarray(rows, np.float32)[None]
    path = build_onnx(tmp_path / "e2e.onnx", out, metadata=ultra_meta(["phone", "battery"], end2end="True"))
    det = Detector(path)
    dets = det(np.zeros((*FRAME_HW, 3), np.uint8))
    assert det.kind == "end2end"
    assert len(dets) == len(expected)
    for i, (box, cls, conf) in enumerate(expected):
        np.testing.assert_allclose(dets.xyxy[i], box, atol=1e-3)
        assert dets.class_id[i] == cls
        one_hot = np.zeros(2, np.float32)
        one_hot[cls] = conf
        assert dets.class_scores is not None
        np.testing.assert_allclose(dets.class_scores[i], one_hot, rtol=1e-6)


@pytest.mark.parametrize(("end2end", "score", "floors", "kept"), [
    pytest.param(False, 0.12, {}, False, id="nms: faint battery dropped without a floor"),
    pytest.param(False, 0.12, {1: 0.1}, True, id="nms: faint battery kept by its class floor"),
    pytest.param(False, 0.08, {1: 0.1}, False, id="nms: under the floor dropped"),
    pytest.param(True, 0.12, {}, False, id="end2end: faint battery dropped without a floor"),
    pytest.param(True, 0.12, {1: 0.1}, True, id="end2end: faint battery kept by its class floor"),
])
def test_class_floor_keeps_faint_hazard_boxes(tmp_path, end2end, score, floors, kept):
    """``class_confidence`` (the station's hazard_confidence) keeps a faint box of that class only."""
    if end2end:
        out = np.asarray([(24, 28, 40, 36, score, 1), (60, 28, 70, 36, score, 0)], np.float32)[None]
        meta = ultra_meta(["phone", "battery"], end2end="True")
    else:
        out = nms_output([(32, 32, 16, 8, 0.0, score), (8, 24, 8, 8, score, 0.0)])
        meta = ultra_meta(["phone", "battery"])
    det = Detector(build_onnx(tmp_path / "m.onnx", out, metadata=meta), confidence=0.25)
    det.class_confidence = floors
    dets = det(np.zeros((*FRAME_HW, 3), np.uint8))
    assert list(dets.class_id) == ([1] if kept else []), "only the floored class (battery) may pass under 0.25"
    if kept:
        assert dets.confidence[0] == pytest.approx(score), "the box keeps its real score"


def test_sortloop_version_metadata_is_the_version(tmp_path):
    meta = ultra_meta(["phone"], sortloop_version="phone-v3")
    det = Detector(build_onnx(tmp_path / "m.onnx", np.zeros((1, 5, 4)), metadata=meta))
    assert det.version == "phone-v3"


# ---------------------------------------------------------------- letterbox

@pytest.mark.parametrize(("src_hw", "dst_hw", "new_hw", "top", "left"), [
    ((720, 1280), (320, 320), (180, 320), 70, 0),
    ((405, 720), (640, 640), (360, 640), 140, 0),
    ((720, 405), (640, 640), (640, 360), 0, 140),
    ((333, 333), (320, 640), (320, 320), 0, 160),
    ((1, 1000), (320, 320), (1, 320), 159, 0),
    ((320, 320), (320, 320), (320, 320), 0, 0),
])
def test_letterbox_fit(src_hw, dst_hw, new_hw, top, left):
    box = Letterbox.fit(src_hw, dst_hw)
    assert (box.new_hw, box.top, box.left) == (new_hw, top, left)


@pytest.mark.parametrize(("frame_hw", "rect"), [
    ((300, 500), (100, 60, 300, 180)),
    ((500, 300), (40, 200, 260, 420)),
    ((4, 1000), (100, 0, 300, 4)),  # one row high in the model input: x and y gains differ
])
def test_letterbox_round_trip_on_non_square_image(detectors, frame_hw, rect):
    det = detectors["yolo11"]
    frame = np.zeros((*frame_hw, 3), np.uint8)
    x1, y1, x2, y2 = rect
    frame[y1:y2, x1:x2] = (255, 0, 0)  # blue in BGR → channel 2 of the RGB tensor
    tensor, box = det.preprocess(frame)
    assert tensor.shape == (1, 3, 320, 320) and tensor.dtype == np.float32
    blue = tensor[0, 2] > 0.5
    assert not tensor[0, 0][blue].any()  # the red plane is empty where the blue rectangle is
    ys, xs = np.nonzero(blue)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    np.testing.assert_allclose(box.to_image(found)[0], rect, atol=2 * frame_hw[0] / box.new_hw[0])
    np.testing.assert_allclose(box.to_image(box.to_model(np.array([rect], np.float32)))[0], rect, atol=1e-3)
    pad = np.ones((320, 320), bool)
    pad[box.top:box.top + box.new_hw[0], box.left:box.left + box.new_hw[1]] = False
    assert pad.any() and np.allclose(tensor[0][:, pad], 114 / 255)


def test_preprocess_reuses_buffers_across_frame_sizes(detectors):
    det = detectors["yolo11"]
    det.preprocess(np.full((100, 400, 3), 255, np.uint8))  # wide: padding above and below
    tensor, box = det.preprocess(np.full((400, 100, 3), 255, np.uint8))  # tall: padding left and right
    assert (box.top, box.left, box.new_hw) == (0, 120, (320, 80))
    assert np.allclose(tensor[0, :, :, :120], 114 / 255) and np.allclose(tensor[0, :, :, 200:], 114 / 255)
    assert np.allclose(tensor[0, :, :, 120:200], 1.0)


def test_warm_up_leaves_results_unchanged(detectors):
    """The warm-up inference (blank frame at the model's input size) must not leak into the next frame."""
    det = detectors["yolo11"]
    photo = read_photo(sorted(p.name for p in (PHOTOS / "images").iterdir())[0])
    before = det(photo)
    det.warm_up()
    after = det(photo)
    assert len(before) == len(after) > 0
    np.testing.assert_allclose(after.xyxy, before.xyxy, atol=1e-4)
    np.testing.assert_allclose(after.confidence, before.confidence, atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32)])
def test_preprocess_refuses_non_bgr_uint8(detectors, bad):
    with pytest.raises(ValueError, match="BGR uint8"):
        detectors["yolo11"](bad)


# ---------------------------------------------------------------- providers

@pytest.mark.parametrize(("preferred", "available", "expected"), [
    (None, ["AzureExecutionProvider", CPU], [CPU]),
    (None, ["CUDAExecutionProvider", CPU], ["CUDAExecutionProvider", CPU]),
    ([CPU, "CUDAExecutionProvider"], ["CUDAExecutionProvider", CPU], ["CUDAExecutionProvider", CPU]),
    (["OpenVINOExecutionProvider", "CUDAExecutionProvider"], ["CUDAExecutionProvider", "OpenVINOExecutionProvider",
                                                              CPU], ["OpenVINOExecutionProvider",
                                                                     "CUDAExecutionProvider", CPU]),
    ([], ["CUDAExecutionProvider", CPU], [CPU]),
])
def test_select_providers(preferred, available, expected):
    assert select_providers(preferred, available) == expected


def test_absent_provider_falls_back_to_cpu(tmp_path):
    path = build_onnx(tmp_path / "m.onnx", np.zeros((1, 5, 4)), metadata=ultra_meta(["phone"]))
    assert Detector(path, providers=["NoSuchExecutionProvider"]).providers == [CPU]


# ---------------------------------------------------------------- models that do not fit

def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


NAMES2 = ["phone", "battery"]
BAD_MODELS = {
    "missing file": (lambda d: d / "nope.onnx", "not found"),
    "text file": (lambda d: _write(d / "notes.onnx", b"hello, not a model\n"), "not a readable ONNX model"),
    "truncated export": (lambda d: _write(d / "cut.onnx", YOLO11.read_bytes()[:50_000]),
                         "not a readable ONNX model"),
    "no metadata": (lambda d: build_onnx(d / "bare.onnx", np.zeros((1, 6, 4))),
                    "not an Ultralytics export; export with `sortloop export`"),
    "no imgsz": (lambda d: build_onnx(d / "m.onnx", np.zeros((1, 6, 4)),
                                      metadata={"names": str(dict(enumerate(NAMES2)))}), "'imgsz'"),
    "names unparsable": (lambda d: build_onnx(d / "m.onnx", np.zeros((1, 6, 4)),
                                              metadata={"names": "{0: 'phone'", "imgsz": "[64, 64]"}),
                         "cannot be parsed"),
    "input disagrees with imgsz": (lambda d: build_onnx(d / "m.onnx", np.zeros((1, 6, 4)),
                                                        metadata=ultra_meta(NAMES2, (320, 320))), "input shape"),
    "output of wrong width": (lambda d: build_onnx(d / "m.onnx", np.zeros((1, 7, 4)), metadata=ultra_meta(NAMES2)),
                              "unexpected output shape"),
    "end2end flag on NMS output": (lambda d: build_onnx(d / "m.onnx", np.zeros((1, 6, 4)),
                                                        metadata=ultra_meta(NAMES2, end2end="True")),
                                   "unexpected output shape"),
    "segmentation task": (lambda d: build_onnx(d / "m.onnx", np.zeros((1, 6, 4)),
                                               metadata=ultra_meta(NAMES2, task="segment")),
                          "not a detection model"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_unfit_model_refused_at_load(tmp_path, case):
    make, message = BAD_MODELS[case]
    path = make(tmp_path)
    with pytest.raises(ModelError) as err:
        Detector(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_coco_model_refused_by_our_taxonomy():
    with pytest.raises(ModelError) as err:
        Detector(YOLO11, taxonomy=load_taxonomy())
    msg = str(err.value)
    assert "77 of its 80 classes are not in the taxonomy" in msg and str(YOLO11) in msg
    unknown = msg.split("taxonomy: ", 1)[1].split(";", 1)[0].split(", ")
    assert unknown[:2] == ["person", "bicycle"] and "cell phone" in unknown
    assert not {"laptop", "mouse", "keyboard"} & set(unknown)  # these three COCO names are ours too


def test_model_with_taxonomy_classes_accepted(tmp_path):
    path = build_onnx(tmp_path / "m.onnx", np.zeros((1, 6, 4)), metadata=ultra_meta(["phone", "battery"]))
    assert Detector(path, taxonomy=load_taxonomy()).names == ["phone", "battery"]


# ---------------------------------------------------------------- detect_paths

def test_detect_paths_folder_with_corrupt_image(detectors, tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    shutil.copy(PHOTOS / "images" / "36.jpg", root / "36.jpg")
    shutil.copy(PHOTOS / "images" / "140.jpg", root / "sub" / "140.JPG")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    det = detectors["yolo11"]
    results = list(detect_paths([root, tmp_path / "missing.png"], det, load_taxonomy()))
    lines = [json.loads(r.to_json()) for r in results]

    assert [Path(line["image"]).name for line in lines] == ["36.jpg", "broken.jpg", "140.JPG", "missing.png"]
    assert set(lines[1]) == {"image", "error"} and set(lines[3]) == {"image", "error"}
    laptop, phone = lines[0], lines[2]
    assert set(laptop) == {"image", "width", "height", "model", "detections"}
    assert (laptop["width"], laptop["height"], laptop["model"]) == (720, 540, det.version)
    for line in (laptop, phone):
        for d in line["detections"]:
            assert set(d) == {"box", "class", "confidence", "stream", "hazard"}
            assert all(round(v, 1) == v for v in d["box"]) and len(d["box"]) == 4
    by_class = {d["class"]: d for d in laptop["detections"] + phone["detections"]}
    assert (by_class["laptop"]["stream"], by_class["laptop"]["hazard"]) == ("electronics", "battery")
    assert (by_class["mouse"]["stream"], by_class["mouse"]["hazard"]) == ("electronics", None)
    assert (by_class["cell phone"]["stream"], by_class["cell phone"]["hazard"]) == (None, None)  # COCO name


def test_detect_paths_without_taxonomy_has_null_stream(detectors):
    (result,) = detect_paths([PHOTOS / "images" / "36.jpg"], detectors["yolo11"], None)
    assert result.error is None and result.detections
    assert all(d.stream is None and d.hazard is None for d in result.detections)


def test_image_result_json_shapes():
    assert json.loads(ImageResult("a.jpg", error="boom").to_json()) == {"image": "a.jpg", "error": "boom"}
    assert json.loads(ImageResult("b.jpg", 4, 3, "v1").to_json()) == {
        "image": "b.jpg", "width": 4, "height": 3, "model": "v1", "detections": []}


# ---------------------------------------------------------------- parity with Ultralytics

@pytest.mark.parity
@pytest.mark.parametrize("model", [YOLO11, YOLO26])
def test_parity_with_ultralytics_predict(model, monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path))
    ultralytics = pytest.importorskip("ultralytics")
    from ultralytics.data.augment import LetterBox

    det = Detector(model, threads=1)
    reference = ultralytics.YOLO(str(model), task="detect")
    for image in ("1.jpg", "140.jpg", "154.jpg"):
        frame = read_photo(image)
        padded = np.asarray(LetterBox(det.imgsz, auto=False)(image=frame))
        tensor, _ = det.preprocess(frame)
        np.testing.assert_allclose(tensor[0], padded[..., ::-1].transpose(2, 0, 1) / 255, atol=1e-6)
        ours = det(frame)
        theirs = reference.predict(frame, imgsz=det.imgsz, conf=0.25, iou=0.5, verbose=False)[0].boxes
        order = np.argsort(-theirs.conf.numpy())
        assert len(ours) == len(order)
        np.testing.assert_allclose(ours.xyxy[np.argsort(-ours.confidence)], theirs.xyxy.numpy()[order], atol=0.01)
        assert (ours.class_id[np.argsort(-ours.confidence)] == theirs.cls.numpy()[order]).all()
