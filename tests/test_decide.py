"""The decision line: one decision per physical item, with the taxonomy's stream and hazard."""

from __future__ import annotations

import numpy as np
import pytest

from station.config import DecisionConfig, RoutingConfig
from station.decide import DecisionLine, SecondLook, fuse_second_look
from station.detections import Detections
from station.events import Reason
from station.frames import Frame
from station.route import BeltSpeed, Router
from station.taxonomy import Stream, load_taxonomy

TAX = load_taxonomy()
W, H, FPS, SPEED = 1280, 720, 30.0, 500.0  # px/s → 16.7 px per frame
IMG = np.zeros((H, W, 3), np.uint8)


def belt() -> BeltSpeed:
    return BeltSpeed(RoutingConfig(belt_speed_source="config", belt_speed_mps=0.5, px_per_m=1000.0))


def scores(**shares: float) -> np.ndarray:
    row = np.zeros(len(TAX.names), np.float32)
    for name, v in shares.items():
        row[TAX.index(name)] = v
    return row


def run(tracks: list[dict], frames: int = 120, cfg: DecisionConfig | None = None, look: SecondLook | None = None):
    """Each track: id (or ids by frame), x0 at frame 0, y, first/last frame, class scores, ``size`` (w, h) of
    its box moving with the belt (80×60), or ``box`` fixing it (xyxy, or xyxy by frame). ``look``: a second
    look on each decision's crop."""
    line = DecisionLine(cfg or DecisionConfig(), TAX, station_id="t")
    line.set_model("test")
    line.set_second_look(look)
    b, out = belt(), []
    for k in range(frames):
        t = k / FPS
        boxes, confs, cls, ids, sc = [], [], [], [], []
        for tr in tracks:
            if not tr.get("first", 0) <= k <= tr.get("last", 10**9):
                continue
            x = tr["x0"] + SPEED * t
            w, h = tr.get("size", (80, 60))
            fixed = tr["box"](k) if callable(tr.get("box")) else tr.get("box")
            boxes.append(fixed or [x - w / 2, tr["y"] - h / 2, x + w / 2, tr["y"] + h / 2])
            row = tr["scores"]
            confs.append(row.max())
            cls.append(int(row.argmax()))
            ids.append(tr["id"](k) if callable(tr["id"]) else tr["id"])
            sc.append(row)
        if boxes:
            dets = Detections(np.array(boxes), np.array(confs), np.array(cls), np.array(ids), np.array(sc))
        else:
            dets = Detections.empty(len(TAX.names))
            dets.tracker_id = np.zeros(0, np.int64)
        out += line.update(Frame(IMG, k, t, ticks=round(t * 1000)), dets, b)
    return out, line


def test_one_item_one_decision_with_interpolated_crossing() -> None:
    decisions, _ = run([{"id": 1, "x0": 0.0, "y": 300, "scores": scores(can=0.9)}])
    assert len(decisions) == 1
    d = decisions[0]
    assert d.class_name == "can" and d.stream is Stream.METAL and d.hazard is None and d.reason is Reason.OK
    assert d.crossed_at == pytest.approx(640 / SPEED, abs=1e-3)  # centre reaches x=640 at 1.28 s
    assert d.crop is not None and d.crop.shape[0] > 0


@pytest.mark.parametrize(
    ("row", "stream", "hazard", "reason"),
    [
        (scores(battery=0.8), Stream.ELECTRONICS, "battery", Reason.OK),
        (scores(phone=0.7), Stream.ELECTRONICS, "battery", Reason.OK),
        (scores(textile=0.9), Stream.TEXTILE, None, Reason.OK),
        (scores(plastic=0.5, battery=0.3), Stream.MANUAL, "battery", Reason.HAZARD_DOUBT),
        (scores(plastic=0.3, glass=0.3, paper=0.3), Stream.MANUAL, None, Reason.LOW_CONFIDENCE),
        (scores(medical=0.8), Stream.RESIDUAL, "biohazard", Reason.OK),
    ],
)
def test_vote_to_stream_and_hazard(row, stream, hazard, reason) -> None:
    decisions, _ = run([{"id": 1, "x0": 0.0, "y": 300, "scores": row}])
    assert len(decisions) == 1
    assert (decisions[0].stream, decisions[0].hazard, decisions[0].reason) == (stream, hazard, reason)


