"""Corrections are data: each is stored with who, when, before/after, the image and the box, and becomes a
labelled sample in the taxonomy's classes, exportable as YOLO or COCO (``training.formats`` writers).

Kinds: ``reclass`` (another class; the stream follows from the taxonomy), ``confirm`` (the decided class is
right), ``not_item`` (no item there: a background sample) and ``missed_item`` (a box drawn on a grabbed frame
for an item the station never decided). Conflicts between people are settled by ``resolve``: the latest
answer of the highest role wins; equals who disagree leave the item open (flagged in the review queue)
until a higher role answers.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from station.store import ItemRecord
from station.store.evidence import write_jpeg
from training.formats import Box, Sample, image_size, write_coco, write_yolo
from ui.auth import RANK, ConsoleUser, Perm
from ui.downloads import download_dir
from ui.repo import CorrectionRecord, NewCorrection
from ui.settings import Console

NOT_AN_ITEM = "(not an item)"
MIN_BOX_PX = 4.0
EDGE_TOLERANCE_PX = 0.5
_FRAME_ID = re.compile(r"^[0-9a-f]{32}$")
Box4 = tuple[float, float, float, float]


class Kind(StrEnum):
    RECLASS = "reclass"
    CONFIRM = "confirm"
    NOT_ITEM = "not_item"
    MISSED_ITEM = "missed_item"


ITEM_KINDS = (Kind.RECLASS.value, Kind.CONFIRM.value, Kind.NOT_ITEM.value)


class CorrectionError(ValueError):
    """A correction was refused; nothing was stored. ``status`` is the HTTP status to answer with."""

    status = 422


class UnknownItemError(CorrectionError):
    status = 404


class FrameNotFoundError(CorrectionError):
    status = 404


class NothingToUndoError(CorrectionError):
    status = 404


class AnswerExistsError(CorrectionError):
    """The user answered this item already: the same answer again, or a different one not sent as a change."""

    status = 409


class UndoOutOfReachError(CorrectionError):
    """The user's latest standing answer is older than the undo window or deeper than the undo depth."""

    status = 409


