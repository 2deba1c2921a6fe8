"""A tiny dataset build on project-made images (and a small one on ../shared when it is there)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from shared_data import SHARED, needs_shared

from station.taxonomy import load_taxonomy
from training.build import BuildError, build_dataset
from training.cutouts import CutoutReport
from training.formats import image_size
from training.manifest import Manifest
from training.split import DEFAULT_THRESHOLD, phash64


def photo(seed: int, w: int = 160, h: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), rng.integers(0, 255, 3), np.uint8)
    for _ in range(5):
        c = tuple(int(v) for v in rng.integers(0, min(w, h), 2))
        cv2.circle(img, c, int(rng.integers(8, 40)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img


def white_crop(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((120, 120, 3), 245, np.uint8)
    colour = tuple(int(v) for v in rng.integers(0, 150, 3))
    cv2.ellipse(img, (60, 60), (int(rng.integers(20, 40)), int(rng.integers(15, 30))), int(rng.integers(0, 180)),
                0, 360, colour, -1)
    return img


@pytest.fixture
def fake_shared(tmp_path: Path) -> tuple[Path, Path]:
    """A shared root with one box source (YOLO, with a planted near-duplicate and a corrupt image) and one
    crop source (train/val class folders on white), plus their class maps."""
    root = tmp_path / "shared"
    boxes = root / "datasets" / "boxes"
    (boxes / "images").mkdir(parents=True)
    (boxes / "labels").mkdir()
    (boxes / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [Bottle, Phone, Junk]\n")
    for i in range(20):
        cv2.imwrite(str(boxes / "images" / f"p{i:02d}.jpg"), photo(i))
        (boxes / "labels" / f"p{i:02d}.txt").write_text(f"{i % 2} 0.5 0.5 0.3 0.4\n2 0.2 0.2 0.1 0.1\n")
    near = np.clip(cv2.resize(photo(0), (140, 105)).astype(np.int16) + 10, 0, 255).astype(np.uint8)
    cv2.imwrite(str(boxes / "images" / "zz_copy.jpg"), near, [cv2.IMWRITE_JPEG_QUALITY, 70])
    (boxes / "labels" / "zz_copy.txt").write_text("0 0.5 0.5 0.3 0.4\n")
    (boxes / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not an image")
    crops = root / "datasets" / "crops"
    for split, n in (("train", 6), ("val", 3)):
        for cls in ("Cell", "Board"):
            d = crops / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(d / f"{cls}{i}.jpg"), white_crop(100 * len(split) + 10 * len(cls) + i))
    maps = tmp_path / "sources"
    maps.mkdir()
    common = "licence: test\nattribution: made by the test\n"
    (maps / "boxes.yaml").write_text(f"name: boxes\npath: datasets/boxes\nkind: boxes\n{common}"
                                     "classes: {Bottle: plastic, Phone: phone, Junk: drop}\n")
    (maps / "crops.yaml").write_text(f"name: crops\npath: datasets/crops\nkind: crops\n{common}"
                                     "folders: {train: train, val: heldout}\nclasses: {Cell: battery, Board: pcb}\n")
    return root, maps


def _labels(out: Path, split: str) -> dict[str, list[list[float]]]:
    return {p.stem: [[float(v) for v in ln.split()] for ln in p.read_text().splitlines()]
            for p in sorted((out / "labels" / split).glob("*.txt"))}


def test_tiny_build(tmp_path: Path, fake_shared: tuple[Path, Path]) -> None:
    root, maps = fake_shared
    out = tmp_path / "ds"
    tax = load_taxonomy()
    m = build_dataset(out, shared_root=root, sources_dir=maps, seed=1, synth_n=10, sim_n=10, imgsz=160,
                      fractions=(0.6, 0.2, 0.2), workers=1)
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["path"] == str(out.resolve()) and list(data["names"].values()) == tax.names
    assert m.validation == {"corrupt_image": 1}
    assert m.class_maps["boxes"]["Junk"] == "drop" and m.taxonomy_digest == tax.digest
    # real photos are symlinks into the shared root; their labels use taxonomy indices; Junk boxes are gone
    split_of = {}
    for split in ("train", "val", "test"):
        for img in (out / "images" / split).iterdir():
            assert img.is_symlink()
            split_of[img.stem] = split
            if img.stem.startswith("boxes__"):
                assert img.resolve().is_relative_to(root)
        for stem, rows in _labels(out, split).items():
            mapped = {tax.index(c) for c in ("plastic", "phone", "battery", "pcb")}
            assert stem.startswith("sim__") or all(int(r[0]) in mapped for r in rows)
    assert split_of["boxes__p00"] == split_of["boxes__zz_copy"]  # the near-duplicate follows its original
    assert sum(m.images[s].get("boxes", 0) for s in m.images) == 21
    assert sum(m.images[s].get("synth-belt", 0) + m.images[s].get("synth-real", 0) for s in m.images) == 10
    assert sum(m.images[s].get("sim", 0) for s in m.images) == 10
    assert set().union(*m.counts.values()) - {"plastic", "phone", "battery", "pcb"}  # procedural sim classes
    # simulator renders drawn from cut-outs use only the cut-outs of their split: held-out crops never in train
    # (a train crop that duplicates a held-out one moves to the held-out side), no cut-out in two splits
    seen: dict[str, str] = {}
    for split in ("train", "val", "test"):
        for link in (out / "work" / "sprites" / split).rglob("*.png"):
            assert split != "train" or "__val__" not in link.name
            assert seen.setdefault(link.name, split) == split
    assert seen
    # counts in the manifest are the labels on disk
    for split in ("train", "val", "test"):
        on_disk = sum(len(rows) for rows in _labels(out, split).values())
        assert on_disk == sum(m.counts[split].values())
    # held-out crops: only the val folder, listed for evaluation, never in train
    battery = (out / m.lists["test_battery_crops"]).read_text().split()
    assert battery and all("/val/Cell/" in str(Path(p).resolve()) for p in battery)
    assert not any("/crops/val/" in str(p.resolve()) for p in (out / "images" / "train").iterdir())
    # training crops with a cut-out are training photos too, boxed by the cut-out's mask
    cutouts = {c.origin.resolve(): c for c in CutoutReport.load(out / "work" / "cutouts" / "index.json").cutouts}
    photos = (out / m.lists["train_crop-photos"]).read_text().split()
    assert len(photos) == m.images["train"]["crop-photos"] > 0
    for img in map(Path, photos):
        origin = img.resolve()
        assert "/crops/train/" in str(origin) and origin in cutouts
        (row,) = _labels(out, "train")[img.stem]
        w, h = image_size(origin)
        x1, y1, x2, y2 = cutouts[origin].bbox
        assert row == pytest.approx([row[0], (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h],
                                    abs=1e-5)
    assert {"test_boxes", "train_synth-belt"} <= set(m.lists)
    assert Manifest.load(out / "manifest.json").digest() == m.digest()
    assert len(m.files) == sum(len(list((out / "labels" / s).glob("*.txt"))) for s in ("train", "val", "test",
                                                                                         "crops"))


def test_heldout_per_class_holds_out_the_same_train_crops_from_every_build(tmp_path: Path,
                                                                            fake_shared: tuple[Path, Path]) -> None:
    from training.sources import load_source_map, read_crop_source

    root, maps = fake_shared
    path = maps / "crops.yaml"
    path.write_text(path.read_text() + "heldout_per_class: {battery: 2}\n")
    smap = load_source_map(path, load_taxonomy())
    train_cells = sorted((root / "datasets" / "crops" / "train" / "Cell").iterdir())
    held = {train_cells[0], train_cells[3]}  # evenly spread over the 6 sorted files
    for limit in (None, 2):  # a limited build holds out the same files and limits the rest
        crops, _ = read_crop_source(smap, root, limit)
        pools = {c.image_path: c.pool for c in crops}
        assert {p for p in train_cells if pools.get(p) == "heldout"} == held
        assert sum(pools.get(p) == "train" for p in train_cells) == (4 if limit is None else 2)
        assert all(c.pool == "train" for c in crops if "/train/Board/" in str(c.image_path))  # other classes keep all

    out = tmp_path / "ds"
    m = build_dataset(out, shared_root=root, sources_dir=maps, seed=1, synth_n=10, sim_n=10, imgsz=160,
                      fractions=(0.6, 0.2, 0.2), workers=1)
    battery = {Path(p).resolve() for p in (out / m.lists["test_battery_crops"]).read_text().split()}
    assert held <= battery and len(battery) == 3 + 2  # the val folder's three and the two held out
    photos = {Path(p).resolve() for p in (out / m.lists["train_crop-photos"]).read_text().split()}
    assert photos and not photos & held
    origin = {c.path.resolve(): c.origin.resolve()
              for c in CutoutReport.load(out / "work" / "cutouts" / "index.json").cutouts}
    sprites = [origin[link.resolve()] for link in (out / "work" / "sprites" / "train").rglob("*.png")]
    assert sprites and not set(sprites) & held


def test_build_is_deterministic(tmp_path: Path, fake_shared: tuple[Path, Path]) -> None:
    root, maps = fake_shared
    kw = {"shared_root": root, "sources_dir": maps, "seed": 3, "synth_n": 40, "sim_n": 12, "imgsz": 96}
    a = build_dataset(tmp_path / "a", **kw, workers=1)  # type: ignore[arg-type]
    b = build_dataset(tmp_path / "b", **kw, workers=2)  # type: ignore[arg-type]  # processes change nothing
    assert a.digest() == b.digest()
    gen_a = sorted((tmp_path / "a" / "generated").rglob("*.jpg"))
    gen_b = sorted((tmp_path / "b" / "generated").rglob("*.jpg"))
    assert [p.read_bytes() for p in gen_a] == [p.read_bytes() for p in gen_b] and gen_a
    c = build_dataset(tmp_path / "a", **{**kw, "seed": 4}, workers=1)  # type: ignore[arg-type]
    assert c.digest() != a.digest()
    assert a.images["train"]["crop-photos"] > 0
    d = build_dataset(tmp_path / "d", **kw, workers=1, crop_photos=False)  # type: ignore[arg-type]
    assert "crop-photos" not in d.images["train"] and d.settings["crop_photos"] is False


def test_build_refuses_to_write_into_shared(fake_shared: tuple[Path, Path]) -> None:
    root, maps = fake_shared
    with pytest.raises(BuildError, match="inside the shared data"):
        build_dataset(root / "datasets" / "out", shared_root=root, sources_dir=maps, synth_n=0, sim_n=0)


@needs_shared(*(SHARED / "datasets" / s for s in ("trashnetpp", "ewaste-devices", "ewaste-classes", "trashnet-objects",
                                                  "clothing")))
def test_small_build_on_shared_data(tmp_path: Path) -> None:
    m = build_dataset(tmp_path / "ds", shared_root=SHARED, seed=0, synth_n=8, sim_n=4, limit_per_source=12,
                      imgsz=160, workers=1)
    assert {s.name for s in m.sources} == {"trashnetpp", "ewaste-devices", "ewaste-classes", "trashnet-objects",
                                           "clothing"}
    assert m.images["test"].get("clothing", 0) > 0  # the garment photos of the test split, listed on their own
    assert sum(m.images["train"].values()) > 0 and m.synthetic_share["train"] > 0
    assert "trashnetpp:E-waste" in m.refinement
    for img in (tmp_path / "ds" / "images" / "train").iterdir():
        assert img.is_symlink()
    assert not any(p.name.endswith(".cache") for p in SHARED.rglob("*.cache"))


def test_project_source_maps_are_valid() -> None:
    from training.sources import load_source_maps

    maps = {m.name: m for m in load_source_maps(taxonomy=load_taxonomy())}
    assert set(maps) == {"trashnetpp", "ewaste-devices", "ewaste-classes", "trashnet-objects", "clothing"}
    assert set(maps["clothing"].classes.values()) == {"textile"} and maps["clothing"].labels_csv == "labels.csv"
    assert maps["trashnetpp"].refine["E-waste"].teacher_classes["tv"] == "monitor"
    assert maps["ewaste-classes"].classes["Microwave"] == "drop"
    assert maps["trashnet-objects"].overrides["metal/metal5.jpg"] == "metal"


@pytest.mark.parametrize(("body", "match"), [
    ("kind: boxes\nclasses: {A: toaster}", "not in the taxonomy"),
    ("kind: boxes\nclasses: {A: battery}\ncolour: red", "Extra inputs are not permitted"),
    ("kind: boxes\nclasses: {A: battery}\nrefine: {B: {teacher: t.onnx, fallback: e_device, teacher_classes: {}}}",
     "not in classes"),
    ("kind: boxes\nclasses: {A: battery}\nheldout_per_class: {battery: 5}", "for crop sources only"),
    ("kind: crops\nfolders: {train: train}\nclasses: {A: battery}\nheldout_per_class: {battery: 0}",
     "at least 1"),
    ("kind: crops\nfolders: {train: train}\nclasses: {A: battery}\nheldout_per_class: {phone: 5}",
     "no class this source maps to"),
    ("kind: boxes\nclasses: {A: battery}\nlabels_csv: labels.csv", "for crop sources only"),
])
def test_bad_source_maps_name_the_file(tmp_path: Path, body: str, match: str) -> None:
    from training.sources import SourceError, load_source_map

    path = tmp_path / "bad.yaml"
    path.write_text(f"name: x\npath: datasets/x\nlicence: l\nattribution: a\n{body}\n")
    with pytest.raises(SourceError, match=match) as err:
        load_source_map(path, load_taxonomy())
    assert str(path) in str(err.value)


@pytest.mark.parametrize(("csv_text", "found", "match"), [
    ("image,label\na.jpg,Shirt\nb.jpg,Hat\nc.jpg,Shirt\ngone.jpg,Shirt\n", {"textile": 3}, None),
    ("file,class\na.jpg,Shirt\n", None, "needs the columns 'image' and 'label'"),
    (None, None, "labels file .* not found"),
])
def test_crop_source_labelled_by_a_csv(tmp_path: Path, csv_text: str | None, found: dict | None,
                                       match: str | None) -> None:
    """A flat folder of crops labelled by a CSV (the clothing source): files the CSV names and that exist."""
    from training.sources import SourceError, load_source_map, read_crop_source

    root = tmp_path / "datasets" / "wear"
    (root / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "c.jpg", "unlisted.jpg"):
        cv2.imwrite(str(root / "images" / name), white_crop(len(name)))
    if csv_text is not None:
        (root / "labels.csv").write_text(csv_text)
    path = tmp_path / "wear.yaml"
    path.write_text("name: wear\npath: datasets/wear\nkind: crops\nlicence: l\nattribution: a\n"
                    "labels_csv: labels.csv\nfolders: {images: split}\nclasses: {Shirt: textile, Hat: textile}\n")
    smap = load_source_map(path, load_taxonomy())
    if match is not None:
        with pytest.raises(SourceError, match=match):
            read_crop_source(smap, tmp_path)
        return
    crops, stats = read_crop_source(smap, tmp_path)
    assert {c.class_name: sum(1 for x in crops if x.class_name == c.class_name) for c in crops} == found
    assert sorted(c.image_path.name for c in crops) == ["a.jpg", "b.jpg", "c.jpg"]
    assert stats.mapped == {"Shirt → textile": 2, "Hat → textile": 1}


def test_limit_spreads_over_the_source() -> None:
    from training.sources import spread

    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread([1, 2], 5) == [1, 2] and spread([1, 2], None) == [1, 2]


def test_spare_images_are_unseen(tmp_path: Path, fake_shared: tuple[Path, Path],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With --limit, --spare lists left-out images for evaluation, none resembling an image the build read."""
    root, maps = fake_shared
    monkeypatch.chdir(tmp_path)
    m = build_dataset(Path("ds"), shared_root=root, sources_dir=maps, seed=1, synth_n=0, sim_n=0, imgsz=160,
                      limit_per_source=12, spare=50, workers=1)  # 12 of 22 photos: p00 read, zz_copy left out
    monkeypatch.chdir(root)  # lists name their images whatever the folder they are read from
    out = tmp_path / "ds"
    for name in m.lists.values():
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in (out / name).read_text().split())
    read = {p.resolve() for s in ("train", "val", "test", "crops") for p in (out / "images" / s).iterdir()}
    spare = [Path(p) for p in (out / m.lists["spare_boxes"]).read_text().split()]
    assert len(spare) == m.spare["boxes"] > 0 and sum(m.spare.values()) == len(list((out / "images" /
                                                                                        "spare").iterdir()))
    read_hashes = [phash64(p) for p in read]
    for img in (out / "images" / "spare").iterdir():
        origin = img.resolve()
        assert origin not in read and origin.is_relative_to(root)
        assert min(bin(phash64(origin) ^ h).count("1") for h in read_hashes) > DEFAULT_THRESHOLD
        assert (out / "labels" / "spare" / f"{img.stem}.txt").read_text()
    # the planted near-duplicate of a read photo was left out by the limit, and is not spare either
    spare_names = {p.resolve().name for p in spare}
    assert "p00.jpg" in {p.name for p in read} and "zz_copy.jpg" not in spare_names
    assert "p01.jpg" in spare_names and "broken.jpg" not in spare_names  # validated like the read photos
    # without --spare (or without --limit) there is no spare list
    plain = build_dataset(tmp_path / "plain", shared_root=root, sources_dir=maps, seed=1, synth_n=0, sim_n=0,
                          imgsz=160, limit_per_source=10, workers=1)
    assert not plain.spare and not any(k.startswith("spare_") for k in plain.lists)


def test_cutouts_smaller_than_their_sources_min_box_area_are_parts(tmp_path: Path) -> None:
    """A garment fills its photo: a cut-out box under ``min_box_area`` of the photo is a part (one shoe of a pair),
    left out and counted as rejected; other sources keep theirs."""
    from training.build import _drop_part_cutouts
    from training.cutouts import Cutout

    photo = tmp_path / "p.jpg"
    cv2.imwrite(str(photo), white_crop(1))  # 120 × 120
    cuts = [Cutout(tmp_path / f"{i}.png", cls, src, "split", f"g{i}", photo, box)
            for i, (cls, src, box) in enumerate([("textile", "wear", (0, 0, 100, 100)),
                                                 ("textile", "wear", (0, 0, 30, 120)),
                                                 ("battery", "cells", (0, 0, 30, 30))])]
    report = CutoutReport(cutouts=cuts)
    report.accepted.update({"textile": 2, "battery": 1})
    kept = _drop_part_cutouts(report, {"wear": 0.35, "cells": 0.0})
    assert [c.group for c in kept.cutouts] == ["g0", "g2"]
    assert kept.accepted["textile"] == 1 and kept.rejected["textile"] == 1 and kept.reasons["part_of_item"] == 1