def test_fragmented_track_gives_one_decision() -> None:
    # the tracker loses the item just before the line and gives it a new id after
    tracks = [
        {"id": 1, "x0": 0.0, "y": 300, "last": 35, "scores": scores(can=0.9)},
        {"id": 2, "x0": 0.0, "y": 300, "first": 38, "scores": scores(can=0.9)},
    ]
    decisions, line = run(tracks)
    assert len(decisions) == 1
    assert line.merged == 1


def test_two_items_side_by_side_give_two_decisions() -> None:
    tracks = [
        {"id": 1, "x0": 0.0, "y": 200, "scores": scores(can=0.9)},
        {"id": 2, "x0": 0.0, "y": 400, "scores": scores(plastic=0.9)},
    ]
    decisions, _ = run(tracks)
    assert sorted(d.class_name for d in decisions) == ["can", "plastic"]


def test_item_lost_before_line_is_still_decided() -> None:
    decisions, _ = run([{"id": 7, "x0": 0.0, "y": 300, "last": 30, "scores": scores(pcb=0.9)}])
    assert len(decisions) == 1
    assert decisions[0].crossed_at == pytest.approx(1.28, abs=0.05)
    assert "predict" in decisions[0].detail


def test_item_first_seen_past_line_is_decided_once() -> None:
    decisions, _ = run([{"id": 3, "x0": 0.0, "y": 300, "first": 45, "scores": scores(cable=0.9)}])
    assert len(decisions) == 1
    assert decisions[0].crossed_at == pytest.approx(1.28, abs=0.01)


def test_short_track_goes_to_manual() -> None:
    cfg = DecisionConfig(min_track_frames=10)
    decisions, _ = run([{"id": 3, "x0": 0.0, "y": 300, "first": 36, "last": 40, "scores": scores(can=0.9)}], cfg=cfg)
    assert len(decisions) == 1
    assert decisions[0].reason is Reason.SHORT_TRACK and decisions[0].stream is Stream.MANUAL


@pytest.mark.parametrize(
    ("row", "bin_name"),
    [(scores(battery=0.9), "hazard"), (scores(can=0.9), "metal"), (scores(plastic=0.5, battery=0.3), "manual"),
     (scores(textile=0.9), "textile"), (scores(glass=0.9), "residual")],
)
def test_router_bins_and_fire_time(row, bin_name) -> None:
    decisions, _ = run([{"id": 1, "x0": 0.0, "y": 300, "scores": row}])
    cfg = RoutingConfig(belt_speed_source="config", belt_speed_mps=0.5)
    a = Router(cfg, belt()).route(decisions[0])
    assert a.bin == bin_name
    dist = cfg.bins[bin_name].distance_m
    assert a.fire_at == pytest.approx(decisions[0].crossed_at + dist / 0.5)
    assert a.fire_at_ticks == decisions[0].crossed_ticks + round(dist * cfg.ticks_per_m)


def test_class_map_places_foreign_model_classes() -> None:
    from station.classes import ClassMapError, ClassMapper

    names = ["person", "cell phone", "bottle"]
    m = ClassMapper(names, TAX, {"cell phone": "phone", "bottle": "plastic"})
    dets = Detections(np.array([[0, 0, 10, 10]] * 3), np.array([0.9, 0.8, 0.7]), np.array([0, 1, 2]),
                      class_scores=np.array([[0.9, 0, 0], [0, 0.8, 0.1], [0, 0, 0.7]]))
    out = m(dets)
    assert [TAX.names[i] for i in out.class_id] == ["phone", "plastic"]
    assert out.class_scores is not None and out.class_scores.shape == (2, len(TAX.names))
    assert out.class_scores[0, TAX.index("phone")] == pytest.approx(0.8)
    with pytest.raises(ClassMapError, match="not in the taxonomy"):
        ClassMapper(names, TAX)
    with pytest.raises(ClassMapError, match="'nope' is not a taxonomy class"):
        ClassMapper(names, TAX, {"bottle": "nope"})
    assert ClassMapper(TAX.names, TAX).identity


