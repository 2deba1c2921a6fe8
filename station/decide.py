"""The decision: one per physical item, made when its track crosses the decision line.

Each track accumulates a confidence-weighted class vote. When its centre crosses the line (belt moving
left → right) the vote is turned into a stream and a hazard flag through the taxonomy. A track lost
just before the line is decided from its prediction; a crossing that falls on an item already decided
(a fragmented track, a part boxed apart) is merged into it, so no item gets two decisions; where the
crossing is a battery the item was decided without (a coin cell on a rag), the station raises an alarm.

A small box lying inside a larger one still to be decided (a bottle's cap, a device's battery, a coin cell on
a rag) is a part of that item, or rides on it: it is decided with the item when the item's centre crosses, so
the ejector is timed from the item, not from its part, and the item carries the part's hazard.

A second look (``SecondLook``, e.g. ``station.classify.CropClassifier``) may classify the decision's evidence
crop, cut from the full-resolution frame; its probabilities are fused with the track's vote shares by geometric
mean before the same rule decides (``DecisionLine.classify``), hazard doubt included. Where the two disagree
outright, the geometric mean leaves no class a winning share: the item goes to manual inspection.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from station.config import DecisionConfig
from station.detections import Detections, overlap_of_smaller
from station.events import Decision, Reason, new_id
from station.frames import Frame
from station.route import BeltSpeed
from station.taxonomy import Stream, Taxonomy

log = logging.getLogger(__name__)


@dataclass
class _Track:
    track_id: int
    votes: npt.NDArray[np.float64]
    x: float = 0.0
    y: float = 0.0
    t: float = 0.0
    ticks: int | None = None
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    observations: int = 0
    decided: bool = False
    last_frame: int = 0
    crossed: bool = False
    hist: deque[tuple[float, float, int | None]] = field(default_factory=lambda: deque(maxlen=15))
    """Recent (time, centre x, ticks) of whole boxes (not cut by the frame edge), for the crossing estimate."""
    hist_cut: bool = False
    whole_looks: int = 0
    """Looks at a box not cut by either edge of the frame."""
    exit_only: bool = True
    """Every look so far touched the exit (right) edge: the sliver of an item leaving the view, not an item."""
    frame: Frame | None = None
    """The last frame the track was seen in (a reference, not a copy): evidence for a decision made later."""
    part_of: int | None = None
    """The larger track this one lay inside when it crossed the line: it is decided with that one."""


@dataclass(frozen=True)
class _Decided:
    crossed_at: float
    y: float
    belt_box: tuple[float, float, float, float]
    """The item's last box in belt coordinates (x minus belt travel), where items stand still."""
    hazard: str | None
    item_id: str
    class_name: str | None


@dataclass(frozen=True)
class HazardOnItem:
    """A part the model calls a hazard (a battery) seen lying on an item already decided without that hazard:
    the item's command is out, so the station raises an alarm naming the item for someone to take it off."""

    item_id: str
    item_class: str | None
    hazard: str
    part_class: str
    track_id: int


@dataclass
class _Crossing:
    track: _Track
    t: float
    ticks: int | None
    frame: Frame | None = None
    predicted: bool = False
    """Decided from the track's prediction: it was lost before reaching the line."""


class SecondLook(Protocol):
    """A classifier of evidence crops: BGR uint8 crop → probabilities in taxonomy class order."""

    version: str

    def __call__(self, crop: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]: ...


@dataclass(frozen=True)
class Verdict:
    """What the decision rule makes of a class vote."""

    class_name: str | None
    stream: Stream
    hazard: str | None
    share: float
    """Vote share of the winning class."""
    reason: Reason
    detail: str = ""


SECOND_LOOK_FLOOR = 1e-3
"""Added to both sides of the geometric mean: a class one side rules out entirely is not vetoed outright."""


