"""Recover a trainable Ultralytics checkpoint from an ONNX detector exported by Ultralytics.

Only ONNX models live in the repository (a checkpoint is 5–11 MB), so a fresh clone has the default model's
weights but nothing to fine-tune. The export keeps every weight: it folds each batch norm into the convolution
before it (``W' = W·γ/σ``, ``b' = β + (b − μ)·γ/σ``) and writes the folded tensors under their PyTorch names. This
module builds the same Ultralytics architecture, unfolds each pair again and saves a checkpoint the trainer
fine-tunes from.

Unfolding is not unique, and eval mode cannot tell the choices apart: every one gives back the folded layer
exactly. Training mode can: a batch norm then normalises by the batch's own statistics. So the convolution's
output statistics on real frames (calibration images) are measured, and each pair is unfolded as a trained one
would be: γ is that output's spread and β its mean plus the folded bias (what a trained γ and β are, as near as
the images match its training data), and the convolution's weights are divided by that spread, so its output,
like a trained model's, has about unit variance (the shipped model's running standard deviations have a median of 1.03):
the optimiser's steps are then of the size they were in training. A training batch starts near the ONNX model,
and fine-tuning starts from the shipped model rather than from a scrambled copy of it.

The result is checked the way an export is: the recovered checkpoint (Ultralytics predict) and the ONNX file
(the station's Detector) must give the same boxes on check images (``training.export.check_parity``), else
nothing is written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from station.taxonomy import Taxonomy

log = logging.getLogger(__name__)

ARCHITECTURES = ("yolo11n", "yolo11s", "yolo11m", "yolo11l", "yolo11x",
                 "yolov8n", "yolov8s", "yolov8m", "yolov8l", "yolov8x")
"""Ultralytics architectures a checkpoint can be rebuilt as (built offline from their ``*.yaml``): the YOLO11 and
YOLOv8 detectors whose exports the station runs with NMS after the model."""


_HEAD_WIDTH = re.compile(r"model\.\d+\.cv3\.0\.0\.1\.conv\.weight")
"""The head's first classification conv (its output width is the branch's width)."""

CALIBRATION_IMAGES = 32
"""Images that calibrate the batch norms by default (8 more, when there are, check the result)."""


NO_IMAGES = "recovering a checkpoint needs calibration images (real frames or training images)"


class RecoverError(ValueError):
    """No checkpoint can be recovered from the ONNX file; the message names the file and the fix."""


@dataclass(frozen=True)
class RecoverResult:
    checkpoint: Path
    architecture: str
    tensors: int
    """Weight tensors taken from the ONNX file."""
    calibration_images: int
    train_mode_gap: float | None
    """How far from the ONNX model a training batch starts: the mean |class score| difference, where the
    detections are, between the checkpoint in training mode (batch statistics) and in eval mode, on the parity
    images (not used for calibration); None without them."""
    parity_boxes: int
    """Boxes the parity check compared between the checkpoint and the ONNX file."""


def _weights(onnx_path: Path) -> tuple[dict[str, npt.NDArray[np.float32]], dict[str, str]]:
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # onnx raises several types for a damaged file
        raise RecoverError(f"model file {onnx_path} cannot be read as ONNX ({exc}); pass an Ultralytics ONNX "
                           f"export") from exc
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name.startswith("model.")}
    return weights, {p.key: p.value for p in model.metadata_props}


def _names(meta: dict[str, str], onnx_path: Path) -> dict[int, str]:
    from station.detect import ModelError, parse_names

    try:
        return dict(enumerate(parse_names(meta, onnx_path)))
    except ModelError as exc:
        raise RecoverError(str(exc)) from exc


def _candidates(meta: dict[str, str]) -> list[str]:
    """Architectures to try, the one the export's description names first."""
    hint = re.search(r"YOLO(v8|11)([nsmlx])\b", meta.get("description", ""))
    first = [f"yolo{hint.group(1)}{hint.group(2)}"] if hint else []
    return first + [a for a in ARCHITECTURES if a not in first]


def _build(arch: str, nc: int, weights: dict[str, npt.NDArray[np.float32]]) -> Any | None:
    """The unfused architecture whose folded tensors have exactly the ONNX file's names and shapes, or None.

    The classification branch of the head is as wide as the checkpoint it was first trained from (a COCO
    checkpoint makes it 80 wide whatever the class count), so its width is read from the ONNX file and the
    last convolution of each branch is then given the model's own class count.
    """
    import copy

    from torch import nn
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import DetectionModel

    width = next((int(v.shape[0]) for k, v in weights.items() if _HEAD_WIDTH.fullmatch(k)), None)
    try:
        net: Any = DetectionModel(f"{arch}.yaml", nc=width if width and width > nc else nc, verbose=False)
    except Exception as exc:  # Ultralytics raises several types for an unknown yaml
        log.debug("cannot build %s: %s", arch, exc)
        return None
    head: Any = net.model[-1]
    if not isinstance(head, Detect) or getattr(head, "end2end", False):
        return None
    if head.nc != nc:
        branches: list[Any] = list(head.cv3)
        for branch in branches:
            branch[-1] = nn.Conv2d(branch[-1].in_channels, nc, 1)
        head.nc, head.no = nc, nc + head.reg_max * 4
        net.yaml["nc"] = nc
    folded = copy.deepcopy(net).fuse(verbose=False).state_dict()
    folded = {k: v for k, v in folded.items() if not k.endswith("num_batches_tracked")}
    if set(folded) != set(weights) or any(tuple(v.shape) != weights[k].shape for k, v in folded.items()):
        return None
    return net


