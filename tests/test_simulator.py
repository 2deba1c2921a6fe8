"""Conveyor simulator: items, belt frames and ground truth, dataset rendering, scorecard."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from station.config import SimulatorConfig
from station.events import Actuation, Decision, Reason
from station.simulator import (
    ConveyorSimulator,
    RenderSummary,
    ScoreError,
    SimulatorError,
    SpriteError,
    TruthItem,
    draw_item,
    render_dataset,
    score,
)
from station.simulator.items import NOMINAL_SIZE_M, PAINTERS
from station.simulator.render import MIN_VISIBLE, visible_boxes
from station.taxonomy import Stream, Taxonomy, load_taxonomy

TAX = load_taxonomy()
SMALL = {"width": 480, "height": 270, "px_per_m": 400.0}


def sim_cfg(**kw: object) -> SimulatorConfig:
    return SimulatorConfig(**{**SMALL, **kw})


def frames(sim: ConveyorSimulator, n: int) -> list:
    it = iter(sim)
    return [next(it) for _ in range(n)]


# --- items ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TAX.names)
def test_every_taxonomy_class_can_be_drawn(name: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(3):
        sp = draw_item(name, rng, 500.0)
        assert sp.class_name == name
        assert sp.image.shape[:2] == sp.alpha.shape and sp.image.dtype == np.uint8
        solid = (sp.alpha >= 128).sum()
        assert solid > 30, f"{name}: almost nothing drawn"
        assert (sp.alpha > 8).any(axis=0).all() and (sp.alpha > 8).any(axis=1).all(), "sprite not cropped"
        assert sp.image[sp.alpha > 128].std() > 2, f"{name}: flat colour, no shading"


@pytest.mark.parametrize("name", TAX.names)
def test_item_size_follows_px_per_m(name: str) -> None:
    a = draw_item(name, np.random.default_rng(3), 400.0, angle=0.0)
    b = draw_item(name, np.random.default_rng(3), 800.0, angle=0.0)
    assert b.width == pytest.approx(2 * a.width, abs=4)
    assert b.height == pytest.approx(2 * a.height, abs=4)
    lo, hi = NOMINAL_SIZE_M[name]
    longest_m = max(b.width, b.height) / 800.0
    assert 0.3 * lo <= longest_m <= 2.2 * hi


def test_items_vary_within_a_class() -> None:
    rng = np.random.default_rng(0)
    sizes = {draw_item("phone", rng, 500.0, angle=0.0).image.shape for _ in range(8)}
    assert len(sizes) > 4


@pytest.mark.parametrize(("name", "error"), [("battery", None), ("toaster", SpriteError)])
def test_draw_item_unknown_class(name: str, error: type[Exception] | None) -> None:
    rng = np.random.default_rng(0)
    if error is None:
        draw_item(name, rng)
    else:
        with pytest.raises(error, match=name):
            draw_item(name, rng)


def test_every_taxonomy_class_has_a_painter() -> None:
    assert set(TAX.names) <= set(PAINTERS)


# --- belt ----------------------------------------------------------------------------------------------------

def digest(fs: list) -> str:
    h = hashlib.sha256()
    for f in fs:
        h.update(f.image.tobytes())
    return h.hexdigest()


def test_same_seed_same_frames_and_truth() -> None:
    cfg = sim_cfg(seed=5, items_per_min=120)
    a, b = ConveyorSimulator(cfg, TAX), ConveyorSimulator(cfg, TAX)
    fa, fb = frames(a, 40), frames(b, 40)
    assert digest(fa) == digest(fb)
    assert a.truth == b.truth and len(a.truth) > 0
    c = ConveyorSimulator(sim_cfg(seed=6, items_per_min=120), TAX)
    assert digest(frames(c, 40)) != digest(fa)


def test_frames_shape_time_and_ticks() -> None:
    cfg = sim_cfg(fps=25.0, belt_speed_mps=0.8, ticks_per_m=1000.0)
    fs = frames(ConveyorSimulator(cfg, TAX), 30)
    for k, f in enumerate(fs):
        assert f.image.shape == (cfg.height, cfg.width, 3) and f.image.dtype == np.uint8
        assert f.index == k and f.source == "simulator"
        assert f.timestamp == pytest.approx(k / 25.0)
        assert f.ticks == int(0.8 * f.timestamp * 1000.0)
    ticks = [f.ticks for f in fs]
    assert ticks == sorted(ticks) and ticks[-1] > ticks[0]
    assert fs[0].image is not fs[1].image and not np.shares_memory(fs[0].image, fs[1].image)


def first_fully_visible(sim: ConveyorSimulator, limit: int = 600) -> tuple[TruthItem, float]:
    it = iter(sim)
    for _ in range(limit):
        f = next(it)
        for t in sim.truth:
            x0, _, x1, _ = t.box_at(f.timestamp)
            others = [o for o in sim.truth if o is not t and o.box_at(f.timestamp)[2] > 0
                      and o.box_at(f.timestamp)[0] < sim.cfg.width]
            if x0 > 5 and x1 < sim.cfg.width - 5 and not others:
                return t, f.timestamp
    raise AssertionError("no fully visible item")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rendered_pixels_are_where_box_at_says(seed: int) -> None:
    sim = ConveyorSimulator(sim_cfg(seed=seed, motion_blur=0.0, items_per_min=30), TAX)
    sim.light = None  # no shadows: every changed pixel belongs to the item
    item, t = first_fully_visible(sim)
    diff = np.abs(sim.render(t).astype(int) - sim.background(t).astype(int)).sum(axis=2)
    ys, xs = np.nonzero(diff > 0)
    x0, y0, x1, y1 = item.box_at(t)
    assert xs.min() == pytest.approx(x0, abs=1.5) and xs.max() + 1 == pytest.approx(x1, abs=1.5)
    assert ys.min() == pytest.approx(y0, abs=1.5) and ys.max() + 1 == pytest.approx(y1, abs=1.5)
    assert item.width_px == pytest.approx(x1 - x0) and item.height_px == pytest.approx(y1 - y0)


def test_line_time_and_ejector_time_follow_the_belt_speed() -> None:
    cfg = sim_cfg(belt_speed_mps=0.6, items_per_min=90)
    sim = ConveyorSimulator(cfg, TAX, line_x=0.3)
    frames(sim, 30)
    speed = 0.6 * cfg.px_per_m
    for t in sim.truth:
        x0, _, x1, _ = t.box_at(t.line_time)
        assert (x0 + x1) / 2 == pytest.approx(0.3 * cfg.width)
        assert t.box_at(t.entered_at)[2] == pytest.approx(0.0)
        assert t.box_at(t.line_time + 1.0)[0] - x0 == pytest.approx(speed)
        assert t.ejector_time(0.9) == pytest.approx(t.line_time + 1.5)
        assert t.stream is TAX.stream_of(t.class_name) and t.hazard == TAX.hazard_of(t.class_name)


def test_items_keep_clear_unless_touching() -> None:
    sim = ConveyorSimulator(sim_cfg(items_per_min=200, touching_prob=0.0, fps=4.0), TAX)
    frames(sim, 120)
    assert len(sim.truth) > 40
    for i, a in enumerate(sim.truth):
        ax0, ay0, ax1, ay1 = a.box_at(0.0)
        for b in sim.truth[i + 1:]:
            bx0, by0, bx1, by1 = b.box_at(0.0)
            overlap = min(ax1, bx1) > max(ax0, bx0) and min(ay1, by1) > max(ay0, by0)
            assert not overlap, f"items {a.item_id} and {b.item_id} overlap"
        assert sim.belt_top <= ay0 and ay1 <= sim.belt_bottom


def test_touching_items_touch() -> None:
    sim = ConveyorSimulator(sim_cfg(items_per_min=60, touching_prob=1.0, fps=4.0), TAX)
    frames(sim, 60)
    pairs = 0
    for a, b in zip(sim.truth, sim.truth[1:], strict=False):
        ax0, ay0, _, ay1 = a.box_at(0.0)
        _, by0, bx1, by1 = b.box_at(0.0)
        if abs(bx1 - ax0) < 0.2 * min(a.width_px, b.width_px) and min(ay1, by1) > max(ay0, by0):
            pairs += 1
    assert pairs >= len(sim.truth) // 3


def test_arrival_rate_and_class_restriction() -> None:
    sim = ConveyorSimulator(sim_cfg(items_per_min=60, fps=2.0, classes=["battery", "can"]), TAX)
    frames(sim, 240)  # two minutes
    assert 80 <= len(sim.truth) <= 165
    assert {t.class_name for t in sim.truth} == {"battery", "can"}


@pytest.mark.parametrize(("classes", "line_x", "match"), [
    (["battery", "toaster"], 0.5, "toaster"),
    (None, 1.5, "line_x"),
])
def test_simulator_rejects_bad_settings(classes: list[str] | None, line_x: float, match: str) -> None:
    with pytest.raises(SimulatorError, match=match):
        ConveyorSimulator(sim_cfg(classes=classes), TAX, line_x=line_x)


def write_cutouts(root: Path, name: str, colour: tuple[int, int, int] = (255, 0, 255)) -> Path:
    (root / name).mkdir(parents=True)
    img = np.zeros((60, 100, 4), np.uint8)
    cv2.ellipse(img, (50, 30), (45, 25), 0, 0, 360, (*colour, 255), -1)
    cv2.imwrite(str(root / name / "a.png"), img)
    return root


def test_cutouts_replace_procedural_items(tmp_path: Path) -> None:
    root = write_cutouts(tmp_path / "sprites", "mouse")
    sim = ConveyorSimulator(sim_cfg(sprites=str(root), items_per_min=120), TAX)
    frames(sim, 40)
    assert sim.truth and {t.class_name for t in sim.truth} == {"mouse"}
    with pytest.raises(SpriteError, match="not found"):
        ConveyorSimulator(sim_cfg(sprites=str(tmp_path / "nowhere")), TAX)


# --- render_dataset ------------------------------------------------------------------------------------------

def read_labels(path: Path) -> list[tuple[int, float, float, float, float]]:
    rows = []
    for line in path.read_text().splitlines():
        c, cx, cy, w, h = line.split()
        rows.append((int(c), float(cx), float(cy), float(w), float(h)))
    return rows


def test_render_dataset_writes_valid_yolo(tmp_path: Path) -> None:
    summary = render_dataset(tmp_path / "ds", 4, seed=1, width=320, height=256, items_per_image=(2, 4))
    assert isinstance(summary, RenderSummary) and summary.n_images == 4
    images = sorted((tmp_path / "ds" / "images").glob("*.jpg"))
    labels = sorted((tmp_path / "ds" / "labels").glob("*.txt"))
    assert [p.stem for p in images] == [p.stem for p in labels] and len(images) == 4
    total = 0
    for img_path, lab_path in zip(images, labels, strict=True):
        image = cv2.imread(str(img_path))
        assert image is not None and image.shape == (256, 320, 3)
        for c, cx, cy, w, h in read_labels(lab_path):
            total += 1
            assert 0 <= c < len(TAX.names)
            assert 0 < w <= 1 and 0 < h <= 1 and cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6
            assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6
    assert total == summary.n_boxes == sum(summary.per_class.values()) > 0
    data = yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text())
    assert data["names"] == TAX.names and data["nc"] == len(TAX.names)
    assert summary.to_dict()["n_boxes"] == total


def test_render_dataset_is_deterministic(tmp_path: Path) -> None:
    for out in ("a", "b"):
        render_dataset(tmp_path / out, 2, seed=9, width=256, height=256)
    for sub in ("images", "labels"):
        for p in (tmp_path / "a" / sub).iterdir():
            assert p.read_bytes() == (tmp_path / "b" / sub / p.name).read_bytes()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_render_boxes_match_the_drawn_item(tmp_path: Path, seed: int) -> None:
    """A magenta cut-out on a belt: the label box is the box of the magenta pixels."""
    root = write_cutouts(tmp_path / "sprites", "battery")
    s = render_dataset(tmp_path / "ds", 1, seed=seed, width=320, height=320, classes=["battery"], sprites=root,
                       items_per_image=(1, 1))
    raw = cv2.imread(str(next((tmp_path / "ds" / "images").glob("*.jpg"))))
    assert raw is not None
    img = raw.astype(int)
    rows = read_labels(next((tmp_path / "ds" / "labels").glob("*.txt")))
    magenta = (img[..., 0] - img[..., 1] > 60) & (img[..., 2] - img[..., 1] > 60)
    if not rows:  # mostly out of frame: then little of it may show
        assert s.n_boxes == 0 and magenta.sum() < 0.5 * np.pi * 45 * 25
        return
    (c, cx, cy, w, h), = rows
    assert c == TAX.index("battery")
    ys, xs = np.nonzero(magenta)
    tol = 7  # horizontal motion blur and JPEG smear the edges
    assert xs.min() == pytest.approx((cx - w / 2) * 320, abs=tol)
    assert xs.max() + 1 == pytest.approx((cx + w / 2) * 320, abs=tol)
    assert ys.min() == pytest.approx((cy - h / 2) * 320, abs=4)
    assert ys.max() + 1 == pytest.approx((cy + h / 2) * 320, abs=4)


@pytest.mark.parametrize(("visible_px", "labelled"), [(100, True), (41, True), (39, False), (0, False)])
def test_partly_hidden_items_below_min_visible_get_no_box(visible_px: int, labelled: bool) -> None:
    owner = np.full((20, 20), -1, np.int16)
    owner.reshape(-1)[:visible_px] = 0
    boxes = visible_boxes(owner, ["can"], [100])
    assert bool(boxes) == labelled
    if labelled:
        assert boxes[0].visible >= MIN_VISIBLE and boxes[0].box[0] == 0 and boxes[0].box[1] == 0


def test_render_dataset_rejects_unknown_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="toaster"):
        render_dataset(tmp_path, 1, classes=["toaster"])


@pytest.mark.parametrize(("classes", "code", "said"), [
    ("metal, paper", 0, None),
    ("metal,toaster", 2, "error: sim render: classes ['toaster'] are not in the taxonomy"),
])
def test_sim_render_cli_draws_only_the_classes_asked(tmp_path: Path, classes: str, code: int, said: str | None) -> None:
    from typer.testing import CliRunner

    from station.cli import app

    result = CliRunner().invoke(app, ["sim", "render", "--out", str(tmp_path), "--n", "6", "--width", "320",
                                      "--height", "192", "--classes", classes])
    assert result.exit_code == code, result.output
    if said is not None:
        assert said in result.output and "Traceback" not in result.output
        return
    drawn = {int(line.split()[0]) for f in (tmp_path / "labels").glob("*.txt") for line in f.read_text().splitlines()}
    assert drawn and drawn <= {TAX.index("metal"), TAX.index("paper")}


# --- score ---------------------------------------------------------------------------------------------------

DIST = {"electronics": 0.6, "plastic": 0.9, "metal": 1.2, "hazard": 0.4, "manual": 1.8, "residual": 2.1,
        "textile": 1.5}


def gt(item_id: int, name: str, line_time: float, y: float = 300.0) -> TruthItem:
    return TruthItem(item_id=item_id, class_name=name, stream=TAX.stream_of(name), hazard=TAX.hazard_of(name),
                     y_px=y, width_px=100.0, height_px=80.0, entered_at=line_time - 1.0, line_time=line_time)


def dec(item: str, t: float, name: str, *, y: float = 300.0, stream: Stream | None = None,
        hazard: str | None = "same") -> Decision:
    return Decision(item_id=item, station_id="s", track_id=1, frame_index=0, crossed_at=t, crossed_ticks=None,
                    class_name=name, stream=stream or TAX.stream_of(name),
                    hazard=TAX.hazard_of(name) if hazard == "same" else hazard, confidence=1.0, votes={name: 1.0},
                    observations=5, reason=Reason.OK, box=(590.0, y - 40, 690.0, y + 40), model_version="t")


def act(item: str, fire_at: float, bin_name: str) -> Actuation:
    return Actuation(actuation_id="a" + item, item_id=item, bin=bin_name, channel=0, fire_at=fire_at,
                     fire_at_ticks=None, fire_at_wall=0.0)


TRUTH = [gt(0, "can", 1.0), gt(1, "battery", 2.0), gt(2, "plastic", 3.0, y=150.0)]
PERFECT = [dec("d0", 1.01, "can"), dec("d1", 2.0, "battery"), dec("d2", 2.98, "plastic", y=150.0)]
ACTS = [act("d0", 3.4, "metal"), act("d1", 2.8, "hazard"), act("d2", 4.8, "plastic")]  # belt 0.5 m/s

CASES: dict[str, tuple[list[Decision], list[Actuation], dict[str, float]]] = {
    "perfect": (PERFECT, ACTS, {"items": 3, "decided": 3, "missed": 0, "wrong_stream": 0, "stream_accuracy": 1.0,
                                "hazards_missed": 0, "hazards_false": 0,
                                "actuations": 3, "actuations_late": 0, "actuations_early": 0}),
    "missed": (PERFECT[:2], ACTS[:2], {"decided": 2, "missed": 1, "stream_accuracy": 2 / 3,
                                       "missed_rate": 1 / 3}),
    "doubled": ([*PERFECT, dec("d3", 1.1, "can")], ACTS, {"decided": 3, "doubled": 1, "false_decisions": 0}),
    "wrong stream": ([PERFECT[0], PERFECT[1], dec("d2", 3.0, "glass", y=150.0)], ACTS,
                     {"wrong_stream": 1, "stream_accuracy": 2 / 3}),
    "manual is wrong": ([dec("d0", 1.0, "can", stream=Stream.MANUAL), *PERFECT[1:]], ACTS, {"wrong_stream": 1}),
    "hazard missed": ([PERFECT[0], dec("d1", 2.0, "battery", hazard=None), PERFECT[2]], ACTS,
                      {"hazards_missed": 1, "wrong_stream": 0}),
    "battery missed": ([PERFECT[0], PERFECT[2]], [ACTS[0], ACTS[2]], {"hazards_missed": 1, "missed": 1}),
    # a bottle flagged as a battery (a cap the model calls one): its stream is right, but it goes to the hazard bin
    "false hazard": ([*PERFECT[:2], dec("d2", 2.98, "plastic", y=150.0, hazard="battery")], ACTS,
                     {"hazards_false": 1, "wrong_stream": 0, "hazards_missed": 0}),
    "hazard doubt on a can": ([dec("d0", 1.0, "can", stream=Stream.MANUAL, hazard="battery"), *PERFECT[1:]], ACTS,
                              {"hazards_false": 1, "wrong_stream": 1}),
    "wrong lane is false": ([*PERFECT, dec("d4", 1.0, "can", y=600.0)], ACTS, {"false_decisions": 1}),
    "too far in time": ([PERFECT[0], PERFECT[1], dec("d2", 3.5, "plastic", y=150.0)], ACTS,
                        {"missed": 1, "false_decisions": 1}),
    "late actuation": (PERFECT, [ACTS[0], act("d1", 2.9, "hazard"), ACTS[2]],
                       {"actuations_late": 1, "actuations_early": 0, "actuation_error_ms_max": 100.0}),
    "early actuation": (PERFECT, [act("d0", 3.3, "metal"), *ACTS[1:]],
                        {"actuations_early": 1, "actuation_error_ms_p50": 0.0}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_score(case: str) -> None:
    decisions, actuations, expected = CASES[case]
    card = score(TRUTH, decisions, actuations, start=0.0, end=10.0, bin_distances=DIST)
    got = card.to_dict()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert "stream_accuracy" in card.table() and card.to_json().startswith("{")


def test_score_counts_only_items_in_the_window() -> None:
    card = score(TRUTH, PERFECT, ACTS, start=1.5, end=2.5, bin_distances=DIST)
    assert (card.items, card.decided, card.false_decisions, card.actuations) == (1, 1, 0, 1)


def test_score_unknown_bin_raises() -> None:
    with pytest.raises(ScoreError, match="chute"):
        score(TRUTH, PERFECT, [act("d0", 2.0, "chute")], start=0.0, end=10.0, bin_distances=DIST)


def test_score_defaults_to_the_routing_bins() -> None:
    card = score(TRUTH, PERFECT, ACTS, start=0.0, end=10.0)
    assert card.actuations_late == card.actuations_early == 0


def test_simulated_truth_scores_perfectly_against_itself() -> None:
    sim = ConveyorSimulator(sim_cfg(items_per_min=90, fps=4.0), TAX)
    frames(sim, 80)
    decisions = [dec(f"d{t.item_id}", t.line_time, t.class_name, y=t.y_px) for t in sim.truth]
    card = score(sim.truth, decisions, [], start=2.0, end=15.0)
    assert card.items > 5 and card.missed == card.wrong_stream == card.false_decisions == card.hazards_missed == 0


def test_taxonomy_type() -> None:
    assert isinstance(TAX, Taxonomy)