class CorrectionIn(BaseModel):
    """A correction as the console (or the API) submits it."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind = Field(description="reclass | confirm | not_item | missed_item")
    item_id: str | None = Field(None, description="The decided item (all kinds but missed_item).")
    class_name: str | None = Field(None, description="Taxonomy class (reclass, missed_item; confirm: optional).")
    frame_id: str | None = Field(None, description="Grabbed frame the box is drawn on (missed_item).")
    box: list[float] | None = Field(None, description="x1, y1, x2, y2 in pixels of the grabbed frame (missed_item).")
    change: bool = Field(False, description="Replace my earlier, different answer about this item on purpose; "
                         "without it a second answer is refused (409).")


class CorrectionOut(BaseModel):
    id: str
    item_id: str | None
    username: str
    role: str | None
    created_at: float
    kind: str
    before_class: str | None
    after_class: str | None
    stream: str | None
    box: list[float] | None
    frame_path: str | None
    undone: bool
    changed_from: str | None = Field(None, description="The author's earlier answer this one replaced, if any.")

    @classmethod
    def of(cls, c: CorrectionRecord, console: Console, history: Sequence[CorrectionRecord] = ()) -> CorrectionOut:
        """``history``: corrections of the same item, to name the earlier answer a change replaced."""
        stream = console.ctx.taxonomy.stream_of(c.after_class).value if c.after_class else None
        earlier = earlier_answer(history, c)
        return cls(id=c.id, item_id=c.item_id, username=c.username, role=c.role, created_at=c.created_at,
                   kind=c.kind, before_class=c.before_class, after_class=c.after_class, stream=stream,
                   box=None if c.box is None else list(c.box), frame_path=c.frame_path, undone=c.undone,
                   changed_from=None if earlier is None else answer_text(earlier))


@dataclass(frozen=True)
class GrabbedFrame:
    frame_id: str
    width: int
    height: int

    @property
    def url(self) -> str:
        return f"/console/frames/{self.frame_id}.jpg"


# -- submitting ------------------------------------------------------------------------------------------


def submit(console: Console, user: ConsoleUser, req: CorrectionIn) -> CorrectionRecord:
    """Validate and store one correction; refused input raises ``CorrectionError`` and stores nothing."""
    console.auth.require(user, Perm.OPERATE)
    if req.kind is Kind.MISSED_ITEM:
        return console.repo.add_correction(_missed_item(console, user, req))
    new = _about_item(console, user, req)
    earlier = _second_answer(console, user, new, req.change)
    stored = console.repo.add_correction(new)
    if earlier is not None:
        console.repo.access.audit("correction.change", user.username, str(new.item_id),
                                  f"was {answer_text(earlier)}, now {answer_text(stored)}")
    return stored


def answer_text(c: CorrectionRecord | NewCorrection) -> str:
    """What a correction says about its item: a class, or "(not an item)"."""
    return NOT_AN_ITEM if c.kind == Kind.NOT_ITEM else str(c.after_class)


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _second_answer(console: Console, user: ConsoleUser, new: NewCorrection, change: bool) -> CorrectionRecord | None:
    """The user's standing answer that ``new`` replaces (None: a first answer); refuses the same answer again,
    and a different one not sent as a change."""
    mine = [c for c in console.repo.corrections([str(new.item_id)])
            if c.username == user.username and c.kind in ITEM_KINDS]
    if not mine:
        return None
    last, item = mine[-1], str(new.item_id)[:8]
    was, now = answer_text(last), answer_text(new)
    if was == now:
        raise AnswerExistsError(f"you answered item {item} as {was} already (at {clock(last.created_at)}); "
                                "nothing stored")
    if not change:
        raise AnswerExistsError(f"you answered item {item} as {was} at {clock(last.created_at)}; {now} would "
                                "replace it, so it was not stored: to change your answer on purpose select the "
                                "item, press C, then the new answer (API: change: true)")
    return last


def earlier_answer(history: Sequence[CorrectionRecord], c: CorrectionRecord) -> CorrectionRecord | None:
    """The author's latest standing answer about the same item before ``c`` (the one a change replaced)."""
    before = [h for h in history if h.item_id == c.item_id and h.username == c.username and h.kind in ITEM_KINDS
              and not h.undone and (h.created_at, h.id) < (c.created_at, c.id)]
    return max(before, key=lambda h: (h.created_at, h.id)) if before and c.kind in ITEM_KINDS else None


def _check_class(console: Console, name: str | None) -> str:
    if not name:
        raise CorrectionError("choose a class for this correction (none was chosen; nothing is assumed)")
    if name not in console.ctx.taxonomy:
        raise CorrectionError(f"class {name!r} is not in the taxonomy; choose one of "
                              f"{', '.join(console.ctx.taxonomy.names)}")
    return name


def _about_item(console: Console, user: ConsoleUser, req: CorrectionIn) -> NewCorrection:
    if not req.item_id:
        raise UnknownItemError("pick the item to correct (item_id is missing)")
    item = console.ctx.store.get_item(req.item_id)
    if item is None:
        raise UnknownItemError(f"item {req.item_id!r} is not recorded; pick an item from the strip or queue")
    kind, after = req.kind, None
    if kind is Kind.RECLASS:
        after = _check_class(console, req.class_name)
        kind = Kind.CONFIRM if after == item.class_name else kind
    elif kind is Kind.CONFIRM:
        if item.class_name is None:
            raise CorrectionError(f"item {item.item_id} has no class to confirm; correct it to a class instead")
        after = item.class_name
    frame_path, box = crop_box(console, item)
    return NewCorrection(item.item_id, user.username, user.role, kind.value, item.class_name, after, box, frame_path)


