"""``sortloop data …``: build the training dataset, validate and convert label sets, make cut-outs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from training.formats import FORMATS, FormatError, FormatName, class_names, read_any, write_any

log = logging.getLogger(__name__)

data_app = typer.Typer(help="Datasets: build, validate, convert, cut-outs.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _format(value: str, option: str) -> FormatName:
    if value not in FORMATS:
        raise _fail(f"{option} {value!r} is not a format; use one of {', '.join(FORMATS)}")
    return value  # type: ignore[return-value]


@data_app.command("build")
def build(
    out: Annotated[Path, typer.Argument(help="Output folder of the YOLO dataset (created).")] = Path("data/sortloop"),
    shared_root: Annotated[Path | None, typer.Option(help="Folder holding datasets/ and weights/.")] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same dataset.")] = 0,
    synth_n: Annotated[int, typer.Option(help="Synthetic pasted scenes (all splits).")] = 2000,
    sim_n: Annotated[int, typer.Option(help="Simulator renders (all splits); 0 for none.")] = 600,
    limit: Annotated[int | None, typer.Option(help="At most this many images per source (quick builds).")] = None,
    plain_n: Annotated[int, typer.Option(help="Scenes of a few cut-outs on procedural table, floor and cloth "
                                              "surfaces at wide scales, batteries weighted up (all splits).")] = 0,
    imgsz: Annotated[int, typer.Option(help="Long side of generated images (px).")] = 640,
    crop_photos: Annotated[bool, typer.Option(help="Training crops also as photos (boxed by their cut-out), "
                                                   "not only pasted into scenes.")] = True,
    spare: Annotated[int, typer.Option(help="With --limit: up to this many left-out images per source as "
                                            "evaluation lists lists/spare_*.txt (unseen by any split).")] = 0,
) -> None:
    """Build the dataset from ../shared sources, cut-outs, synthetic scenes and simulator renders."""
    from training.build import SHARED_ROOT, BuildError, build_dataset
    from training.sources import SourceError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = shared_root or SHARED_ROOT
    if not (root / "datasets").is_dir():
        raise _fail(f"shared root {root} has no datasets/ folder; pass --shared-root /path/to/shared")
    try:
        manifest = build_dataset(out, shared_root=root, seed=seed, synth_n=synth_n, sim_n=sim_n,
                                 limit_per_source=limit, imgsz=imgsz, crop_photos=crop_photos,
                                 spare=spare, plain_n=plain_n)
    except (BuildError, SourceError, FormatError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(manifest.table())
    typer.echo(f"data.yaml: {(out / 'data.yaml').resolve()}  manifest digest {manifest.digest()}")


@data_app.command("pack")
def pack_cmd(
    data: Annotated[Path, typer.Argument(help="data.yaml (or YOLO folder) to pack.")],
    out: Annotated[Path, typer.Argument(help="New folder for the packed dataset and its data.yaml.")],
    long_side: Annotated[int, typer.Option(help="Long side of the packed images (px): the training imgsz.")] = 320,
    quality: Annotated[int, typer.Option(help="WebP quality (1-100).")] = 80,
    split: Annotated[list[str] | None, typer.Option(help="Split to pack (repeat); default train and val.")] = None,
    max_val: Annotated[int | None, typer.Option(help="At most this many validation images (evenly spread).")] = None,
    workers: Annotated[int, typer.Option(help="Encoder processes (0: one per core, up to 8).")] = 0,
) -> None:
    """Pack a dataset for a remote trainer: images resized to the training size, WebP, one folder."""
    from training.pack import PackError, pack

    try:
        result = pack(data, out, long_side=long_side, quality=quality, splits=split or ["train", "val"],
                      max_images={"val": max_val} if max_val else None, workers=workers)
    except PackError as exc:
        raise _fail(str(exc)) from exc
    counts = ", ".join(f"{k} {v}" for k, v in result.images.items())
    typer.echo(f"packed {counts} images: {result.bytes_in / 2**20:.1f} MiB → {result.bytes_out / 2**20:.1f} MiB; "
               f"data.yaml: {result.data_yaml.resolve()}")


@data_app.command("validate")
def validate_cmd(
    path: Annotated[Path, typer.Argument(help="Dataset: YOLO folder, COCO/Label Studio .json, VOC folder.")],
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "yolo",
    report: Annotated[Path | None, typer.Option(help="Write the full report as JSON here.")] = None,
    image_root: Annotated[Path | None, typer.Option(help="Folder image paths are relative to.")] = None,
    class_map: Annotated[Path | None, typer.Option(help="Source class map (datasets/sources/<name>.yaml) to apply "
                                                   "first, so source labels become taxonomy classes.")] = None,
) -> None:
    """Count and list every problem (bad images, boxes outside, unknown classes, duplicates)."""
    from station.taxonomy import load_taxonomy
    from training.sources import MapStats, SourceError, load_source_map, map_sample
    from training.validate import validate

    taxonomy = load_taxonomy()
    try:
        samples = read_any(_format(fmt, "--format"), path, image_root=image_root)
        if class_map is not None:
            smap, stats = load_source_map(class_map, taxonomy), MapStats()
            samples = [map_sample(s, smap, path, stats, coarse_fallback=True) for s in samples]
    except (FormatError, SourceError) as exc:
        raise _fail(str(exc)) from exc
    result = validate(samples, taxonomy)
    typer.echo(result.table())
    if report is not None:
        result.save(report)
    if not result.ok:
        raise typer.Exit(1)


@data_app.command("convert")
def convert(
    src: Annotated[Path, typer.Argument(help="Input: YOLO folder, COCO/Label Studio .json or VOC folder.")],
    dst: Annotated[Path, typer.Argument(help="Output: folder (yolo, voc) or .json file (coco, labelstudio).")],
    from_: Annotated[str, typer.Option("--from", help=f"Input format: {', '.join(FORMATS)}.")] = "yolo",
    to: Annotated[str, typer.Option("--to", help=f"Output format: {', '.join(FORMATS)}.")] = "coco",
    image_root: Annotated[Path | None, typer.Option(help="Folder image paths of the input are relative to.")] = None,
    taxonomy_names: Annotated[bool, typer.Option(help="Class order of the taxonomy (else sorted names).")] = True,
) -> None:
    """Convert a label set between YOLO, COCO, Pascal VOC and Label Studio."""
    from station.taxonomy import load_taxonomy

    src_fmt, dst_fmt = _format(from_, "--from"), _format(to, "--to")
    try:
        samples = read_any(src_fmt, src, image_root=image_root)
        names = list(load_taxonomy().names) if taxonomy_names else class_names(samples)
        extra = sorted(set(class_names(samples)) - set(names))
        if extra:
            raise _fail(f"{src}: classes {extra} are not in the taxonomy; pass --no-taxonomy-names to keep them")
        out = write_any(dst_fmt, samples, dst, names)
    except FormatError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"{len(samples)} images, {sum(len(s.boxes) for s in samples)} boxes → {out}")


@data_app.command("cutouts")
def cutouts(
    out: Annotated[Path, typer.Argument(help="Folder for class/*.png cut-outs.")],
    shared_root: Annotated[Path | None, typer.Option(help="Folder holding datasets/ and weights/.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many crops per class folder.")] = None,
    grabcut: Annotated[bool, typer.Option(help="Refine masks with grabCut (slower).")] = False,
) -> None:
    """Segment the white-background crop sources into RGBA cut-outs; prints accepted/rejected per class."""
    from station.taxonomy import load_taxonomy
    from training.build import SHARED_ROOT
    from training.cutouts import CutoutParams, make_cutouts
    from training.sources import SourceError, load_source_maps, read_crop_source

    root = shared_root or SHARED_ROOT
    try:
        maps = [m for m in load_source_maps(taxonomy=load_taxonomy()) if m.kind == "crops"]
        crops = [c for m in maps for c in read_crop_source(m, root, limit)[0]]
    except SourceError as exc:
        raise _fail(str(exc)) from exc
    report = make_cutouts(crops, out, CutoutParams(grabcut=grabcut))
    typer.echo(report.table())


@data_app.command("hard-examples")
def hard_examples(
    build: Annotated[Path, typer.Argument(help="A build folder (`sortloop data build`).")],
    out: Annotated[Path, typer.Option(help="Folder for hard.json, replay.txt and the replay data.yaml.")],
    model: Annotated[Path, typer.Option(help="Detector ONNX whose mistakes to mine.")],
    classifier: Annotated[str | None, typer.Option(
        help="Crop classifier ONNX of the pair ('none' for none; default: configs/station.yaml's).")] = None,
    lists: Annotated[str, typer.Option(help="Comma-separated training lists of the build (lists/<name>.txt).")]
    = ",".join(("train_trashnetpp", "train_ewaste-devices", "train_crop-photos")),
    hard_times: Annotated[int, typer.Option(help="Extra copies of each hard photo in the replay list.")] = 3,
    replay_source: Annotated[list[str] | None, typer.Option(
        help="A source whose other training photos are replayed too (repeatable), e.g. trashnetpp.")] = None,
    source_times: Annotated[int, typer.Option(help="Extra copies of each replayed source photo.")] = 1,
    val: Annotated[Path | None, typer.Option(help="Validation list for the data.yaml (default: the build's).")]
    = None,
) -> None:
    """Mine the training photos the pair decides wrong (missed, wrong stream, false or missed hazard) and write a
    data.yaml that replays them (and chosen sources) in training. Reads training lists only."""
    from training.evaluate import EvalError
    from training.hard_examples import mine, replay_data, summary, training_lists
    from training.source_eval import station_pair

    try:
        chosen = training_lists(build, [n.strip() for n in lists.split(",") if n.strip()])
        taxonomy, det, decider = station_pair(model, classifier)
        hard, seen = mine(build, det, decider, taxonomy, chosen)
        data = replay_data(build, hard, out, hard_times=hard_times, sources=replay_source or [],
                           source_times=source_times, lists=chosen, val=val)
    except EvalError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(json.dumps({**summary(hard, seen), "data": str(data)}, indent=1))