def test_encoder_speed_is_measured_over_a_window() -> None:
    cfg = RoutingConfig(belt_speed_source="encoder", belt_speed_mps=0.1, ticks_per_m=2000.0)
    speed = BeltSpeed(cfg)
    assert speed.mps == 0.1  # nothing measured yet: config
    for k in range(120):  # 0.5 m/s, integer ticks at 30 fps (33.3 ticks per frame, rounded down)
        t = k / 30
        speed.update(Frame(IMG, k, t, ticks=int(0.5 * t * 2000)))
    assert speed.mps == pytest.approx(0.5, rel=2e-3)


def test_part_of_an_item_boxed_as_its_own_track_is_merged() -> None:
    # a second, smaller box inside the item (e.g. its label) tracked separately: still one item
    tracks = [
        {"id": 1, "x0": 0.0, "y": 300, "scores": scores(plastic=0.9)},
        {"id": 2, "x0": 25.0, "y": 310, "first": 10, "scores": scores(paper=0.6)},
    ]
    decisions, line = run(tracks)
    assert len(decisions) == 1 and line.merged == 1


@pytest.mark.parametrize(("big", "small", "decided", "alarmed"), [
    # a coin cell on the trailing half of a rag, first seen after the rag crossed: the rag's command is out;
    # merged, the battery would be lost, so it is handed on for an alarm naming the rag
    (scores(textile=0.9), scores(battery=0.8), ("textile", None), [("battery", "battery")]),
    # a phone's battery boxed apart: the phone carries the battery hazard already
    (scores(phone=0.9), scores(battery=0.8), ("phone", "battery"), []),
    # a label on a bottle: no hazard either way
    (scores(plastic=0.9), scores(paper=0.7), ("plastic", None), []),
    # a syringe on a rag: its hazard (biohazard) too
    (scores(textile=0.9), scores(medical=0.8), ("textile", None), [("medical", "biohazard")]),
    # a cable's plug voted partly battery (a doubt, not a battery): part of the cable
    (scores(cable=0.9), scores(cable=0.6, battery=0.25), ("cable", None), []),
])
def test_an_item_on_another_is_merged_and_a_hazard_on_it_alarmed(big, small, decided, alarmed) -> None:
    # the item's centre crosses at frame 38; the part, 100 px behind it, is first seen at frame 40
    tracks = [{"id": 1, "x0": 0.0, "y": 300, "size": (300, 200), "scores": big},
              {"id": 2, "x0": -100.0, "y": 320, "first": 40, "size": (24, 24), "scores": small}]
    decisions, line = run(tracks)
    assert [(d.class_name, d.hazard) for d in decisions] == [decided] and line.merged == 1
    hazards = line.take_hazards()
    assert [(h.part_class, h.hazard) for h in hazards] == alarmed
    assert all((h.item_id, h.item_class, h.track_id) == (decisions[0].item_id, decided[0], 2) for h in hazards)
    assert line.take_hazards() == []  # handed on once