def _unfold(net: Any, weights: dict[str, npt.NDArray[np.float32]]) -> list[Any]:
    """Load the folded tensors into the unfused model, each batch norm an identity for now; returns the
    (convolution, batch norm) pairs for calibration."""
    import torch
    from torch import nn

    pairs = []
    loaded: set[str] = set()
    with torch.no_grad():
        for name, mod in net.named_modules():
            if isinstance(getattr(mod, "bn", None), nn.BatchNorm2d) and isinstance(getattr(mod, "conv", None),
                                                                                   nn.Conv2d):
                w, b = _tensor(weights[f"{name}.conv.weight"]), _tensor(weights[f"{name}.conv.bias"])
                mod.conv.weight.copy_(w)
                bn = mod.bn
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
                bn.bias.copy_(b)
                pairs.append((mod.conv, bn, b))
                loaded |= {f"{name}.conv.weight", f"{name}.conv.bias"}
        state = net.state_dict()
        for key, value in weights.items():
            if key not in loaded:
                state[key].copy_(_tensor(value))
    return pairs


def _tensor(array: npt.NDArray[np.float32]) -> Any:
    import torch

    return torch.from_numpy(np.array(array, np.float32))  # a writable copy: ONNX arrays are read-only views


def _calibrate(net: Any, pairs: list[Any], batch: Any) -> None:
    """Set each batch norm to the statistics of its convolution's output on ``batch`` (module doc)."""
    import torch

    stats: dict[int, tuple[Any, Any]] = {}

    def hook(index: int) -> Any:
        def record(_mod: Any, _inp: Any, out: Any) -> None:
            stats[index] = (out.mean(dim=(0, 2, 3)), out.var(dim=(0, 2, 3), unbiased=False))
        return record

    handles = [conv.register_forward_hook(hook(i)) for i, (conv, _, _) in enumerate(pairs)]
    net.eval()
    with torch.no_grad():
        net(batch)
        for i, (conv, bn, bias) in enumerate(pairs):
            mean, var = stats[i]
            std = torch.sqrt(var + bn.eps)
            conv.weight.div_(std.view(-1, 1, 1, 1))  # the convolution's output at unit spread
            bn.running_mean.copy_(mean / std)
            bn.running_var.copy_(var / std**2)
            bn.weight.copy_(std * torch.sqrt(bn.running_var + bn.eps))
            bn.bias.copy_(mean + bias)
    for h in handles:
        h.remove()