def crop_box(console: Console, item: ItemRecord) -> tuple[str | None, Box4 | None]:
    """The item's evidence crop (evidence-relative) and its box in the crop's pixels."""
    path = console.ctx.store.crop_file(item.item_id)
    if path is None or item.crop_path is None:
        return None, item.box
    w, h = image_size(path)
    x1, y1, x2, y2 = item.box
    pad = console.ctx.config.decision.crop_padding
    # the same origin as station.decide._crop: the padded box's corner, clipped at the frame's edge
    ox, oy = max(int(x1 - (x2 - x1) * pad), 0), max(int(y1 - (y2 - y1) * pad), 0)
    box = (max(x1 - ox, 0.0), max(y1 - oy, 0.0), min(x2 - ox, float(w)), min(y2 - oy, float(h)))
    return item.crop_path, box


def _missed_item(console: Console, user: ConsoleUser, req: CorrectionIn) -> NewCorrection:
    if req.item_id:
        raise CorrectionError("a missed item has no item_id (the station never decided it); leave it out")
    name = _check_class(console, req.class_name)
    path = frame_file(console, req.frame_id)
    w, h = image_size(path)
    box = check_box(req.box, w, h)
    rel = str(path.relative_to(console.ctx.store.evidence_dir))
    return NewCorrection(None, user.username, user.role, Kind.MISSED_ITEM.value, None, name, box, rel)


def frame_file(console: Console, frame_id: str | None) -> Path:
    if not frame_id or not _FRAME_ID.match(frame_id):
        raise FrameNotFoundError(f"frame {frame_id!r} is not a grabbed frame id; grab a frame first")
    path = console.frames_dir / f"{frame_id}.jpg"
    if not path.is_file():
        raise FrameNotFoundError(f"frame {frame_id} was not grabbed here (or was deleted); grab a frame first")
    return path


def check_box(box: Sequence[float] | None, width: int, height: int) -> Box4:
    """A drawn box inside a ``width`` × ``height`` frame, at least ``MIN_BOX_PX`` on each side."""
    if box is None or len(box) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
        raise CorrectionError(f"box must be four numbers x1, y1, x2, y2 in pixels, got {box!r}; draw it again")
    x1, y1, x2, y2 = (float(v) for v in box)
    tol = EDGE_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise CorrectionError(f"box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}) lies outside the frame "
                              f"({width}×{height}); draw it inside the picture")
    if x2 - x1 < MIN_BOX_PX or y2 - y1 < MIN_BOX_PX:
        raise CorrectionError(f"box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}) is empty or smaller than "
                              f"{MIN_BOX_PX:.0f} px; drag from one corner of the item to the other")
    return (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))


def undo_last(console: Console, user: ConsoleUser, now: float | None = None) -> CorrectionRecord:
    """Undo the user's latest standing correction (it stays in the record, marked undone): only among their
    ``undo_depth`` latest answers and only within ``undo_window_s`` (``ConsoleSettings.answers``)."""
    console.auth.require(user, Perm.OPERATE)
    rules = console.settings.answers
    recent = console.repo.recent_corrections(user.username, rules.undo_depth)
    last = next((c for c in recent if not c.undone), None)
    if last is None and len(recent) < rules.undo_depth:
        raise NothingToUndoError(f"nothing to undo: {user.username} has no correction left standing")
    if last is None:
        raise UndoOutOfReachError(f"nothing to undo: your last {rules.undo_depth} answers are undone already "
                                  f"(U reaches {rules.undo_depth} back); change an older answer on purpose: select "
                                  "the item, press C, then the new answer")
    age = (time.time() if now is None else now) - last.created_at
    if age > rules.undo_window_s:
        raise UndoOutOfReachError(f"nothing to undo: your latest answer (item {(last.item_id or 'missed')[:8]}: "
                                  f"{answer_text(last)}) is {age:.0f} s old, past the {rules.undo_window_s:.0f} s "
                                  "undo window; change it on purpose instead: select the item, press C, then the "
                                  "new answer")
    return console.repo.undo(last.id)