@pytest.mark.parametrize(("small", "ahead", "decided"), [
    # a coin cell on a rag's leading half crosses the line first: decided with the rag, the rag flagged
    (scores(battery=0.8), 100.0, ("textile", "battery")),
    # ... on its trailing half: taken with the rag when the rag crosses
    (scores(battery=0.8), -100.0, ("textile", "battery")),
    # a syringe on a rag: its hazard too
    (scores(medical=0.8), 100.0, ("textile", "biohazard")),
    # a label on the rag's leading half, the model's guess at a part: the rag decides, no hazard
    (scores(paper=0.7), 100.0, ("textile", None)),
    # a plug voted partly battery (a doubt, not a battery): no hazard from it
    (scores(cable=0.6, battery=0.25), 100.0, ("textile", None)),
])
def test_a_part_inside_an_item_is_decided_with_the_item(small, ahead: float, decided) -> None:
    # the model boxes a part apart (a bottle's cap, a device's battery) or an item lies on another: the ejector
    # is timed from the item's centre, not from the part, which crosses 0.2 s earlier when it leads
    tracks = [{"id": 1, "x0": 0.0, "y": 300, "size": (300, 200), "scores": scores(textile=0.9)},
              {"id": 2, "x0": ahead, "y": 320, "size": (24, 24), "scores": small}]
    decisions, line = run(tracks)
    assert [(d.class_name, d.hazard, d.track_id) for d in decisions] == [(*decided, 1)]
    assert decisions[0].crossed_at == pytest.approx(W / 2 / SPEED, abs=1e-6)  # the rag's centre at the line
    assert line.merged == 1 and line.take_hazards() == []
    assert ("lies on it" in decisions[0].detail) == (decided[1] is not None)


@pytest.mark.parametrize(("item", "part", "ahead", "decided"), [
    # the model boxes a cable whole and, on some frames, its plug end apart (104 × 84 at the leading end of
    # 240 × 90, area 2.6 times smaller; seen on the simulator): one item, timed from the whole cable
    ((240, 90, scores(cable=0.9)), (104, 84, scores(cable=0.6)), 68.0, ("cable", None)),
    # a tub boxed whole and, later in its track, by its front two thirds (2.2 times smaller)
    ((300, 214, scores(plastic=0.9)), (180, 160, scores(plastic=0.7)), 60.0, ("plastic", None)),
    # a cell at the leading edge of a tub, three quarters of its box inside the tub's: the tub carries it
    ((250, 180, scores(plastic=0.9)), (28, 34, scores(battery=0.8)), 118.0, ("plastic", "battery")),
])
def test_a_partial_box_of_an_item_is_decided_with_the_item(item, part, ahead: float, decided) -> None:
    # the partial box leads, so its centre crosses first; deciding it would fire the ejector early by
    # ahead / speed (0.12 to 0.24 s) and the whole item would then merge into it as a fragment
    tracks = [{"id": 1, "x0": 0.0, "y": 300, "size": item[:2], "scores": item[2]},
              {"id": 2, "x0": ahead, "y": 300, "first": 20, "size": part[:2], "scores": part[2]}]
    decisions, line = run(tracks)
    assert [(d.class_name, d.hazard, d.track_id) for d in decisions] == [(*decided, 1)]
    assert decisions[0].crossed_at == pytest.approx(W / 2 / SPEED, abs=1e-6)
    assert line.merged == 1


@pytest.mark.parametrize(("size", "ahead"), [
    ((80, 60), 150.0),  # two thirds of its box outside the tub's (overlap 0.31)
    ((24, 24), 111.0),  # a cell more than half outside (overlap 0.45)
])
def test_a_box_mostly_outside_another_is_not_its_part(size, ahead: float) -> None:
    # a small item touching a larger one at its leading edge is its own item: two decisions
    tracks = [{"id": 1, "x0": 0.0, "y": 300, "size": (220, 150), "scores": scores(plastic=0.9)},
              {"id": 2, "x0": ahead, "y": 300, "size": size, "scores": scores(can=0.9)}]
    decisions, line = run(tracks)
    assert sorted(d.class_name for d in decisions) == ["can", "plastic"]
    assert line.merged == 0


def test_a_part_whose_item_is_lost_waits_for_the_item() -> None:
    # the coin cell leads and crosses first (frame 33); the rag's track is lost from frame 35, before its
    # centre reaches the line, and is decided from its prediction: the cell waits for it all the same
    tracks = [{"id": 1, "x0": 0.0, "y": 300, "size": (300, 200), "scores": scores(textile=0.9), "last": 34},
              {"id": 2, "x0": 100.0, "y": 320, "size": (24, 24), "scores": scores(battery=0.8)}]
    decisions, line = run(tracks)
    assert [(d.class_name, d.hazard, d.track_id) for d in decisions] == [("textile", "battery", 1)]
    assert "decided from prediction" in decisions[0].detail and line.merged == 1