def _cls_outputs(net: Any, batch: Any, *, train_mode: bool) -> Any:
    """The head's class scores (sigmoid) on ``batch``, every layer in training or eval mode; the running
    statistics are left as they are."""
    import torch

    head = net.model[-1]
    outs: dict[int, Any] = {}

    def grab(index: int) -> Any:
        def record(_mod: Any, _inp: Any, out: Any) -> None:
            outs[index] = out.detach().flatten(2)
        return record

    handles = [branch.register_forward_hook(grab(i)) for i, branch in enumerate(head.cv3)]
    norms = [(m, m.momentum) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m, _ in norms:
        m.momentum = 0.0  # a training-mode pass would otherwise move the running statistics
    net.train(train_mode)
    try:
        with torch.no_grad():
            net(batch)
    finally:
        net.eval()
        for m, momentum in norms:
            m.momentum = momentum
        for h in handles:
            h.remove()
    return torch.cat([outs[i] for i in range(len(head.cv3))], 2).sigmoid()


def train_mode_gap(net: Any, batch: Any, top: int = 100) -> float:
    """Mean absolute difference of the class scores between training mode (batch statistics) and eval mode, over
    each image's ``top`` highest eval-mode scores (where the detections are; the rest is background near 0)."""
    import torch

    train = _cls_outputs(net, batch, train_mode=True).flatten(1)
    ref = _cls_outputs(net, batch, train_mode=False).flatten(1)
    idx = ref.topk(min(top, ref.shape[1]), dim=1).indices
    return float((torch.gather(train, 1, idx) - torch.gather(ref, 1, idx)).abs().mean())


def calibration_batch(onnx_path: Path, images: Sequence[Path | npt.NDArray[np.uint8]]) -> Any:
    """The images letterboxed to the model's input, as the station feeds them, in one batch tensor."""
    import cv2
    import torch

    from station.detect import Detector

    det = Detector(onnx_path, providers=[])
    tensors = []
    for item in images:
        img = item if isinstance(item, np.ndarray) else cv2.imread(str(item), cv2.IMREAD_COLOR)
        if img is None:
            raise RecoverError(f"calibration image {item} cannot be read; remove it or pass other images")
        tensor, _ = det.preprocess(np.ascontiguousarray(img))
        tensors.append(tensor.copy())
    if not tensors:
        raise RecoverError(NO_IMAGES)
    return torch.from_numpy(np.concatenate(tensors).astype(np.float32))


def recover_with_data(onnx_path: Path, out: Path, data: Path, taxonomy: Taxonomy) -> RecoverResult:
    """``recover`` calibrated on a dataset's training split (a data.yaml, YOLO folder or .txt list):
    ``CALIBRATION_IMAGES`` of its images, evenly spread, and up to 8 of the others (else the same ones) for the
    parity check."""
    from training.evaluate import resolve_data
    from training.sources import spread, spread_split

    _, images = resolve_data(data, "train", taxonomy)
    calibration, rest = spread_split(sorted(images), CALIBRATION_IMAGES)
    return recover(onnx_path, out, calibration, parity_images=spread(rest, 8))


def recover(onnx_path: Path, out: Path, images: Sequence[Path | npt.NDArray[np.uint8]], *,
            parity_images: Sequence[Path] = ()) -> RecoverResult:
    """Write a checkpoint at ``out`` that Ultralytics fine-tunes from, with the ONNX model's weights (module
    doc). ``images`` calibrate the batch norms; ``parity_images`` (files; default: those of ``images``) must
    give the same boxes through both, and those not among ``images`` measure the training-mode gap."""
    import json

    import torch

    from training.train import ultralytics_env

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise RecoverError(f"model file {onnx_path} does not exist; pass the ONNX model the station runs")
    if not images:  # before any work: the calibration needs them
        raise RecoverError(NO_IMAGES)
    weights, meta = _weights(onnx_path)
    names = _names(meta, onnx_path)
    ultralytics_env()
    import ultralytics

    net, arch = None, ""
    for arch in _candidates(meta):
        net = _build(arch, len(names), weights)
        if net is not None:
            break
    if net is None:
        raise RecoverError(f"model file {onnx_path}: its weights fit none of {', '.join(ARCHITECTURES)} "
                           f"(an NMS-free, quantised or other export cannot be recovered); keep its checkpoint "
                           f"beside it as {onnx_path.with_suffix('.pt').name}")
    net.names = names
    pairs = _unfold(net, weights)
    files = [i for i in images if isinstance(i, Path)]
    calibrating = set(files)
    held_out = [p for p in parity_images if p not in calibrating]
    both = calibration_batch(onnx_path, [*images, *held_out])  # one letterboxing pass for both
    batch = both[:len(images)]
    _calibrate(net, pairs, batch)
    gap = train_mode_gap(net, both[len(images):]) if held_out else None
    parity_images = list(parity_images) or files
    trained = meta.get("sortloop_train_imgsz", "")
    imgsz = int(trained) if trained.isdigit() else int(batch.shape[2])
    metrics = json.loads(meta.get("sortloop_metrics", "{}") or "{}")
    ckpt = {
        "date": datetime.now(UTC).isoformat(), "version": ultralytics.__version__, "epoch": -1,
        "best_fitness": None, "model": net.float().eval(), "ema": None, "updates": None, "optimizer": None,
        "train_args": {"model": f"{arch}.yaml", "task": "detect", "imgsz": imgsz,
                       "data": f"recovered from {onnx_path.name}"},
        "train_metrics": {f"metrics/{k}": v for k, v in metrics.items()},
        "sortloop_recovered_from": {"onnx": onnx_path.name, "version": meta.get("sortloop_version", ""),
                                    "calibration_images": len(batch), "train_mode_gap": gap},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.part.pt")  # Ultralytics loads only files named *.pt
    torch.save(ckpt, tmp)
    boxes = 0
    if parity_images:  # none where only arrays were given: Ultralytics' predict reads files
        from training.export import ParityError, check_parity

        try:
            boxes = check_parity(tmp, onnx_path, parity_images, imgsz=(int(batch.shape[2]), int(batch.shape[3]))
                                 ).boxes
        except ParityError as exc:
            tmp.unlink(missing_ok=True)
            raise RecoverError(f"the checkpoint recovered from {onnx_path} does not reproduce it ({exc}); keep "
                               f"the model's own checkpoint beside it as {onnx_path.with_suffix('.pt').name}") \
                from exc
    tmp.replace(out)
    log.info("recovered %s from %s (%s, %d tensors; batch norms calibrated on %d images, train-mode gap %s)",
             out, onnx_path, arch, len(weights), len(batch), "unmeasured" if gap is None else f"{gap:.4f}")
    return RecoverResult(out, arch, len(weights), len(batch), gap, boxes)