def grab_frame(console: Console) -> GrabbedFrame:
    """Save the latest camera frame (unannotated) so a missed item can be boxed on it."""
    frame = console.live.latest_frame() if console.live is not None else None
    if frame is None and console.ctx.station is not None:
        frame = console.ctx.station.last_frame
    if frame is None:
        raise FrameNotFoundError("no camera frame yet; wait until the live view shows the belt")
    from station.events import new_id

    grabbed = GrabbedFrame(new_id(), frame.width, frame.height)
    write_jpeg(console.frames_dir / f"{grabbed.frame_id}.jpg", frame.image, 92)
    return grabbed


# -- conflicts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    correction: CorrectionRecord

    @property
    def text(self) -> str:
        return answer_text(self.correction)

    @property
    def rank(self) -> int:
        return RANK.get(self.correction.role or "", 0)


@dataclass(frozen=True)
class Resolution:
    """People's answers about one item: the standing one, or an open conflict (``winner`` None)."""

    answers: tuple[Answer, ...] = ()
    winner: Answer | None = None

    @property
    def conflict(self) -> bool:
        return bool(self.answers) and self.winner is None

    @property
    def overruled(self) -> list[Answer]:
        return [] if self.winner is None else [a for a in self.answers if a.text != self.winner.text]


def resolve(corrections: Sequence[CorrectionRecord]) -> Resolution:
    """Each person's latest answer counts; the latest answer of the highest role wins; equals who disagree at
    the top leave a conflict open until someone of a higher role answers."""
    latest: dict[str, CorrectionRecord] = {}
    for c in sorted(corrections, key=lambda c: (c.created_at, c.id)):
        if not c.undone and c.kind in ITEM_KINDS:
            latest[c.username] = c
    answers = tuple(Answer(c) for c in sorted(latest.values(), key=lambda c: (c.created_at, c.id)))
    if not answers:
        return Resolution()
    top = max(a.rank for a in answers)
    at_top = [a for a in answers if a.rank == top]
    if len({a.text for a in at_top}) > 1:
        return Resolution(answers, None)
    return Resolution(answers, at_top[-1])


# -- export ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    fmt: str
    images: int
    boxes: int
    negatives: int
    conflicts_held_back: int
    without_image: int

    def text(self) -> str:
        return (f"{self.fmt.upper()} export: {self.images} images, {self.boxes} boxes, {self.negatives} background "
                f"images (not an item); held back: {self.conflicts_held_back} open conflicts, "
                f"{self.without_image} without an image")


def labelled_samples(console: Console) -> tuple[list[Sample], dict[str, int]]:
    """Samples from the standing corrections, and counts of what was left out."""
    evidence = console.ctx.store.evidence_dir
    counts = {"conflicts": 0, "no_image": 0, "negatives": 0}
    samples: list[Sample] = []
    per_item: dict[str, list[CorrectionRecord]] = {}
    per_frame: dict[str, list[CorrectionRecord]] = {}
    for c in console.repo.corrections():
        if c.kind == Kind.MISSED_ITEM and c.frame_path:
            per_frame.setdefault(c.frame_path, []).append(c)
        elif c.item_id is not None:
            per_item.setdefault(c.item_id, []).append(c)
    for corrections in per_item.values():
        res = resolve(corrections)
        if res.winner is None:
            counts["conflicts"] += res.conflict
            continue
        c = res.winner.correction
        if c.frame_path is None or c.box is None or not (evidence / c.frame_path).is_file():
            counts["no_image"] += 1
            continue
        path = evidence / c.frame_path
        w, h = image_size(path)
        boxes = [] if c.kind == Kind.NOT_ITEM else [Box(c.box, str(c.after_class))]
        counts["negatives"] += not boxes
        samples.append(Sample(path, w, h, boxes, source="console", group=c.item_id or ""))
    for frame_path, corrections in per_frame.items():
        path = evidence / frame_path
        w, h = image_size(path)
        samples.append(Sample(path, w, h, [Box(c.box, str(c.after_class)) for c in corrections if c.box],
                              source="console", group=path.stem))
    return samples, counts