def _entering_box(centre_x0: float, w: float, h: float, y: float):
    """The box of an item moving with the belt, cut by the entry edge while it enters the view."""
    def box(k: int) -> list[float]:
        x = centre_x0 + SPEED * k / FPS
        return [max(0.0, x - w / 2), y - h / 2, x + w / 2, y + h / 2]
    return box


@pytest.mark.parametrize(("item_w", "first", "handed"), [
    # a monitor entering the view is boxed by its cut leading edge for two frames (a sliver 40 px wide), then
    # lost, and tracked anew (seen on the simulator): the sliver lies inside the new box, a part of the item
    (440.0, {"box": [0.0, 260.0, 40.0, 440.0], "last": 1}, None),
    # a long item boxed cut by the edge for 18 frames (up to 323 of its 600 px): more than half of it, so the
    # same item, not a part: the new track takes the first one's votes (18 looks at 0.6)
    (600.0, {"box": _entering_box(-260.0, 600.0, 200.0, 350.0), "last": 17}, 10.8),
])
def test_an_item_tracked_anew_after_its_first_looks_is_timed_by_the_new_track(item_w, first, handed) -> None:
    # the first track's prediction, from the centre of a box cut by the entry edge, says the item crossed
    # more than the grace for a lost track early; the new track holds where that box is now and times the item
    centre_x0 = 40.0 - item_w / 2  # the item's leading edge is 40 px into the view at frame 0
    tracks = [{"id": 1, "x0": 0.0, "y": 350, "scores": scores(keyboard=0.6), **first},
              {"id": 2, "x0": 0.0, "y": 350, "first": 20, "box": _entering_box(centre_x0, item_w, 200.0, 350.0),
               "scores": scores(monitor=0.8)}]
    decisions, line = run(tracks)
    assert [(d.track_id, d.class_name, d.reason) for d in decisions] == [(2, "monitor", Reason.OK)]
    assert decisions[0].crossed_at == pytest.approx((W / 2 - centre_x0) / SPEED, abs=0.02)
    assert decisions[0].votes.get("keyboard") == (None if handed is None else pytest.approx(handed, abs=1e-3))
    assert line.merged == 1


def test_a_cell_lost_on_a_large_item_before_it_crosses_is_decided_with_the_item() -> None:
    # a cell on the leading part of a large rag, seen whole for 10 frames, then lost (hidden by a fold); its
    # predicted crossing comes before the rag's: the rag, in view and holding where the cell is, takes it as
    # a part, is flagged for it and is timed from its own centre
    tracks = [{"id": 1, "x0": 0.0, "y": 350, "size": (500, 300), "scores": scores(textile=0.9)},
              {"id": 2, "x0": 200.0, "y": 350, "size": (24, 24), "last": 9, "scores": scores(battery=0.8)}]
    decisions, line = run(tracks)
    assert [(d.class_name, d.hazard, d.track_id) for d in decisions] == [("textile", "battery", 1)]
    assert decisions[0].crossed_at == pytest.approx(W / 2 / SPEED, abs=1e-6)
    assert "lies on it" in decisions[0].detail and line.merged == 1


def test_a_lost_battery_is_not_handed_to_the_item_it_overlaps_to_be_outvoted() -> None:
    # a battery seen whole for 5 looks, then lost, 80 % inside the box of a can under twice its size (no
    # part of it): were its votes handed to the can, 4.0 battery against 36 can would not even be a doubt and
    # the battery would ride to the metal bin. It is decided from its prediction, a hazard
    tracks = [{"id": 1, "x0": 0.0, "y": 300, "size": (180, 100), "scores": scores(can=0.9)},
              {"id": 2, "x0": 60.0, "y": 300, "size": (100, 100), "last": 4, "scores": scores(battery=0.8)}]
    decisions, line = run(tracks, cfg=DecisionConfig(lost_grace_s=0.0))
    assert [(d.track_id, d.class_name, d.hazard) for d in decisions] == [(2, "battery", "battery")]
    assert "decided from prediction" in decisions[0].detail and line.merged == 1  # the can, as a fragment


