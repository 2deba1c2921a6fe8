"""`sortloop data pack`: a dataset shrunk for a remote trainer keeps every label and every image, at the
training size, in one self-contained folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import yaml
from typer.testing import CliRunner

from station.taxonomy import load_taxonomy
from training.evaluate import label_path, resolve_data
from training.pack import PackError, pack


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from station.simulator import render_dataset

    out = tmp_path_factory.mktemp("sim")
    render_dataset(out, 10, seed=3, width=400, height=240, items_per_image=(1, 3))
    return out / "data.yaml"


def test_pack_resizes_to_the_long_side_and_keeps_every_label(data: Path, tmp_path: Path) -> None:
    result = pack(data, tmp_path / "packed", long_side=160, quality=80, workers=1)
    assert result.images == {"train": 10, "val": 10}
    names, images = resolve_data(result.data_yaml, "train", load_taxonomy())
    assert names == load_taxonomy().names and len(images) == 10
    spec = yaml.safe_load(result.data_yaml.read_text())
    assert spec["path"] == "." and spec["train"] == "images/train"  # self-contained: moves with its folder
    _, sources = resolve_data(data, "train", load_taxonomy())
    by_stem = {p.stem: p for p in sources}
    for image in images:
        assert image.suffix == ".webp"
        img = cv2.imread(str(image))
        assert img is not None and img.shape[:2] == (96, 160)  # 400x240 → long side 160
        source = by_stem[image.stem.split("_", 1)[1]]
        assert label_path(image).read_text() == label_path(source).read_text()
    assert result.bytes_out < result.bytes_in


def test_pack_spreads_a_capped_split_and_leaves_others_whole(data: Path, tmp_path: Path) -> None:
    result = pack(data, tmp_path / "packed", long_side=200, splits=["train", "val"], max_images={"val": 3},
                  workers=2)
    assert result.images == {"train": 10, "val": 3}
    kept = sorted(p.stem.split("_", 1)[1] for p in (tmp_path / "packed" / "images" / "val").iterdir())
    stems = sorted(p.stem for p in (data.parent / "images").iterdir())
    assert kept == [stems[i] for i in (0, 3, 6)]  # evenly spread over the sorted split


def test_images_of_the_same_name_in_two_folders_both_pack(data: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for sub in ("images", "labels"):
            (tmp_path / name / sub).symlink_to(data.parent / sub)
    spec = {"path": str(tmp_path), "train": ["a/images", "b/images"], "val": "a/images",
            "names": dict(enumerate(load_taxonomy().names))}
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(spec))
    result = pack(tmp_path / "two.yaml", tmp_path / "packed", long_side=128, workers=1)
    assert result.images["train"] == 20
    assert len(list((tmp_path / "packed" / "images" / "train").iterdir())) == 20


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"long_side": 8}, "too small"),
        ({"quality": 0}, "out of range"),
        ({"splits": ["dev"]}, "unknown split"),
        ({"data": "missing.yaml"}, "not found"),
        ({"out": "full"}, "not empty"),
        ({"out": "full/x"}, "not empty"),   # a file where the folder should go
    ],
)
def test_bad_input_names_the_fix(data: Path, tmp_path: Path, kwargs: dict[str, object], error: str) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    args: dict[str, object] = {"long_side": 160, **kwargs}
    src = tmp_path / str(args.pop("data")) if "data" in args else data
    out = tmp_path / str(args.pop("out", "packed"))
    with pytest.raises(PackError, match=error):
        pack(src, out, **args)  # type: ignore[arg-type]


def test_cli_reports_the_pack(data: Path, tmp_path: Path) -> None:
    from training.data_cli import data_app

    result = CliRunner().invoke(data_app, ["pack", str(data), str(tmp_path / "p"), "--long-side", "160",
                                      "--max-val", "2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "packed train 10, val 2 images" in result.output
    again = CliRunner().invoke(data_app, ["pack", str(data), str(tmp_path / "p")])
    assert again.exit_code == 2 and "not empty" in again.output