def export_dataset(console: Console, out_dir: Path, fmt: Literal["yolo", "coco"]) -> ExportSummary:
    """Write the corrections as a self-contained dataset (images copied) in the taxonomy's class order."""
    samples, counts = labelled_samples(console)
    names = console.ctx.taxonomy.names
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "yolo":
        path = write_yolo(samples, out_dir, names, copy_images=True)
    else:
        images = out_dir / "images"
        images.mkdir(exist_ok=True)
        copied = []
        for s in samples:
            dst = images / f"{s.group or s.image_path.stem}_{s.image_path.stem}{s.image_path.suffix}"
            shutil.copyfile(s.image_path, dst)
            copied.append(Sample(dst, s.width, s.height, s.boxes, source=s.source, group=s.group))
        path = write_coco(copied, out_dir / "annotations.json", names, image_root=out_dir)
    return ExportSummary(path, fmt, len(samples), sum(len(s.boxes) for s in samples), counts["negatives"],
                         counts["conflicts"], counts["no_image"])


def export_zip(console: Console, fmt: Literal["yolo", "coco"]) -> tuple[Path, ExportSummary]:
    """The export as a zip file in a fresh temporary folder (for a download)."""
    work = download_dir("sortloop-export-")
    summary = export_dataset(console, work / f"corrections-{fmt}", fmt)
    archive = shutil.make_archive(str(work / f"sortloop-corrections-{fmt}"), "zip", work, f"corrections-{fmt}")
    return Path(archive), summary


# -- API -------------------------------------------------------------------------------------------------


def _http(exc: CorrectionError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


def router(console: Console) -> APIRouter:
    """Console API: submit and undo corrections, grab frames, export the corrections as a dataset."""
    r = APIRouter(tags=["console"])
    operate = Depends(console.auth.dependency(Perm.OPERATE))
    review = Depends(console.auth.dependency(Perm.REVIEW))
    export = Depends(console.auth.dependency(Perm.EXPORT))

    @r.post("/api/console/corrections", response_model=CorrectionOut, status_code=201)
    def post_correction(body: CorrectionIn, user: ConsoleUser = operate) -> CorrectionOut:
        try:
            c = submit(console, user, body)
        except CorrectionError as exc:
            raise _http(exc) from None
        return CorrectionOut.of(c, console, console.repo.corrections([c.item_id] if c.item_id else []))

    @r.post("/api/console/corrections/undo", response_model=CorrectionOut)
    def post_undo(user: ConsoleUser = operate) -> CorrectionOut:
        try:
            return CorrectionOut.of(undo_last(console, user), console)
        except CorrectionError as exc:
            raise _http(exc) from None

    @r.get("/api/console/corrections", response_model=list[CorrectionOut])
    def get_corrections(user: ConsoleUser = review, item_id: str | None = None) -> list[CorrectionOut]:
        rows = console.repo.corrections(None if item_id is None else [item_id], include_undone=True)
        by_item: dict[str | None, list[CorrectionRecord]] = {}
        for c in rows:
            by_item.setdefault(c.item_id, []).append(c)
        return [CorrectionOut.of(c, console, by_item.get(c.item_id, [])) for c in rows]

    @r.post("/api/console/frames")
    def post_frame(user: ConsoleUser = operate) -> dict[str, str | int]:
        try:
            g = grab_frame(console)
        except CorrectionError as exc:
            raise _http(exc) from None
        return {"frame_id": g.frame_id, "width": g.width, "height": g.height, "url": g.url}

    @r.get("/console/frames/{frame_id}.jpg", response_class=FileResponse)
    def get_frame(frame_id: str, user: ConsoleUser = operate) -> FileResponse:
        try:
            return FileResponse(frame_file(console, frame_id), media_type="image/jpeg")
        except CorrectionError as exc:
            raise _http(exc) from None

    @r.get("/api/console/export", response_class=FileResponse)
    def get_export(user: ConsoleUser = export, format: Literal["yolo", "coco"] = "yolo") -> FileResponse:
        archive, _ = export_zip(console, format)
        # the temporary folder goes once the download is sent
        return FileResponse(archive, media_type="application/zip", filename=archive.name,
                            background=BackgroundTask(shutil.rmtree, archive.parent, ignore_errors=True))

    return r