def test_a_small_item_beside_a_larger_one_is_its_own_item() -> None:
    # a coin cell next to (not on) a rag: two items, two decisions
    tracks = [{"id": 1, "x0": 0.0, "y": 300, "size": (300, 200), "scores": scores(textile=0.9)},
              {"id": 2, "x0": 100.0, "y": 440, "size": (24, 24), "scores": scores(battery=0.8)}]
    decisions, line = run(tracks)
    assert sorted((d.class_name, d.hazard) for d in decisions) == [("battery", "battery"), ("textile", None)]
    assert line.merged == 0


@pytest.mark.parametrize("boxes", [
    [[0.0, 310.0, 30.0, 340.0]] * 4,  # cut by the entry edge at every look
    [[0.0, 310.0, 30.0, 340.0], [3.0, 310.0, 33.0, 340.0], [0.0, 310.0, 30.0, 340.0], [0.0, 310.0, 30.0, 340.0],
     [0.0, 310.0, 30.0, 340.0]],  # once whole, by 3 px
    [[40.0, 310.0, 70.0, 340.0]] * 2,  # whole, but two looks only
])
def test_a_battery_sliver_at_the_entry_edge_of_an_item_is_merged(boxes: list[list[float]]) -> None:
    # the model boxes the part of a rag still entering the view as a battery, for a few frames, cut by the
    # edge (seen on the simulator): that is the rag's own part, not a coin cell on it: merged, no alarm
    rag = {"id": 1, "x0": 0.0, "y": 300, "size": (300, 200), "scores": scores(textile=0.9)}
    sliver = {"id": 2, "x0": 0.0, "y": 325, "first": 5, "last": 4 + len(boxes), "box": lambda k: boxes[k - 5],
              "scores": scores(battery=0.8)}
    decisions, line = run([rag, sliver])
    assert [(d.class_name, d.hazard) for d in decisions] == [("textile", None)]
    assert line.merged == 1 and line.take_hazards() == []


def test_sliver_seen_only_at_the_exit_edge_is_not_an_item() -> None:
    # x0 chosen so the box is cut by the right edge (x2 = 1280) for its whole short life
    tracks = [{"id": 9, "x0": 1245.0 - SPEED * 2.0, "y": 300, "first": 60, "last": 61, "scores": scores(battery=0.9)}]
    decisions, line = run(tracks)
    assert decisions == [] and line.ignored == 1


def test_box_spanning_the_whole_view_is_not_an_item() -> None:
    # the model boxes the whole belt for a second while an item comes in (seen with the default model on the
    # simulator): that box has no position along the belt (its centre is the view's centre whatever moves),
    # so it is neither decided, which would time an ejector from nothing, nor allowed to swallow the item
    item = {"id": 1, "x0": 200.0, "y": 300, "scores": scores(textile=0.8)}
    spanning = {"id": 2, "x0": 0.0, "y": 360, "first": 5, "last": 40, "box": [4.0, 20.0, W - 16.0, 700.0],
                "scores": scores(textile=0.4)}
    decisions, line = run([item, spanning])
    assert [d.track_id for d in decisions] == [1] and line.merged == 0
    assert decisions[0].crossed_at == pytest.approx((W / 2 - 200.0) / SPEED, abs=1e-3)


class _Says:
    """A second look that gives the same probabilities for every crop (or raises ``fails``)."""

    version = "look-1"

    def __init__(self, probs: np.ndarray | None = None, fails: Exception | None = None) -> None:
        self.probs, self.fails, self.crops = probs, fails, 0

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        self.crops += 1
        assert crop.ndim == 3 and crop.shape[0] > 0 and crop.shape[1] > 0
        if self.fails is not None:
            raise self.fails
        assert self.probs is not None
        return self.probs.astype(np.float64)


