"""Build the training dataset: sources → class maps → validation → coarse-label refinement → cut-outs →
synthetic scenes + simulator renders → leakage-free split → YOLO folder, per-source lists, manifest.

Layout of ``out_dir``::

    data.yaml                 absolute path, names in taxonomy order
    images/{train,val,test}/  symlinks to /work/shared (real photos) or to generated/ (scenes, renders)
    labels/{train,val,test}/  YOLO labels with taxonomy indices (ours; ultralytics caches next to them)
    images/crops, labels/crops  held-out single-object crops (evaluation only; training crops go to train)
    generated/                synthetic scenes and simulator renders (new files)
    lists/<split>_<source>.txt  image lists per split and source, e.g. test_trashnetpp.txt, test_battery_crops.txt
    manifest.json             sources, licences, class maps, counts, hashes, seed
    work/                     caches (teacher outputs, perceptual hashes, cut-outs) kept between builds
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from station.taxonomy import Taxonomy, load_taxonomy
from training.cutouts import Cutout, CutoutReport, make_cutouts, parallel_map
from training.formats import Box, Sample, image_size, write_data_yaml, write_yolo_split
from training.manifest import FileEntry, Manifest, SourceInfo
from training.sources import (
    SOURCES_DIR,
    Crop,
    SourceMap,
    load_source_maps,
    read_box_source,
    read_crop_source,
    refine_coarse,
    spread,
)
from training.split import ALL_SPLITS, HELDOUT, SPLITS, group_indices, phashes, plan_splits
from training.synth import write_scenes
from training.validate import ValidationReport, file_sha256, validate

log = logging.getLogger(__name__)

SHARED_ROOT = Path(__file__).resolve().parents[1].parent / "shared"
SYNTHETIC_SOURCES = ("synth-belt", "synth-real", "synth-plain", "sim")


class BuildError(RuntimeError):
    """The dataset cannot be built; the message names what is missing and the fix."""


@dataclass
class Parts:
    """Everything gathered before writing: samples per split, crops for evaluation, statistics."""

    splits: dict[str, list[Sample]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    crops_eval: list[Sample] = field(default_factory=list)
    validation: ValidationReport | None = None
    refinement: dict[str, dict[str, int]] = field(default_factory=dict)
    cutouts: CutoutReport | None = None
    spare: list[Sample] = field(default_factory=list)
    """Images ``--limit`` left out that no read image resembles: evaluation only."""


@dataclass
class _Read:
    """What the sources gave: photos and crops to build from, and those ``limit`` left out."""

    photos: list[Sample] = field(default_factory=list)
    crops: list[Crop] = field(default_factory=list)
    refinement: dict[str, dict[str, int]] = field(default_factory=dict)
    left_photos: list[Sample] = field(default_factory=list)
    left_crops: list[Crop] = field(default_factory=list)


def _read_sources(maps: Sequence[SourceMap], shared_root: Path, limit: int | None, work: Path,
                  spare: int = 0) -> _Read:
    """Read every source (``limit`` images each); keep up to ``spare`` of those left out per source."""
    r = _Read()
    for m in maps:
        if m.kind == "boxes":
            left: list[Sample] = []
            samples, _ = read_box_source(m, shared_root, limit, left)
            left = spread(left, spare)
            if m.refine:
                samples, counts = refine_coarse(samples, m, shared_root, work / "cache")
                r.refinement.update({f"{m.name}:{k}": dict(sorted(v.items())) for k, v in counts.items()})
                left = refine_coarse(left, m, shared_root, work / "cache")[0] if left else left
            r.photos += samples
            r.left_photos += left
        else:
            per_class = None if limit is None else max(2, limit // max(1, len(m.classes)))
            left_crops: list[Crop] = []
            r.crops += read_crop_source(m, shared_root, per_class, left_crops)[0]
            by_class: dict[str, list[Crop]] = defaultdict(list)
            for c in left_crops:
                by_class[c.class_name].append(c)
            r.left_crops += [c for cs in by_class.values() for c in spread(cs, spare // max(1, len(by_class)))]
    return r


def _spare_samples(read: _Read, taxonomy: Taxonomy, work: Path, workers: int) -> list[Sample]:
    """The left-out images that share no group and no near-duplicate hash with any image the build read
    (so they are unseen by a model trained on any split), as evaluation samples; crops boxed like the
    held-out crops."""
    from training.cutouts import CutoutParams

    photos = validate(read.left_photos, taxonomy).samples
    seen = [(s.image_path, s.group) for s in read.photos] + [(c.image_path, c.group) for c in read.crops]
    new = [(s.image_path, s.group) for s in photos] + [(c.image_path, c.group) for c in read.left_crops]
    everything = seen + new
    comp = group_indices(phashes([p for p, _ in everything], work / "cache" / "phash.json"),
                         [g for _, g in everything])
    touched = set(comp[:len(seen)])
    fresh = [c not in touched for c in comp[len(seen):]]
    kept_photos = [s for s, ok in zip(photos, fresh[:len(photos)], strict=True) if ok]
    kept_crops = [c for c, ok in zip(read.left_crops, fresh[len(photos):], strict=True) if ok]
    cut = make_cutouts(kept_crops, work / "cutouts-spare", CutoutParams(), workers=workers)
    log.info("spare: %d of %d left-out images kept (the rest resemble an image the build read)",
             sum(fresh), len(fresh))
    return kept_photos + _crop_samples(kept_crops, cut.cutouts, lambda c: True, source=None, whole_image=True)


def _split_real(photos: list[Sample], crops: list[Crop], *, seed: int, fractions: Sequence[float],
                work: Path) -> tuple[dict[str, list[Sample]], dict[Path, str]]:
    """Photos and crops are grouped together, so a crop that duplicates a photo lands on its side."""
    paths = [s.image_path for s in photos] + [c.image_path for c in crops]
    explicit = [s.group for s in photos] + [c.group for c in crops]
    strata = [s.source for s in photos] + [f"{c.source}:{c.class_name}" for c in crops]
    pool_allowed = {"train": frozenset({"train"}), "heldout": HELDOUT, "split": ALL_SPLITS}
    allowed = [ALL_SPLITS] * len(photos) + [pool_allowed[c.pool] for c in crops]
    plan = plan_splits(paths, explicit, seed=seed, fractions=fractions, strata=strata, allowed=allowed,
                       cache_path=work / "cache" / "phash.json")
    splits: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for s, split in zip(photos, plan.splits, strict=False):
        splits[split].append(s)
    crop_split = {c.image_path: split for c, split in zip(crops, plan.splits[len(photos):], strict=True)}
    return splits, crop_split


def _drop_part_cutouts(report: CutoutReport, min_area: dict[str, float]) -> CutoutReport:
    """Cut-outs smaller than their source's ``min_box_area`` share of the photo are parts, not items: counted as
    rejected (their class, reason ``part_of_item``) and left out."""
    kept = []
    for c in report.cutouts:
        w, h = image_size(c.origin)
        x1, y1, x2, y2 = c.bbox
        if w and h and (x2 - x1) * (y2 - y1) < min_area.get(c.source, 0.0) * w * h:
            report.accepted[c.class_name] -= 1
            report.rejected[c.class_name] += 1
            report.reasons["part_of_item"] += 1
            continue
        kept.append(c)
    if len(kept) < len(report.cutouts):
        log.info("cut-outs: %d left out as parts of their item (min_box_area)", len(report.cutouts) - len(kept))
    report.cutouts = kept
    return report


def _in_split(crop_split: dict[Path, str], split: str) -> Callable[[Crop], bool]:
    """Crops of the 'split' pool that the plan put in ``split``."""
    return lambda c: c.pool == "split" and crop_split.get(c.image_path) == split


def _crop_samples(crops: Sequence[Crop], cutouts: Sequence[Cutout], keep: Callable[[Crop], bool], *,
                  source: str | None, whole_image: bool) -> list[Sample]:
    """Single-object crop photos as detection samples, boxed by their cut-out mask.

    ``source`` names the samples' source (None: ``crops-<class>``; "": the crop's own source); without an
    accepted cut-out a crop is boxed as the whole image when ``whole_image``, else left out."""
    by_origin = {c.origin: c for c in cutouts}
    out = []
    for c in crops:
        if not keep(c):
            continue
        cut = by_origin.get(c.image_path)
        if cut is None and not whole_image:
            continue
        w, h = image_size(c.image_path)
        if not (w and h):
            continue
        box = cut.bbox if cut is not None else (0.0, 0.0, float(w), float(h))
        name = c.source if source == "" else source or f"crops-{c.class_name}"
        out.append(Sample(c.image_path, w, h, [Box(box, c.class_name)], source=name, group=c.group))
    return out


def _synthetic(parts: Parts, cutouts: Sequence[Cutout], crop_split: dict[Path, str], *, out_dir: Path,
               seed: int, synth_n: int, imgsz: int, fractions: Sequence[float], workers: int,
               plain_n: int = 0) -> None:
    for split, frac in zip(SPLITS, fractions, strict=True):
        n, n_plain = round(synth_n * frac), round(plain_n * frac)
        if n + n_plain == 0:
            continue
        pool = [c for c in cutouts if crop_split.get(c.origin) == split]
        if not pool and split != "train":  # tiny builds: val and test may share the held-out cut-outs
            pool = [c for c in cutouts if crop_split.get(c.origin) in HELDOUT]
        if not pool:
            raise BuildError(f"no cut-outs for the {split} split; check the crop sources and the cut-out "
                             "report (sortloop data cutouts)")
        backgrounds = [s for s in parts.splits[split] if s.source in ("trashnetpp", "ewaste-devices")]
        gen = out_dir / "generated" / "synth" / split
        for kind, k in (("belt", n - n // 2), ("real", n // 2), ("plain", n_plain)):
            if k == 0:
                continue
            parts.splits[split] += write_scenes(gen, k, kind, cutouts=pool, backgrounds=backgrounds,  # type: ignore[arg-type]
                                                seed=seed + SPLITS.index(split), imgsz=imgsz, prefix=split,
                                                workers=workers)


def _sprite_folder(cutouts: Sequence[Cutout], crop_split: dict[Path, str], split: str, work: Path) -> Path | None:
    """``work/sprites/<split>/<class>/*.png``: symlinks to the cut-outs this split may use (for the simulator)."""
    folder = work / "sprites" / split
    shutil.rmtree(folder, ignore_errors=True)
    pool = [c for c in cutouts if crop_split.get(c.origin) == split]
    for c in pool:
        dst = folder / c.class_name / c.path.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(c.path.resolve())
    return folder if pool else None


SIM_FOCUS = ["battery", "textile"]
"""Classes with no real boxes: a third of the procedural renders draws only these."""
SIM_CHUNK = 50


@dataclass(frozen=True)
class _SimJob:
    dst: Path
    count: int
    seed: int
    width: int
    height: int
    classes: list[str] | None
    sprites: Path | None
    taxonomy: Taxonomy


def _render(job: _SimJob) -> Path:
    from station.simulator import render_dataset

    render_dataset(job.dst, job.count, seed=job.seed, width=job.width, height=job.height, taxonomy=job.taxonomy,
                   classes=job.classes, sprites=job.sprites, items_per_image=(2, 6))
    return job.dst


def _sim_jobs(n: int, split: str, k: int, sprites: Path | None, *, out_dir: Path, seed: int, imgsz: int,
              taxonomy: Taxonomy) -> list[_SimJob]:
    """A third each: procedural (all classes), procedural (SIM_FOCUS), the split's cut-outs; in chunks."""
    height = max(64, int(imgsz * 9 / 16) // 32 * 32)  # the camera is 16:9
    n_cut = n // 3 if sprites is not None else 0
    n_focus = (n - n_cut) // 2
    jobs = []
    for v, (kind, count, classes, folder) in enumerate((("procedural", n - n_cut - n_focus, None, None),
                                                         ("focus", n_focus, SIM_FOCUS, None),
                                                         ("cutouts", n_cut, None, sprites))):
        for c in range(0, count, SIM_CHUNK):
            jobs.append(_SimJob(out_dir / "generated" / "sim" / split / f"{kind}-{c // SIM_CHUNK:03d}",
                                min(SIM_CHUNK, count - c), (seed * 1000 + k * 100 + v * 10) * 1000 + c // SIM_CHUNK,
                                imgsz, height, classes, folder, taxonomy))
    return jobs


def _simulated(parts: Parts, crop_split: dict[Path, str], *, out_dir: Path, seed: int, sim_n: int, imgsz: int,
               taxonomy: Taxonomy, fractions: Sequence[float], workers: int) -> None:
    """Simulator renders per split: procedural items (every class, textile included), procedural items of the
    classes without real boxes, and the cut-outs of that split (so held-out cut-outs stay in val/test)."""
    if sim_n <= 0:
        return
    try:
        from station.simulator import render_dataset  # noqa: F401 - fail early with a clear message
    except ImportError as exc:
        raise BuildError(f"the conveyor simulator (station.simulator.render_dataset) is not available ({exc}); "
                         "build with --sim-n 0") from exc
    from training.formats import read_yolo

    cutouts = parts.cutouts.cutouts if parts.cutouts else []
    jobs: list[tuple[str, _SimJob]] = []
    for k, (split, frac) in enumerate(zip(SPLITS, fractions, strict=True)):
        sprites = _sprite_folder(cutouts, crop_split, split, out_dir / "work")
        jobs += [(split, j) for j in _sim_jobs(round(sim_n * frac), split, k, sprites, out_dir=out_dir, seed=seed,
                                               imgsz=imgsz, taxonomy=taxonomy)]
    done = parallel_map(_render, [j for _, j in jobs], workers)
    for (split, _), dst in zip(jobs, done, strict=True):
        rendered = read_yolo(dst, source="sim")
        parts.splits[split] += [replace(s, group=f"sim:{split}:{dst.name}:{s.image_path.stem}") for s in rendered]
    log.info("simulator: %d renders", sum(j.count for _, j in jobs))


def _write(parts: Parts, out_dir: Path, names: list[str]) -> tuple[dict[str, str], list[FileEntry]]:
    lists: dict[str, str] = {}
    files: list[FileEntry] = []
    (out_dir / "lists").mkdir(parents=True, exist_ok=True)
    groups = [(split, parts.splits[split]) for split in SPLITS] + [("crops", parts.crops_eval),
                                                                   ("spare", parts.spare)]
    for split, samples in groups:
        by_source: dict[str, list[Path]] = defaultdict(list)
        written = write_yolo_split(samples, out_dir, names, split)
        for s, img in zip(samples, written, strict=True):
            by_source[s.source].append(img)
            label = out_dir / "labels" / split / f"{img.stem}.txt"
            target = s.image_path.resolve()
            image = str(target.relative_to(out_dir.resolve())) if target.is_relative_to(out_dir.resolve()) \
                else str(target)
            files.append(FileEntry(str(label.relative_to(out_dir)), file_sha256(label), image))
        list_split = "test" if split == "crops" else split
        for source, imgs in sorted(by_source.items()):
            crop = source.startswith("crops-")
            name = f"{list_split}_{source.removeprefix('crops-')}{'_crops' if crop else ''}"
            path = out_dir / "lists" / f"{name}.txt"
            path.write_text("".join(f"{p.absolute()}\n" for p in imgs))
            lists[name] = str(path.relative_to(out_dir))
        crop_imgs = [p for source, imgs in by_source.items() if source.startswith("crops-") for p in imgs]
        if crop_imgs:
            path = out_dir / "lists" / f"{list_split}_crops.txt"
            path.write_text("".join(f"{p.absolute()}\n" for p in crop_imgs))
            lists[f"{list_split}_crops"] = str(path.relative_to(out_dir))
    return lists, files


def _clean(out_dir: Path, shared_root: Path) -> None:
    if out_dir.resolve().is_relative_to(shared_root.resolve()):
        raise BuildError(f"output {out_dir} is inside the shared data {shared_root}; choose a folder of ours")
    for sub in ("images", "labels", "generated", "lists"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    for f in ("data.yaml", "manifest.json"):
        (out_dir / f).unlink(missing_ok=True)


def _manifest(parts: Parts, maps: Sequence[SourceMap], taxonomy: Taxonomy, *, seed: int,
              settings: dict[str, object]) -> Manifest:
    counts = {s: dict(sorted(Counter(b.class_name for x in parts.splits[s] for b in x.boxes).items()))
              for s in SPLITS}
    images = {s: dict(sorted(Counter(x.source for x in parts.splits[s]).items())) for s in SPLITS}
    synth = {s: round(sum(v for k, v in images[s].items() if k in SYNTHETIC_SOURCES) / max(1, len(parts.splits[s])),
                      4) for s in SPLITS}
    cut = parts.cutouts
    return Manifest(
        seed=seed, taxonomy_digest=taxonomy.digest, classes=list(taxonomy.names),
        sources=[SourceInfo(m.name, m.path, m.licence, m.attribution, m.kind, m.changes) for m in maps],
        class_maps={m.name: {**m.classes, **m.overrides} for m in maps}, counts=counts, images=images,
        synthetic_share=synth,
        refinement=parts.refinement, validation=parts.validation.counts if parts.validation else {},
        cutouts={"accepted": dict(sorted(cut.accepted.items())), "rejected": dict(sorted(cut.rejected.items()))}
        if cut else {}, spare=dict(sorted(Counter(x.source for x in parts.spare).items())), settings=settings,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"))


def build_dataset(out_dir: Path, *, shared_root: Path = SHARED_ROOT, seed: int = 0, synth_n: int = 2000,
                  sim_n: int = 600, limit_per_source: int | None = None, imgsz: int = 640,
                  taxonomy: Taxonomy | None = None, sources_dir: Path = SOURCES_DIR,
                  fractions: Sequence[float] = (0.8, 0.1, 0.1), workers: int = 0,
                  crop_photos: bool = True, spare: int = 0, plain_n: int = 0) -> Manifest:
    """Build the YOLO dataset in ``out_dir`` and return its manifest (also saved as manifest.json).

    ``crop_photos``: training crops (single-object photos) also go into the training split as they are, boxed
    by their cut-out mask, besides being pasted into synthetic scenes: the model sees each item at the scale
    and in the light it was photographed, not only small on a belt.

    ``spare``: with ``limit_per_source``, up to this many of the images each source has beyond the limit are
    written as evaluation lists ``lists/spare_<source>.txt`` and ``lists/spare_<class>_crops.txt`` (none
    that resembles an image the build read): a larger held-out set at no cost to the training split.

    ``plain_n``: scenes of one to four cut-outs on procedural table, floor, carpet and cloth surfaces at a wide
    range of scales, batteries weighted up and every other class as a hard negative (domain randomisation for
    photos of items taken off the belt).

    ``workers`` processes cut out and paint scenes (0: up to 4, by CPU count); the output does not depend
    on it. They start through multiprocessing's forkserver, so a script that calls this with workers > 1
    needs the usual ``if __name__ == "__main__":`` guard."""
    from training.cutouts import CutoutParams

    tax = taxonomy or load_taxonomy()
    maps = load_source_maps(sources_dir, tax)
    if not maps:
        raise BuildError(f"no source maps in {sources_dir}; add datasets/sources/<name>.yaml")
    out_dir.mkdir(parents=True, exist_ok=True)
    _clean(out_dir, shared_root)
    work = out_dir / "work"
    parts = Parts()
    read = _read_sources(maps, shared_root, limit_per_source, work, spare)
    photos, crops, parts.refinement = read.photos, read.crops, read.refinement
    parts.validation = validate(photos, tax)
    splits, crop_split = _split_real(parts.validation.samples, crops, seed=seed, fractions=fractions, work=work)
    parts.splits = splits
    workers = workers or min(4, os.cpu_count() or 1)
    parts.cutouts = _drop_part_cutouts(make_cutouts(crops, work / "cutouts", CutoutParams(), workers=workers),
                                       {m.name: m.min_box_area for m in maps})
    # held-out crops: evaluation images only (whole image when the cut-out failed)
    parts.crops_eval = _crop_samples(crops, parts.cutouts.cutouts, lambda c: c.pool == "heldout", source=None,
                                     whole_image=True)
    if crop_photos:  # training crops: the photo itself too, not only its cut-out pasted into scenes
        parts.splits["train"] += _crop_samples(crops, parts.cutouts.cutouts,
                                               lambda c: crop_split.get(c.image_path) == "train",
                                               source="crop-photos", whole_image=False)
    for split in HELDOUT:  # split-pool crops of val/test: real photos no split trained on, listed per source
        parts.splits[split] += _crop_samples(crops, parts.cutouts.cutouts, _in_split(crop_split, split),
                                             source="", whole_image=True)
    _synthetic(parts, parts.cutouts.cutouts, crop_split, out_dir=out_dir, seed=seed, synth_n=synth_n, imgsz=imgsz,
               fractions=fractions, workers=workers, plain_n=plain_n)
    _simulated(parts, crop_split, out_dir=out_dir, seed=seed, sim_n=sim_n, imgsz=imgsz, taxonomy=tax,
               fractions=fractions, workers=workers)
    if spare:
        parts.spare = _spare_samples(read, tax, work, workers)
    lists, files = _write(parts, out_dir, list(tax.names))
    write_data_yaml(out_dir, tax.names, {"train": "images/train", "val": "images/val", "test": "images/test"})
    settings: dict[str, object] = {"synth_n": synth_n, "sim_n": sim_n, "limit_per_source": limit_per_source,
                                   "imgsz": imgsz, "fractions": list(fractions), "shared_root": str(shared_root),
                                   "crop_photos": crop_photos, "spare": spare,
                                   "plain_n": plain_n}
    manifest = _manifest(parts, maps, tax, seed=seed, settings=settings)
    manifest.lists, manifest.files = lists, files
    manifest.save(out_dir / "manifest.json")
    log.info("dataset %s built:\n%s", out_dir, manifest.table())
    return manifest
