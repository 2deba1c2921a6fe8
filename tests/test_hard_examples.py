"""Hard-example mining (``sortloop data hard-examples``): which photos count as hard, training lists only, and the
replay data.yaml that repeats them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from test_detect import build_onnx, ultra_meta
from typer.testing import CliRunner

from station.taxonomy import load_taxonomy
from training.evaluate import EvalError
from training.hard_examples import HardPhoto, faults, mine, replay_data
from training.source_eval import SourceFigures

NAMES = list(load_taxonomy().names)


@pytest.mark.parametrize(("figures", "expected"), [
    ({"items": 1, "found": 1, "right": 1, "clean_photos": 1}, ()),
    ({"items": 2, "found": 1, "right": 1, "clean_photos": 1}, ("missed",)),
    ({"items": 1, "found": 1, "right": 0, "clean_photos": 1}, ("wrong stream",)),
    ({"items": 1, "found": 1, "right": 0, "clean_photos": 1, "clean_flagged": 1}, ("wrong stream", "false hazard")),
    ({"items": 1, "found": 0, "right": 0, "hazard_photos": 1}, ("missed", "missed hazard")),
    ({"items": 1, "found": 1, "right": 1, "hazard_photos": 1, "hazard_flagged": 1}, ()),
])
def test_what_makes_a_photo_hard(figures: dict[str, int], expected: tuple[str, ...]) -> None:
    assert faults(SourceFigures("x", photos=1, **figures)) == expected


def _build(root: Path, shared: Path) -> Path:
    """A two-photo build: a can where the constant detector sees a can (right), a battery elsewhere (hard)."""
    build = root / "build"
    for folder in ("images/train", "labels/train", "lists"):
        (build / folder).mkdir(parents=True)
    labels = {"trashnetpp__can": f"{NAMES.index('can')} 0.5 0.5 0.25 0.125",
              "trashnetpp__cell": f"{NAMES.index('battery')} 0.2 0.2 0.2 0.2"}
    files = []
    for name, label in labels.items():
        cv2.imwrite(str(build / "images/train" / f"{name}.jpg"), np.full((64, 64, 3), 128, np.uint8))
        (build / "labels/train" / f"{name}.txt").write_text(label + "\n")
        files.append({"label": f"labels/train/{name}.txt", "image": str(shared / "datasets/trashnetpp" / name)})
    (build / "lists/train_trashnetpp.txt").write_text(
        "".join(f"{build / 'images/train' / n}.jpg\n" for n in labels))
    (build / "lists/test_trashnetpp.txt").write_text("")
    (build / "data.yaml").write_text(yaml.safe_dump({"path": str(build), "train": "images/train",
                                                     "val": "images/val", "names": dict(enumerate(NAMES))}))
    (build / "manifest.json").write_text(json.dumps({
        "settings": {"shared_root": str(shared)}, "files": files,
        "sources": [{"name": "trashnetpp", "path": "datasets/trashnetpp"}]}))
    return build


def test_the_cli_mines_the_wrong_photo_and_replays_it(tmp_path: Path) -> None:
    import typer

    from training.cli import register

    app = typer.Typer()
    register(app)
    build = _build(tmp_path, tmp_path / "shared")
    rows = np.asarray([(24, 28, 40, 36, 0.8, NAMES.index("can"))], np.float32)[None]
    model = build_onnx(tmp_path / "can.onnx", rows, metadata=ultra_meta(NAMES, end2end="True"))
    out = tmp_path / "hard"
    result = CliRunner().invoke(app, ["data", "hard-examples", str(build), "--out", str(out), "--model", str(model),
                                      "--classifier", "none", "--lists", "train_trashnetpp",
                                      "--replay-source", "trashnetpp", "--hard-times", "3", "--source-times", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["photos"] == 2 and summary["hard"] == 1
    assert summary["reasons"] == {"missed": 1, "missed hazard": 1}
    replay = (out / "replay.txt").read_text().split()
    assert sorted(Path(p).stem for p in replay) == ["trashnetpp__can"] * 2 + ["trashnetpp__cell"] * 3
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["train"] == [str(build / "images/train"), str((out / "replay.txt").resolve())]


def test_a_held_out_list_is_never_mined(tmp_path: Path) -> None:
    build = _build(tmp_path, tmp_path / "shared")
    with pytest.raises(EvalError, match="training lists only"):
        mine(build, None, None, load_taxonomy(), [build / "lists/test_trashnetpp.txt"])  # type: ignore[arg-type]


def test_an_unknown_replay_source_is_named(tmp_path: Path) -> None:
    build = _build(tmp_path, tmp_path / "shared")
    hard = [HardPhoto(str(build / "images/train/trashnetpp__cell.jpg"), "trashnetpp", ("missed",))]
    with pytest.raises(EvalError, match=r"no source named trashnet-object in .*trashnetpp"):
        replay_data(build, hard, tmp_path / "out", sources=["trashnet-object"])