@pytest.mark.parametrize(("track", "look", "decided", "words"), [
    # the crop classifier settles a close track vote
    (scores(can=0.5, plastic=0.4), scores(plastic=0.95, can=0.05),
     ("plastic", Stream.PLASTIC, None, Reason.OK), "track vote can 0.56 (metal), crop classifier plastic 0.95"),
    # a unanimous track vote is not overturned by a classifier it gives no share to
    (scores(can=0.9), scores(paper=0.9, can=0.1), ("can", Stream.METAL, None, Reason.OK), ""),
    # outright disagreement leaves no class a winning share: a person looks (the hazard kept for the bin's
    # checklist)
    (scores(battery=0.8), scores(can=0.99), ("battery", Stream.MANUAL, "battery", Reason.LOW_CONFIDENCE),
     "track vote battery 1.00 (electronics, battery), crop classifier can 0.99"),
    # a phone the track half doubts, seen as a mouse up close, is a mouse
    (scores(phone=0.6, mouse=0.4), scores(mouse=0.99), ("mouse", Stream.ELECTRONICS, None, Reason.OK),
     "track vote phone 0.60 (electronics, battery), crop classifier mouse 0.99"),
    # it may raise a doubt the track vote alone fell short of (battery share 0.125 → 0.3)
    (scores(can=0.7, battery=0.1), scores(battery=0.6, can=0.4),
     ("can", Stream.MANUAL, "battery", Reason.HAZARD_DOUBT), "battery vote share"),
])
def test_the_second_look_is_fused_with_the_track_vote(track, look, decided, words: str) -> None:
    says = _Says(look)
    decisions, _ = run([{"id": 1, "x0": 0.0, "y": 300, "scores": track}], look=says)
    assert says.crops == 1 and len(decisions) == 1
    d = decisions[0]
    assert (d.class_name, d.stream, d.hazard, d.reason) == decided
    assert words in d.detail
    assert d.classifier_version == "look-1"
    assert d.crop_scores == {n: round(float(p), 4) for n, p in zip(TAX.names, look, strict=True) if p >= 0.001}
    assert d.votes == pytest.approx({n: v * d.observations for n, v in zip(TAX.names, track, strict=True) if v > 0},
                                    rel=1e-3)  # the stored votes stay the track's own


def test_a_failing_second_look_sends_the_item_to_manual_and_says_so() -> None:
    says = _Says(fails=RuntimeError("onnxruntime: out of memory"))
    decisions, _ = run([{"id": 1, "x0": 0.0, "y": 300, "scores": scores(battery=0.9)}], look=says)
    d = decisions[0]
    assert (d.stream, d.hazard, d.reason) == (Stream.MANUAL, "battery", Reason.FAULT)
    assert "crop classifier look-1 failed (onnxruntime: out of memory)" in d.detail
    assert d.crop_scores == {} and d.classifier_version == ""


def test_merged_fragments_are_not_looked_at_twice() -> None:
    says = _Says(scores(can=1.0))
    tracks = [{"id": lambda k: 1 if k < 50 else 2, "x0": 0.0, "y": 300, "scores": scores(can=0.9)},
              {"id": 3, "x0": 0.0, "y": 300, "first": 70, "scores": scores(can=0.9)}]
    decisions, _ = run(tracks, look=says)
    assert len(decisions) == 1 and says.crops == 1


@pytest.mark.parametrize(("votes", "probs", "winner"), [
    ([6.0, 4.0, 0.0], [0.2, 0.8, 0.0], 1),  # the classifier settles a close vote
    ([9.0, 1.0, 0.0], [0.3, 0.7, 0.0], 0),  # a clear vote holds against a doubtful classifier
    ([5.0, 0.0, 5.0], [0.0, 1.0, 0.0], 1),  # both the track's classes ruled out: a class it never saw wins
])
def test_fusion_is_the_geometric_mean_of_shares(votes: list[float], probs: list[float], winner: int) -> None:
    v, p = np.array(votes), np.array(probs)
    fused = fuse_second_look(v, p)
    assert fused.sum() == pytest.approx(v.sum())
    expected = np.sqrt((v / v.sum() + 1e-3) * (p + 1e-3))
    assert fused / fused.sum() == pytest.approx(expected / expected.sum())
    assert int(np.argmax(fused)) == winner