def fuse_second_look(votes: npt.NDArray[np.float64], probs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The track's votes fused with a second look's class probabilities: the geometric mean of the track's vote
    shares and the probabilities, as votes of the track's total. Both must agree for a class to keep its
    share, so a class one of them doubts falls; measured on simulator runs it decided more items right than
    either alone or their arithmetic mean (bench/crop_classifier.py, models/sortloop-crops.md)."""
    total = float(votes.sum())
    if total <= 0:
        return np.array(votes, np.float64, copy=True)
    g = np.sqrt((votes / total + SECOND_LOOK_FLOOR) * (np.asarray(probs, np.float64) + SECOND_LOOK_FLOOR))
    fused: npt.NDArray[np.float64] = g / g.sum() * total
    return fused


PART_INSIDE = 0.6
"""A box with at least this share of its area inside another track's box ..."""
PART_AREA_RATIO = 2.0
"""... which is at least this many times larger, is a part of that item (or lies on it). Besides the parts
proper (a cap, a cell), the model boxes the leading end of some items apart on some frames (a cable's plug,
the front of a tub, 2.2 to 2.6 times smaller than the whole and partly cut by it): decided on its own, that
box's centre crosses first and fires the ejector early by a tenth of a second or more. Touching items overlap
far less than this share (the simulator places them a tenth of the smaller's width into each other)."""

SPANNING_EDGE = 0.02
"""A box within this fraction of the frame width of both the entry and the exit edge spans the view: it says
nothing about where an item is along the belt (the model sometimes boxes the whole belt), so the decision line
does not use it: deciding it would time an ejector from the view's centre and could swallow the real item as
its duplicate. (An item longer than the view is never whole in it and gets no decision: it rides on to the
end-of-belt manual bin, like every item without a command.)"""


class DecisionLine:
    """Turns tracked detections into decisions. ``update`` is called once per frame."""

    def __init__(self, cfg: DecisionConfig, taxonomy: Taxonomy, *, station_id: str, history_s: float = 5.0) -> None:
        self._cfg = cfg
        self._tax = taxonomy
        self._station = station_id
        self._tracks: dict[int, _Track] = {}
        self._recent: deque[_Decided] = deque()
        self._history_s = history_s
        self._hazard_mask = np.array([n in taxonomy.battery_hazards for n in taxonomy.names])
        self._any_hazard = np.array([taxonomy.hazard_of(n) is not None for n in taxonomy.names])
        self.model_version = ""
        self._second_look: SecondLook | None = None
        self.merged = 0
        self.ignored = 0
        self.hazards_on_items: list[HazardOnItem] = []
        """Hazards seen on items already decided without them, for the pipeline to alarm (``take_hazards``)."""

    def take_hazards(self) -> list[HazardOnItem]:
        """The hazards seen on decided items since the last call (the pipeline raises an alarm for each)."""
        out, self.hazards_on_items = self.hazards_on_items, []
        return out

    def set_model(self, version: str) -> None:
        """The model version stamped on decisions from now on (detections come in taxonomy class ids)."""
        self.model_version = version

    def set_second_look(self, look: SecondLook | None) -> None:
        """The crop classifier consulted for decisions from now on (None: the track vote alone)."""
        self._second_look = look

    @property
    def second_look(self) -> SecondLook | None:
        return self._second_look

    # --- per frame -----------------------------------------------------------------------------------
    def update(self, frame: Frame, dets: Detections, belt: BeltSpeed) -> list[Decision]:
        speed_px_s = belt.px_per_s
        line = self._cfg.line_x * frame.width
        crossings: list[_Crossing] = []
        ids = dets.tracker_id if dets.tracker_id is not None else np.full(len(dets), -1)
        centres = dets.center
        votes = self._votes(dets)
        edge = SPANNING_EDGE * frame.width
        spanning = (dets.xyxy[:, 0] <= edge) & (dets.xyxy[:, 2] >= frame.width - edge)
        for i, tid in enumerate(ids):
            if tid < 0 or spanning[i]:  # a box across the whole view has no position along the belt
                continue
            c = self._observe(int(tid), frame, dets.xyxy[i], centres[i], votes[i], line, belt)
            if c is not None:
                crossings.append(c)
        crossings.extend(self._expire_lost(frame, line, belt))
        out: list[Decision] = []
        for c in crossings:
            if c.track.decided:  # taken as a part by an item decided earlier in this frame
                continue
            if c.frame is not None and (host := self._host_of(c.track, frame.index)) is not None:
                c.track.part_of = host.track_id  # decided with its item when that one's centre crosses
                continue
            if (d := self._decide(c, frame, line, speed_px_s)) is not None:
                out.append(d)
        return out

    def _host_of(self, tr: _Track, frame_index: int) -> _Track | None:
        """The track ``tr`` waits for as a part of it: the one it waits for already while that one is lost or
        still holds it, else the largest undecided track seen in this frame whose box holds ``tr``'s."""
        if tr.part_of is not None and (host := self._tracks.get(tr.part_of)) is not None and not host.decided \
                and (host.last_frame != frame_index or _is_part(tr.box, host.box)):
            return host
        hosts = [h for h in self._tracks.values() if h is not tr and not h.decided and h.last_frame == frame_index
                 and _is_part(tr.box, h.box)]
        return max(hosts, key=lambda h: _area(h.box), default=None)

    def _heir_of(self, lost: _Track, moved: tuple[float, float, float, float], frame_index: int) -> _Track | None:
        """An undecided track seen in this frame, not a part of the lost one, whose box holds at least half of
        ``moved``, where the lost track's box is now: the same item tracked anew, or an item it lies on."""
        heirs = [h for h in self._tracks.values() if h is not lost and not h.decided and h.last_frame == frame_index
                 and h.part_of != lost.track_id and not _is_part(h.box, moved)
                 and overlap_of_smaller(moved, h.box) >= 0.5]
        return max(heirs, key=lambda h: _area(h.box), default=None)

    def _take_parts(self, tr: _Track, frame_index: int) -> list[_Track]:
        """The undecided tracks that are parts of ``tr`` (waiting for it, or inside it in this frame), now
        decided with it."""
        seen_now = tr.last_frame == frame_index
        parts = [p for p in self._tracks.values() if p is not tr and not p.decided and (
            p.part_of == tr.track_id or (seen_now and p.last_frame == frame_index and _is_part(p.box, tr.box)))]
        for p in parts:
            p.decided = True
        return parts

    def _votes(self, dets: Detections) -> npt.NDArray[np.float64]:
        return class_votes(dets, len(self._tax.names))

    def _observe(self, tid: int, frame: Frame, box: npt.NDArray[np.float32], centre: npt.NDArray[np.float32],
                 vote: npt.NDArray[np.float64], line: float, belt: BeltSpeed) -> _Crossing | None:
        tr = self._tracks.get(tid)
        x, y = float(centre[0]), float(centre[1])
        if tr is None:
            tr = self._tracks[tid] = _Track(tid, np.zeros_like(vote))
        tr.votes += vote
        tr.observations += 1
        tr.x, tr.y, tr.t, tr.ticks, tr.last_frame = x, y, frame.timestamp, frame.ticks, frame.index
        tr.box = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        tr.frame = frame
        whole = box[0] > 1 and box[2] < frame.width - 1
        tr.whole_looks += whole
        tr.exit_only = tr.exit_only and box[2] >= frame.width - 2
        if whole and tr.hist_cut:  # replace looks at boxes cut by the frame edge by whole ones
            tr.hist.clear()
        if whole or tr.hist_cut or not tr.hist:
            tr.hist.append((frame.timestamp, x, frame.ticks))
            tr.hist_cut = not whole
        if tr.decided or x < line:
            return None
        tr.crossed = True
        if tr.observations < self._cfg.min_track_frames:
            return None  # wait for a few more looks; the ejector is far enough downstream
        t, k = _crossing(tr, line, belt)
        return _Crossing(tr, t, k, frame)

    def _expire_lost(self, frame: Frame, line: float, belt: BeltSpeed) -> list[_Crossing]:
        """Tracks not seen for a while: decide those predicted to have crossed, forget the rest."""
        out: list[_Crossing] = []
        for tid, tr in list(self._tracks.items()):
            if tr.last_frame == frame.index:
                continue
            gap = frame.timestamp - tr.t
            if tr.decided:
                tr.frame = None
                if gap > self._history_s:
                    del self._tracks[tid]
                continue
            if tr.part_of is not None:
                host = self._tracks.get(tr.part_of)
                if host is not None and not host.decided:
                    continue  # lost, but its item is still to be decided: it is decided with it
                tr.part_of = None  # its item went without it (an item never takes a part it did not hold)
            if tr.crossed:  # crossed, then lost before it had enough looks
                out.append(_Crossing(tr, *_crossing(tr, line, belt), None))
                continue
            t_cross, k = _crossing(tr, line, belt)
            if t_cross + self._cfg.lost_grace_s <= frame.timestamp and tr.observations > 0:
                moved = _moved(tr, frame, belt)
                heir = self._heir_of(tr, moved, frame.index)
                if heir is not None and _is_part(moved, heir.box):
                    tr.part_of = heir.track_id  # it lies on a larger item in view: decided with that one
                    continue
                if heir is not None and self._own_hazard(tr) is None:
                    # the item is still in view under another track (the tracker lost it and started anew,
                    # often while it entered the view cut by the edge): that track, seen now, times it;
                    # deciding this one from its prediction would time the ejector from a stale or cut box.
                    # (A hazard of its own is not handed on to be outvoted: it is decided as before.)
                    heir.votes += tr.votes
                    heir.observations += tr.observations
                    self.merged += 1
                    del self._tracks[tid]
                    log.debug("lost track %d handed to track %d, which holds its predicted box", tid,
                              heir.track_id)
                    continue
                out.append(_Crossing(tr, t_cross, k, None, predicted=True))
            elif gap > self._history_s:
                del self._tracks[tid]
        return out

    # --- the decision --------------------------------------------------------------------------------
    def _decide(self, c: _Crossing, frame: Frame, line: float, speed: float) -> Decision | None:
        tr = c.track
        tr.decided = True
        if tr.exit_only:
            self.ignored += 1
            log.debug("track %d only ever seen at the exit edge: a departing sliver, not decided", tr.track_id)
            return None
        now = frame.timestamp
        while self._recent and now - self._recent[0].crossed_at > self._history_s:
            self._recent.popleft()
        shift = speed * tr.t
        belt_box = (tr.box[0] - shift, tr.box[1], tr.box[2] - shift, tr.box[3])
        parts = self._take_parts(tr, frame.index)
        for d in self._recent:
            near = abs(d.crossed_at - c.t) * speed < self._cfg.duplicate_gate_px and \
                abs(d.y - tr.y) < self._cfg.duplicate_gate_px
            if not (near or overlap_of_smaller(d.belt_box, belt_box) >= 0.5):
                continue
            for part in (tr, *parts):
                if (own := self._own_hazard(part)) is not None and own[0] != d.hazard:
                    # a battery lying on (or boxed within) an item decided without that hazard: merged, it would
                    # be lost, so the station raises an alarm naming the item (its command is out: the battery
                    # rides with it to its bin)
                    self.hazards_on_items.append(HazardOnItem(d.item_id, d.class_name, own[0], own[1],
                                                              part.track_id))
                    log.warning("track %d (%s) lies on item %s (%s), decided without a %s hazard", part.track_id,
                                own[1], d.item_id, d.class_name, own[0])
            self.merged += 1 + len(parts)
            log.debug("track %d merged into an item already decided (fragmented track)", tr.track_id)
            return None
        self.merged += len(parts)
        crop = _crop(c.frame or tr.frame, tr.box, self._cfg.crop_padding)
        verdict, scores = self._verdict(tr, crop)
        cls, stream, hazard, share, reason, detail = (verdict.class_name, verdict.stream, verdict.hazard,
                                                      verdict.share, verdict.reason, verdict.detail)
        for part in parts:
            if hazard is None and (own := self._own_hazard(part)) is not None:
                hazard = own[0]  # a battery on a rag, a device's battery boxed apart: the item carries it
                detail = _joined(detail, f"a {own[1]} (track {part.track_id}) lies on it")
                log.warning("track %d (%s) lies on track %d (%s): the item is flagged %s", part.track_id, own[1],
                            tr.track_id, cls, own[0])
        item_id = new_id()
        self._recent.append(_Decided(c.t, tr.y, belt_box, hazard, item_id, cls))
        if c.predicted:
            detail = _joined(detail, "decided from prediction: track lost before the line")
        return Decision(
            item_id=item_id, station_id=self._station, track_id=tr.track_id, frame_index=frame.index,
            crossed_at=c.t, crossed_ticks=c.ticks, class_name=cls, stream=stream, hazard=hazard,
            confidence=share, votes={self._tax.names[i]: round(float(v), 4) for i, v in enumerate(tr.votes) if v > 0},
            observations=tr.observations, reason=reason, box=tr.box, model_version=self.model_version,
            detail=detail, crop=crop, crop_scores=scores,
            classifier_version=self._second_look.version if scores and self._second_look is not None else "",
        )

    def _own_hazard(self, tr: _Track) -> tuple[str, str] | None:
        """(hazard, class) where the track's winning class carries a hazard and it was seen whole for a few
        looks: the model boxes slivers of items entering the view as faint batteries, and those are the item's
        own parts; and not for a mere doubt (a plug voted partly battery): only for a part the model calls a
        battery outright."""
        if tr.whole_looks < self._cfg.min_track_frames or float(tr.votes.sum()) <= 0:
            return None
        name = self._tax.names[int(np.argmax(tr.votes))]
        hazard = self._tax.hazard_of(name)
        return (hazard, name) if hazard is not None else None

    def _verdict(self, tr: _Track, crop: npt.NDArray[np.uint8] | None) -> tuple[Verdict, dict[str, float]]:
        return self.verdict(tr.votes, tr.observations, crop, what=f"track {tr.track_id}")

    def verdict(self, votes: npt.NDArray[np.float64], observations: int, crop: npt.NDArray[np.uint8] | None, *,
                what: str = "item") -> tuple[Verdict, dict[str, float]]:
        """The verdict on a class vote (taxonomy order) from ``observations`` looks, with the second look's class
        probabilities (taxonomy name → p ≥ 0.001) where a crop classifier is set and a crop is given: the rule on
        the fused vote, which keeps the hazard doubt (a battery share of the fused vote sends the item to
        manual). Where it differs from the vote's own, the detail says both. A classifier that fails routes the
        item to manual inspection. The station calls it for each track at the line; ``sortloop detect`` for each
        box of a still photo, so both decide by this one rule."""
        own = self.classify(votes, observations)
        look = self._second_look
        if look is None or crop is None or own.class_name is None:
            return own, {}
        try:
            probs = look(crop)
        except Exception as exc:  # any fault of the second look: the safe route, said in the decision
            log.warning("crop classifier %s failed on %s: %s", look.version, what, exc)
            return replace(own, stream=Stream.MANUAL, reason=Reason.FAULT,
                           detail=f"crop classifier {look.version} failed ({exc}): manual inspection"), {}
        names = self._tax.names
        scores = {names[i]: round(float(p), 4) for i, p in enumerate(probs) if p >= 0.001}
        fused = self.classify(fuse_second_look(votes, probs), observations)
        top = int(np.argmax(probs))
        said = f"crop classifier {names[top]} {probs[top]:.2f}"
        if (fused.class_name, fused.stream, fused.hazard) != (own.class_name, own.stream, own.hazard):
            was = own.stream.value + (f", {own.hazard}" if own.hazard else "")
            fused = replace(fused, detail=_joined(fused.detail, f"track vote {own.class_name} {own.share:.2f} ({was}), "
                                                  f"{said}"))
        return fused, scores

    def classify(self, votes: npt.NDArray[np.float64], observations: int) -> Verdict:
        """The decision rule on a class vote (taxonomy order) from ``observations`` looks: hazard doubt, then
        too few looks, then too small a winning share send the item to manual inspection."""
        total = float(votes.sum())
        if total <= 0:
            return Verdict(None, Stream.MANUAL, None, 0.0, Reason.LOW_CONFIDENCE, "no class votes")
        win = int(np.argmax(votes))
        name = self._tax.names[win]
        share = float(votes[win] / total)
        hazard = self._tax.hazard_of(name)
        battery_share = float(votes[self._hazard_mask].sum() / total)
        if hazard is None and battery_share >= self._cfg.hazard_doubt:
            return Verdict(name, Stream.MANUAL, "battery", share, Reason.HAZARD_DOUBT,
                           f"battery vote share {battery_share:.2f} ≥ {self._cfg.hazard_doubt}")
        if observations < self._cfg.min_track_frames:
            return Verdict(name, Stream.MANUAL, hazard, share, Reason.SHORT_TRACK,
                           f"{observations} observations < {self._cfg.min_track_frames}")
        if share < self._cfg.min_confidence:
            return Verdict(name, Stream.MANUAL, hazard, share, Reason.LOW_CONFIDENCE,
                           f"vote share {share:.2f} < {self._cfg.min_confidence}")
        return Verdict(name, self._tax.stream_of(name), hazard, share, Reason.OK)


def class_votes(dets: Detections, n_classes: int) -> npt.NDArray[np.float64]:
    """One look's class votes per box (taxonomy order): the box's class scores, or its confidence for its class
    where the model gives no per-class scores."""
    out = np.zeros((len(dets), n_classes), np.float64)
    if len(dets) == 0:
        return out
    if dets.class_scores is not None and dets.class_scores.shape[1] == n_classes:
        out[:] = dets.class_scores
    else:
        out[np.arange(len(dets)), dets.class_id] = dets.confidence
    return out


def _joined(detail: str, more: str) -> str:
    return f"{detail}; {more}" if detail else more


def _crossing(tr: _Track, line: float, belt: BeltSpeed) -> tuple[float, int | None]:
    """When the item's centre crossed (or will cross) the line, and the encoder count then.

    Items do not move on the belt, so each look gives one estimate (its time plus the distance left to the
    line over the belt speed); their mean is far steadier than interpolating two noisy box centres.
    """
    v, tps = belt.px_per_s, belt.ticks_per_s
    times = [t + (line - x) / v for t, x, _ in tr.hist]
    ticks = [k + (line - x) / v * tps for _, x, k in tr.hist if k is not None]
    return float(np.mean(times)), round(float(np.mean(ticks))) if ticks else None


def _moved(tr: _Track, frame: Frame, belt: BeltSpeed) -> tuple[float, float, float, float]:
    """Where the track's last box is in ``frame``: items lie still on the belt, which moves them on."""
    shift = belt.px_per_s * (frame.timestamp - tr.t)
    return (tr.box[0] + shift, tr.box[1], tr.box[2] + shift, tr.box[3])


def _area(box: tuple[float, float, float, float]) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def _is_part(small: tuple[float, float, float, float], big: tuple[float, float, float, float]) -> bool:
    """``small`` lies (almost) wholly inside ``big``, which is several times larger."""
    return _area(big) >= PART_AREA_RATIO * _area(small) > 0 and overlap_of_smaller(small, big) >= PART_INSIDE


def _crop(frame: Frame | None, box: tuple[float, float, float, float], pad: float) -> npt.NDArray[np.uint8] | None:
    return None if frame is None else padded_crop(frame.image, box, pad)


def padded_crop(image: npt.NDArray[np.uint8], box: tuple[float, float, float, float],
                pad: float) -> npt.NDArray[np.uint8] | None:
    """The evidence crop: ``box`` (xyxy) grown by ``pad`` of its size on each side, clipped to the image."""
    x1, y1, x2, y2 = box
    px, py = (x2 - x1) * pad, (y2 - y1) * pad
    h, w = image.shape[:2]
    a, b = max(int(x1 - px), 0), max(int(y1 - py), 0)
    c, d = min(int(x2 + px), w), min(int(y2 + py), h)
    if c <= a or d <= b:
        return None
    return np.ascontiguousarray(image[b:d, a:c])
