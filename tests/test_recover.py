"""Recovering a trainable checkpoint from an ONNX export: the shipped default model, rebuilt from its own
weights, must give the station's boxes exactly, start training close to itself, and load in Ultralytics."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from shared_data import SHARED, shared_file

from station.simulator import render_dataset
from station.taxonomy import load_taxonomy
from training import recover as rec
from training.recover import RecoverError, recover

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "sortloop-default.onnx"
WEIGHTS = SHARED / "weights"
TAX = load_taxonomy()


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """24 belt scenes of the simulator at the station's frame size: 16 to calibrate, 8 to check."""
    out = tmp_path_factory.mktemp("frames")
    render_dataset(out, 24, seed=3, width=1280, height=720)
    return sorted((out / "images").iterdir())


@pytest.fixture(scope="module")
def recovered(frames: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[rec.RecoverResult, dict]:
    out = tmp_path_factory.mktemp("ckpt") / "sortloop-default.pt"
    result = recover(SHIPPED, out, frames[:16], parity_images=frames[16:])
    return result, torch.load(out, map_location="cpu", weights_only=False)


def test_recovered_checkpoint_gives_the_shipped_models_boxes(recovered: tuple[rec.RecoverResult, dict]) -> None:
    result, ckpt = recovered
    assert result.architecture == "yolo11n" and result.tensors == 175 and result.calibration_images == 16
    assert result.parity_boxes >= 10  # boxes compared on the 8 held-out scenes, all equal within tolerance
    assert result.train_mode_gap is not None
    model = ckpt["model"]
    head = model.model[-1]
    assert model.names == dict(enumerate(TAX.names)) and head.nc == len(TAX.names) == model.yaml["nc"]
    assert head.cv3[0][0][1].conv.out_channels == 80  # the head as wide as the COCO checkpoint it came from
    assert not model.is_fused()  # batch norms back: it can be trained
    assert ckpt["train_args"]["imgsz"] == 320  # the metadata's sortloop_train_imgsz
    assert ckpt["sortloop_recovered_from"]["version"] == "sortloop-default-5"


def test_ultralytics_loads_every_tensor_of_the_recovered_checkpoint(
        recovered: tuple[rec.RecoverResult, dict]) -> None:
    from ultralytics.nn.tasks import DetectionModel

    result, _ = recovered
    model = torch.load(result.checkpoint, map_location="cpu", weights_only=False)["model"]
    fresh = DetectionModel(model.yaml, nc=len(TAX.names), verbose=False)
    fresh.load(model, verbose=False)  # what the trainer does with --base-weights
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


def test_calibrated_batch_norms_keep_a_training_batch_near_the_model(frames: list[Path]) -> None:
    """Unfolding with identity statistics is exact in eval mode but not in training mode, where a batch is
    normalised by its own statistics; calibrating on belt frames brings the training-mode scores close to the
    model's on frames the calibration did not see."""
    weights, _ = rec._weights(SHIPPED)
    held_out = rec.calibration_batch(SHIPPED, frames[16:])
    gaps = {}
    for calibrate in (False, True):
        net = rec._build("yolo11n", len(TAX.names), weights)
        pairs = rec._unfold(net, weights)
        if calibrate:
            rec._calibrate(net, pairs, rec.calibration_batch(SHIPPED, frames[:16]))
        gaps[calibrate] = rec.train_mode_gap(net, held_out)
    assert gaps[True] < 0.5 * gaps[False], gaps  # measured: 0.061 against 0.234


def test_only_the_shipped_family_is_rebuilt() -> None:
    weights, meta = rec._weights(SHIPPED)
    assert rec._candidates(meta)[0] == "yolo11n"  # from the export's description
    assert rec._build("yolo11s", len(TAX.names), weights) is None  # other widths do not fit
    assert rec._build("yolov8n", len(TAX.names), weights) is None


def _not_onnx(tmp: Path) -> Path:
    path = tmp / "broken.onnx"
    path.write_bytes(b"\x08\x07 not a model")
    return path


def _no_names(tmp: Path) -> Path:
    """A valid ONNX graph without Ultralytics' metadata."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    path = tmp / "plain.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def _nms_free(tmp: Path) -> Path:
    return shared_file(WEIGHTS / "yolo26n-coco-int8-640.onnx")


def _quantised(tmp: Path) -> Path:
    return shared_file(WEIGHTS / "yolo11n-coco-int8-320.onnx")


@pytest.mark.parametrize(("make", "images", "message"), [
    (lambda tmp: tmp / "absent.onnx", 1, "does not exist"),
    (_not_onnx, 1, "cannot be read as ONNX"),
    (_no_names, 1, "has no 'names' metadata"),
    (_nms_free, 1, "fit none of yolo11n"),
    (_quantised, 1, "fit none of yolo11n"),
    (lambda tmp: shutil.copyfile(SHIPPED, tmp / "m.onnx"), 0, "needs calibration images"),
])
def test_what_cannot_be_recovered_is_refused_and_nothing_written(make, images: int, message: str,
                                                                   frames: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out" / "m.pt"
    with pytest.raises(RecoverError, match=message):
        recover(Path(make(tmp_path)), out, frames[:images])
    assert not out.exists()


def test_cli_never_replaces_a_checkpoint_unasked(tmp_path: Path) -> None:
    """A checkpoint beside the model is usually its real one: the CLI refuses to overwrite it without --force."""
    import typer
    from typer.testing import CliRunner

    from training.cli import register

    app = typer.Typer()
    register(app)
    model = Path(shutil.copyfile(SHIPPED, tmp_path / "m.onnx"))
    model.with_suffix(".pt").write_bytes(b"the real checkpoint")
    refused = CliRunner().invoke(app, ["recover", str(model)])
    assert refused.exit_code == 2 and "exists" in refused.output
    assert model.with_suffix(".pt").read_bytes() == b"the real checkpoint"
    written = CliRunner().invoke(app, ["recover", str(model), "--out", str(tmp_path / "r.pt")])
    assert written.exit_code == 0, written.output
    assert "parity ok on" in written.output and (tmp_path / "r.pt").is_file()
