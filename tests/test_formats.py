"""Dataset formats (round trips) and validation (every problem counted)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from station.taxonomy import load_taxonomy
from training.formats import (
    Box,
    FormatError,
    Sample,
    read_any,
    read_yolo,
    write_any,
    write_yolo,
)
from training.validate import validate

NAMES = ["battery", "phone", "plastic"]


def make_image(path: Path, w: int = 96, h: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def make_samples(root: Path) -> list[Sample]:
    a = make_image(root / "src" / "a.jpg", 96, 64, 1)
    b = make_image(root / "src" / "b.png", 50, 80, 2)
    c = make_image(root / "src" / "c.jpg", 40, 40, 3)
    return [
        Sample(a, 96, 64, [Box((3.3, 4.7, 50.2, 60.9), "battery"), Box((0, 0, 96, 64), "plastic")]),
        Sample(b, 50, 80, [Box((10.5, 20.25, 11.75, 79.5), "phone")]),
        Sample(c, 40, 40, []),  # an image with no objects survives every format
    ]


def _dst(fmt: str, tmp: Path) -> Path:
    return tmp / ("out.json" if fmt in ("coco", "labelstudio") else "out")


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc", "labelstudio"])
def test_round_trip_is_exact_to_half_a_pixel(tmp_path: Path, fmt: str) -> None:
    samples = make_samples(tmp_path)
    path = write_any(fmt, samples, _dst(fmt, tmp_path), NAMES)  # type: ignore[arg-type]
    back = read_any(fmt, tmp_path / "out" if fmt in ("yolo", "voc") else path)  # type: ignore[arg-type]
    by_name = {s.image_path.stem.split("__")[-1]: s for s in back}
    assert sorted(by_name) == ["a", "b", "c"]
    for want in samples:
        got = by_name[want.image_path.stem]
        assert (got.width, got.height) == (want.width, want.height)
        assert got.image_path.resolve().read_bytes() == want.image_path.read_bytes()
        assert [b.class_name for b in got.boxes] == [b.class_name for b in want.boxes]
        for gb, wb in zip(got.boxes, want.boxes, strict=True):
            assert np.allclose(gb.xyxy, wb.xyxy, atol=0.5), (fmt, gb, wb)


@pytest.mark.parametrize(("src", "dst"), [("coco", "voc"), ("voc", "labelstudio"), ("labelstudio", "yolo"),
                                          ("yolo", "coco")])
def test_chained_conversions_keep_boxes(tmp_path: Path, src: str, dst: str) -> None:
    samples = make_samples(tmp_path)
    first = write_any(src, samples, _dst(src, tmp_path / "1"), NAMES)  # type: ignore[arg-type]
    mid = read_any(src, first.parent if src in ("yolo",) else first)  # type: ignore[arg-type]
    second = write_any(dst, mid, _dst(dst, tmp_path / "2"), NAMES)  # type: ignore[arg-type]
    back = read_any(dst, second.parent if dst == "yolo" else second)  # type: ignore[arg-type]
    got = sorted((b.class_name, *np.round(b.xyxy)) for s in back for b in s.boxes)
    want = sorted((b.class_name, *np.round(b.xyxy)) for s in samples for b in s.boxes)
    assert len(got) == len(want) == 3
    for g, w in zip(got, want, strict=True):
        assert g[0] == w[0] and np.allclose(g[1:], w[1:], atol=1)


def test_yolo_polygon_lines_become_boxes_and_bad_lines_notes(tmp_path: Path) -> None:
    make_image(tmp_path / "images" / "x.jpg", 100, 50)
    (tmp_path / "labels").mkdir()
    lines = ["1 0.1 0.2 0.5 0.2 0.3 0.8", "0 0.5 0.5 0.2", "foo 1 2 3 4", "9 0.5 0.5 0.1 0.1"]
    (tmp_path / "labels" / "x.txt").write_text("\n".join(lines))  # no final newline, as in the sources
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [battery, phone]\n")
    [s] = read_yolo(tmp_path)
    assert [b.class_name for b in s.boxes] == ["phone", "<class index 9>"]
    assert np.allclose(s.boxes[0].xyxy, (10, 10, 50, 40))
    assert len(s.notes) == 2


@pytest.mark.parametrize(("fmt", "content", "match"), [
    ("coco", "{not json", "cannot read as JSON"),
    ("coco", '{"images": []}', "not a COCO detection file"),
    ("labelstudio", '{"a": 1}', "expected a Label Studio export"),
])
def test_bad_files_raise_format_errors_naming_the_path(tmp_path: Path, fmt: str, content: str, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(FormatError, match=match) as err:
        read_any(fmt, path)  # type: ignore[arg-type]
    assert str(path) in str(err.value)


def test_writer_refuses_classes_outside_the_names(tmp_path: Path) -> None:
    s = make_samples(tmp_path)
    with pytest.raises(FormatError, match="not in the names list"):
        write_yolo(s, tmp_path / "y", ["battery"])


# ------------------------------------------------------------------------------------------ validation


def _bad_dataset(tmp: Path) -> list[Sample]:
    good = make_image(tmp / "good.jpg", 100, 80, 1)
    dup = tmp / "dup.jpg"
    dup.write_bytes(good.read_bytes())
    corrupt = tmp / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg at all" * 10)
    truncated = tmp / "truncated.jpg"
    truncated.write_bytes(make_image(tmp / "t_src.jpg", 200, 200, 5).read_bytes()[:400])
    empty = tmp / "empty.jpg"
    empty.write_bytes(b"")
    nolabel = make_image(tmp / "nolabel.jpg", 60, 60, 2)
    empty_label = tmp / "nolabel.txt"
    empty_label.write_text("")
    return [
        Sample(good, 100, 80, [Box((10, 10, 50, 50), "battery"),       # fine
                               Box((-20, 10, 30, 50), "phone"),        # clipped
                               Box((90, 70, 130, 95), "phone"),        # clipped
                               Box((120, 10, 150, 50), "phone"),       # fully outside: dropped
                               Box((10, 10, 10.5, 50), "phone"),       # degenerate
                               Box((10, 10, 40, 40), "toaster")],      # unknown class
               notes=["good.txt: malformed line 'x'"]),
        Sample(dup, 100, 80, [Box((1, 1, 5, 5), "battery")]),
        Sample(corrupt, 100, 80, [Box((1, 1, 5, 5), "battery")]),
        Sample(truncated, 200, 200, []),
        Sample(empty, 0, 0, []),
        Sample(nolabel, 60, 60, [], label_path=empty_label),
        Sample(tmp / "missing.jpg", 10, 10, []),
    ]


def test_validation_counts_every_problem_and_keeps_the_rest(tmp_path: Path) -> None:
    report = validate(_bad_dataset(tmp_path), load_taxonomy())
    assert report.counts == {"box_clipped": 2, "box_outside": 1, "corrupt_image": 2, "degenerate_box": 1,
                             "duplicate_image": 1, "empty_image_file": 1, "malformed_label": 1,
                             "missing_image": 1, "unknown_class": 1}
    assert report.notices["empty_label_file"] == 1
    assert [s.image_path.name for s in report.samples] == ["good.jpg", "nolabel.jpg"]
    kept = report.samples[0].boxes
    assert [b.xyxy for b in kept] == [(10, 10, 50, 50), (0, 10, 30, 50), (90, 70, 100, 80)]
    assert report.n_images == 7 and report.n_boxes == 8
    assert "duplicate_image" in report.table() and '"box_outside": 1' in report.to_json()


def test_subpixel_overshoot_is_clipped_without_a_problem(tmp_path: Path) -> None:
    img = make_image(tmp_path / "a.jpg", 100, 80)
    report = validate([Sample(img, 100, 80, [Box((-0.2, 0, 100.3, 80), "battery")])], load_taxonomy())
    assert report.ok and report.samples[0].boxes[0].xyxy == (0, 0, 100, 80)
    assert report.notices["box_clipped_subpixel"] == 1


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_convert_and_validate(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from training.data_cli import data_app

    samples = make_samples(tmp_path)
    coco = write_any("coco", samples, tmp_path / "in.json", NAMES)
    runner = CliRunner()
    res = runner.invoke(data_app, ["convert", str(coco), str(tmp_path / "ls.json"), "--from", "coco", "--to",
                                   "labelstudio"])
    assert res.exit_code == 0, res.output
    assert "3 images, 3 boxes" in res.output
    back = read_any("labelstudio", tmp_path / "ls.json")
    assert sum(len(s.boxes) for s in back) == 3
    res = runner.invoke(data_app, ["validate", str(tmp_path / "ls.json"), "--format", "labelstudio", "--report",
                                   str(tmp_path / "r.json")])
    assert res.exit_code == 0 and (tmp_path / "r.json").is_file()
    res = runner.invoke(data_app, ["convert", str(coco), str(tmp_path / "x"), "--from", "cvat"])
    assert res.exit_code == 2 and "'cvat' is not a format" in res.output
    res = runner.invoke(data_app, ["validate", str(tmp_path / "missing"), "--format", "voc"])
    assert res.exit_code == 2 and "does not exist" in res.output
