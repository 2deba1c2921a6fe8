"""Corrections as data (who, when, before/after, image, box), refusals that change nothing, conflicts, the
review queue's order and reasons, YOLO/COCO export, and the hazard checklist with its quarantine log."""

from __future__ import annotations

import csv
import io
import wave
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from ui_seed import PASSWORD, Running, Seeded, seed

from station.api import create_app
from station.events import Severity
from station.live import LiveView
from station.metrics import StationMetrics
from station.store import AlarmRecord, ItemRecord, NotFoundError
from training.formats import image_size, read_coco, read_yolo
from ui.app import add_console_routes, make_console
from ui.auth import ConsoleUser, ForbiddenError
from ui.corrections import (
    NOT_AN_ITEM,
    AnswerExistsError,
    CorrectionIn,
    FrameNotFoundError,
    Kind,
    NothingToUndoError,
    UndoOutOfReachError,
    export_dataset,
    grab_frame,
    resolve,
    submit,
    undo_last,
)
from ui.hazard import (
    ChecklistError,
    HazardAlarm,
    acknowledge,
    active_hazards,
    beep_wav,
    checklist,
    quarantine_csv,
)
from ui.operator import my_answer, strip_html
from ui.repo import CorrectionRecord
from ui.review import next_item, review_queue
from ui.settings import AnswerRules, Console, ConsoleSettings

Served = tuple[FastAPI, Console]
OPERATOR, OPERATOR2 = ConsoleUser("operator", "operator"), ConsoleUser("operator2", "operator")
ENGINEER, MANAGER = ConsoleUser("engineer", "engineer"), ConsoleUser("manager", "manager")


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    s = seed(tmp_path)
    yield s
    s.store.close()


@pytest.fixture
def served(seeded: Seeded) -> Served:
    """The station app with the console's API (no Gradio UI: these tests need no browser)."""
    web = create_app(seeded.store, Running(), seeded.live, StationMetrics(), seeded.cfg)
    console = make_console(web, None, seeded.cfg, ConsoleSettings())
    add_console_routes(web, console)
    return web, console


@pytest.fixture
def console(served: Served) -> Console:
    return served[1]


def client_for(served: Served, username: str) -> TestClient:
    client = TestClient(served[0])
    r = client.post("/login", data={"username": username, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303
    return client


def snapshot(console: Console) -> tuple[list[CorrectionRecord], list[ItemRecord], list[str]]:
    """Everything a refused correction must leave alone."""
    frames = sorted(p.name for p in console.frames_dir.glob("*.jpg")) if console.frames_dir.exists() else []
    return (console.repo.corrections(include_undone=True), console.ctx.store.list_items(page_size=100).items, frames)


# -- storing corrections ---------------------------------------------------------------------------------


def test_a_reclass_is_stored_with_who_when_before_after_image_and_box(served: Served, console: Console,
                                                                       seeded: Seeded) -> None:
    item_id = seeded.ids["can"]
    with client_for(served, "operator") as client:
        r = client.post("/api/console/corrections", json={"kind": "reclass", "item_id": item_id, "class_name": "metal"})
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["username"], out["role"], out["before_class"], out["after_class"], out["stream"]) == \
        ("operator", "operator", "can", "metal", "metal")
    [c] = console.repo.corrections([item_id])
    item = console.ctx.store.get_item(item_id)
    assert item is not None and c.frame_path == item.crop_path and c.created_at > item.decided_at
    crop = console.ctx.store.evidence_dir / str(c.frame_path)
    w, h = image_size(crop)
    assert c.box is not None
    x1, y1, x2, y2 = c.box
    # the item's box, moved into the padded crop: about a tenth of its size in from each side
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    assert (x2 - x1) == pytest.approx(item.box[2] - item.box[0], abs=1.0)
    assert item.class_name == "can", "the station's decision record is never rewritten"


def test_the_same_class_counts_as_a_confirmation(console: Console, seeded: Seeded) -> None:
    c = submit(console, OPERATOR, CorrectionIn(kind=Kind.RECLASS, item_id=seeded.ids["plastic"], class_name="plastic"))
    assert (c.kind, c.before_class, c.after_class) == ("confirm", "plastic", "plastic")


BAD: list[tuple[str, dict[str, object], int, str]] = [
    ("unknown class", {"kind": "reclass", "class_name": "unicorn"}, 422, "'unicorn' is not in the taxonomy"),
    ("no class", {"kind": "reclass"}, 422, "choose a class"),
    ("unknown item", {"kind": "not_item", "item_id": "f" * 32}, 404, "is not recorded"),
    ("no item", {"kind": "confirm", "item_id": None}, 404, "item_id is missing"),
    ("unknown kind", {"kind": "delete"}, 422, "kind"),
    ("extra field", {"kind": "not_item", "username": "admin"}, 422, "username"),
    ("box outside", {"kind": "missed_item", "class_name": "can", "box": [600, 300, 700, 380]}, 422,
     "lies outside the frame (640×400)"),
    ("box negative", {"kind": "missed_item", "class_name": "can", "box": [-40, 10, 50, 60]}, 422, "outside the frame"),
    ("box empty", {"kind": "missed_item", "class_name": "can", "box": [50, 50, 52, 90]}, 422, "smaller than 4 px"),
    ("box short", {"kind": "missed_item", "class_name": "can", "box": [1, 2, 3]}, 422, "four numbers"),
    ("no frame", {"kind": "missed_item", "class_name": "can", "box": [1, 2, 30, 40], "frame_id": "0" * 32}, 404,
     "was not grabbed here"),
    ("bad frame id", {"kind": "missed_item", "class_name": "can", "box": [1, 2, 30, 40], "frame_id": "../x"}, 404,
     "not a grabbed frame id"),
    ("missed with item", {"kind": "missed_item", "class_name": "can", "box": [1, 2, 30, 40], "item_id": "x"}, 422,
     "has no item_id"),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_malformed_corrections_are_refused_and_change_nothing(served: Served, console: Console, seeded: Seeded,
                                                               case: str, body: dict[str, object], status: int,
                                                               message: str) -> None:
    frame = grab_frame(console)
    submit(console, OPERATOR, CorrectionIn(kind=Kind.NOT_ITEM, item_id=seeded.ids["paper"]))  # something stored
    payload = {"item_id": seeded.ids["can"], **body}
    if body["kind"] == "missed_item":
        payload = {"frame_id": frame.frame_id, **body}
    before = snapshot(console)
    with client_for(served, "operator") as client:
        r = client.post("/api/console/corrections", json=payload)
    assert r.status_code == status, r.text
    assert message in str(r.json()["detail"])
    assert snapshot(console) == before


def test_missed_item_box_on_a_grabbed_frame(served: Served, console: Console) -> None:
    frame = grab_frame(console)
    assert (frame.width, frame.height) == (640, 400)
    c = submit(console, OPERATOR, CorrectionIn(kind=Kind.MISSED_ITEM, frame_id=frame.frame_id, class_name="can",
                                               box=[100.4, 50, 180, 140.6]))
    assert (c.kind, c.item_id, c.after_class, c.box) == ("missed_item", None, "can", (100.4, 50.0, 180.0, 140.6))
    assert (console.ctx.store.evidence_dir / str(c.frame_path)).is_file()
    with client_for(served, "operator") as client:
        assert client.get(frame.url).headers["content-type"] == "image/jpeg"
    with client_for(served, "manager") as client:
        assert client.get(frame.url).status_code == 403


def test_grabbing_needs_a_frame(console: Console) -> None:
    console.live = LiveView()
    with pytest.raises(FrameNotFoundError, match="no camera frame yet"):
        grab_frame(console)


def test_undo_takes_back_my_latest_correction_only(console: Console, seeded: Seeded) -> None:
    first = submit(console, OPERATOR, CorrectionIn(kind=Kind.RECLASS, item_id=seeded.ids["can"], class_name="metal"))
    second = submit(console, OPERATOR, CorrectionIn(kind=Kind.NOT_ITEM, item_id=seeded.ids["paper"]))
    other = submit(console, OPERATOR2, CorrectionIn(kind=Kind.NOT_ITEM, item_id=seeded.ids["plastic"]))
    assert undo_last(console, OPERATOR).id == second.id
    assert undo_last(console, OPERATOR).id == first.id
    with pytest.raises(NothingToUndoError, match="operator has no correction left"):
        undo_last(console, OPERATOR)
    standing = {c.id: c.undone for c in console.repo.corrections(include_undone=True)}
    assert standing == {first.id: True, second.id: True, other.id: False}


# one answer per item and person, unless changed on purpose; (first, second, change, status, stored, message)
SECOND: list[tuple[dict[str, object], dict[str, object], bool, int, str | None, str]] = [
    ({"kind": "reclass", "class_name": "metal"}, {"kind": "reclass", "class_name": "plastic"}, False, 409, None,
     "as metal at"),
    ({"kind": "reclass", "class_name": "metal"}, {"kind": "reclass", "class_name": "metal"}, False, 409, None,
     "as metal already"),
    ({"kind": "reclass", "class_name": "metal"}, {"kind": "reclass", "class_name": "metal"}, True, 409, None,
     "as metal already"),
    ({"kind": "confirm"}, {"kind": "not_item"}, False, 409, None, "press C, then the new answer"),
    ({"kind": "confirm"}, {"kind": "reclass", "class_name": "can"}, True, 409, None, "as can already"),
    ({"kind": "reclass", "class_name": "metal"}, {"kind": "reclass", "class_name": "plastic"}, True, 201, "metal",
     ""),
    ({"kind": "not_item"}, {"kind": "confirm"}, True, 201, NOT_AN_ITEM, ""),
]


@pytest.mark.parametrize(("first", "second", "change", "status", "changed_from", "message"), SECOND)
def test_a_second_answer_is_refused_unless_sent_as_a_change(served: Served, console: Console, seeded: Seeded,
                                                             first: dict[str, object], second: dict[str, object],
                                                             change: bool, status: int, changed_from: str | None,
                                                             message: str) -> None:
    item = seeded.ids["can"]
    with client_for(served, "operator") as client:
        assert client.post("/api/console/corrections", json={"item_id": item, **first}).status_code == 201
        before = console.repo.corrections(include_undone=True)
        r = client.post("/api/console/corrections", json={"item_id": item, "change": change, **second})
    assert r.status_code == status, r.text
    if status != 201:
        assert message in r.json()["detail"] and console.repo.corrections(include_undone=True) == before
        return
    assert r.json()["changed_from"] == changed_from
    [audit] = console.repo.access.audit_log(action="correction.change")
    assert (audit.actor, audit.target) == ("operator", item)
    assert audit.detail == f"was {changed_from}, now {resolve(console.repo.corrections([item])).answers[0].text}"
    assert len(console.repo.corrections([item])) == 2, "the earlier answer stays in the record"


def test_another_persons_answer_is_not_a_second_answer(console: Console, seeded: Seeded) -> None:
    item = seeded.ids["can"]
    submit(console, OPERATOR, CorrectionIn(kind=Kind.RECLASS, item_id=item, class_name="metal"))
    other = submit(console, OPERATOR2, CorrectionIn(kind=Kind.RECLASS, item_id=item, class_name="plastic"))
    assert other.after_class == "plastic"
    with pytest.raises(AnswerExistsError):
        submit(console, OPERATOR2, CorrectionIn(kind=Kind.NOT_ITEM, item_id=item))


def _answer(console: Console, user: ConsoleUser, key: str, seeded: Seeded) -> CorrectionRecord:
    return submit(console, user, CorrectionIn(kind=Kind.NOT_ITEM, item_id=seeded.ids[key]))


@pytest.mark.parametrize(("age_s", "error"), [
    (0.0, None),
    (119.0, None),
    (121.0, "past the 120 s undo window"),
    (3600.0, "3600 s old"),
])
def test_undo_reaches_only_answers_within_the_window(console: Console, seeded: Seeded, age_s: float,
                                                     error: str | None) -> None:
    made = _answer(console, OPERATOR, "can", seeded)
    if error is None:
        assert undo_last(console, OPERATOR, now=made.created_at + age_s).id == made.id
        return
    with pytest.raises(UndoOutOfReachError, match=error):
        undo_last(console, OPERATOR, now=made.created_at + age_s)
    assert not console.repo.corrections([seeded.ids["can"]], include_undone=True)[0].undone


def test_undo_reaches_at_most_the_last_few_answers(console: Console, seeded: Seeded) -> None:
    console.settings = ConsoleSettings(answers=AnswerRules(undo_depth=3))
    made = [_answer(console, OPERATOR, k, seeded) for k in ("plastic", "can", "unsure", "paper")]
    _answer(console, OPERATOR2, "near_hazard", seeded)  # someone else's answer is never mine to undo
    undone = [undo_last(console, OPERATOR).id for _ in range(3)]
    assert undone == [c.id for c in reversed(made[1:])]
    with pytest.raises(UndoOutOfReachError, match="your last 3 answers are undone already"):
        undo_last(console, OPERATOR)
    standing = {c.username: c.item_id for c in console.repo.corrections()}
    assert standing == {"operator": seeded.ids["plastic"], "operator2": seeded.ids["near_hazard"]}


def test_the_undo_api_answers_409_past_the_window(served: Served, console: Console, seeded: Seeded) -> None:
    console.settings = ConsoleSettings(answers=AnswerRules(undo_window_s=0.001))
    _answer(console, OPERATOR, "can", seeded)
    with client_for(served, "operator") as client:
        r = client.post("/api/console/corrections/undo")
    assert r.status_code == 409 and "undo window" in r.json()["detail"]
    assert not any(c.undone for c in console.repo.corrections(include_undone=True))


@pytest.mark.parametrize(("answers", "error"), [
    ({"undo_window_s": 30, "undo_depth": 2}, None),
    ({"undo_window": 30}, "undo_window"),
    ({"undo_depth": 0}, "undo_depth"),
    ({"undo_window_s": -1}, "undo_window_s"),
])
def test_answer_rules_are_checked_config(answers: dict[str, object], error: str | None) -> None:
    if error is None:
        assert ConsoleSettings.model_validate({"answers": answers}).answers.undo_depth == 2
        return
    with pytest.raises(ValidationError, match=error):
        ConsoleSettings.model_validate({"answers": answers})


def test_a_manager_cannot_correct(console: Console, seeded: Seeded) -> None:
    with pytest.raises(ForbiddenError, match="forbidden"):
        submit(console, MANAGER, CorrectionIn(kind=Kind.NOT_ITEM, item_id=seeded.ids["can"]))
    assert console.repo.count_corrections() == 0


# -- conflicts -------------------------------------------------------------------------------------------


def c(user: str, role: str, answer: str, at: float, undone: bool = False) -> CorrectionRecord:
    kind = "not_item" if answer == NOT_AN_ITEM else "reclass"
    after = None if answer == NOT_AN_ITEM else answer
    return CorrectionRecord(f"{user}{at}", "item", user, role, at, kind, "can", after, None, None, undone)


@pytest.mark.parametrize(("answers", "winner", "conflict"), [
    ([], None, False),
    ([c("ann", "operator", "metal", 1)], "metal", False),
    ([c("ann", "operator", "metal", 1), c("bob", "operator", "can", 2)], None, True),
    ([c("ann", "operator", "metal", 1), c("bob", "operator", "metal", 2)], "metal", False),
    ([c("ann", "operator", "metal", 1), c("bob", "operator", NOT_AN_ITEM, 2)], None, True),
    ([c("ann", "operator", "metal", 1), c("bob", "operator", "can", 2), c("eve", "engineer", "can", 3)], "can", False),
    ([c("eve", "engineer", "can", 1), c("ann", "operator", "metal", 2)], "can", False),  # higher role, though earlier
    ([c("ann", "operator", "metal", 1), c("ann", "operator", "can", 2)], "can", False),  # my own latest counts
    ([c("ann", "operator", "metal", 1, undone=True), c("bob", "operator", "can", 2)], "can", False),
    ([c("eve", "engineer", "can", 1), c("ed", "engineer", "metal", 2)], None, True),
    ([c("eve", "engineer", "can", 1), c("ed", "engineer", "metal", 2), c("al", "admin", "metal", 3)], "metal", False),
])
def test_conflicts_are_settled_by_the_higher_role(answers: list[CorrectionRecord], winner: str | None,
                                                  conflict: bool) -> None:
    res = resolve(answers)
    assert (res.winner.text if res.winner else None, res.conflict) == (winner, conflict)


# -- review queue ----------------------------------------------------------------------------------------


def test_review_queue_order_and_reasons(served: Served, console: Console, seeded: Seeded) -> None:
    queue = review_queue(console)
    keys = {v: k for k, v in seeded.ids.items()}
    order = [keys[e.item.item_id] for e in queue]
    assert order[:2] == ["unsure", "near_hazard"]
    why = {keys[e.item.item_id]: " | ".join(e.why) for e in queue}
    assert "margin 0.06: keyboard 0.48 vs mouse 0.42" in why["unsure"]
    assert "routed to manual (low_confidence" in why["unsure"]
    assert "battery vote share 0.12 near the hazard threshold 0.15" in why["near_hazard"]
    assert why["plastic"] == ""

    # two operators disagree: a conflict, first in the queue, both answers shown
    submit(console, OPERATOR, CorrectionIn(kind=Kind.RECLASS, item_id=seeded.ids["paper"], class_name="plastic"))
    submit(console, OPERATOR2, CorrectionIn(kind=Kind.NOT_ITEM, item_id=seeded.ids["paper"]))
    submit(console, OPERATOR, CorrectionIn(kind=Kind.CONFIRM, item_id=seeded.ids["can"]))
    queue = review_queue(console)
    assert keys[queue[0].item.item_id] == "paper" and queue[0].resolution.conflict
    assert "operator (operator): plastic · operator2 (operator): (not an item)" in queue[0].why[0]
    assert seeded.ids["can"] not in {e.item.item_id for e in queue}, "a reviewed item leaves the queue"

    submit(console, ENGINEER, CorrectionIn(kind=Kind.NOT_ITEM, item_id=seeded.ids["paper"]))
    with client_for(served, "operator") as client:
        listed = client.get("/api/console/review").json()
    assert seeded.ids["paper"] not in {e["item_id"] for e in listed}
    assert listed[0]["item_id"] == seeded.ids["unsure"] and listed[0]["why"][0].startswith("margin")


@pytest.mark.parametrize(("ids", "answered", "waiting", "expected"), [
    (["a", "b", "c"], "a", {"b", "c"}, "b"),
    (["a", "b", "c"], "b", {"a", "c"}, "c"),
    (["a", "b", "c"], "c", {"a", "b"}, "a"),  # then from the top
    (["a", "b", "c"], "a", {"c"}, "c"),  # b was answered meanwhile
    (["a", "b", "c"], "x", {"b"}, "b"),  # the answered item was not shown
    (["a"], "a", set(), None),
])
def test_review_selects_the_next_waiting_item(ids: list[str], answered: str, waiting: set[str],
                                              expected: str | None) -> None:
    assert next_item(ids, answered, waiting) == expected


def test_the_strip_marks_my_answers_and_the_item_just_answered(console: Console, seeded: Seeded) -> None:
    can, paper = seeded.ids["can"], seeded.ids["paper"]
    submit(console, OPERATOR, CorrectionIn(kind=Kind.RECLASS, item_id=can, class_name="metal"))
    submit(console, OPERATOR2, CorrectionIn(kind=Kind.NOT_ITEM, item_id=paper))
    submit(console, OPERATOR, CorrectionIn(kind=Kind.RECLASS, item_id=can, class_name="plastic", change=True))
    items = console.ctx.store.list_items(page_size=12).items
    corr = console.repo.corrections_by_item(i.item_id for i in items)
    assert (my_answer(corr[can], "operator"), my_answer(corr[paper], "operator")) == ("plastic", "")
    page = strip_html(console, items, corr, username="operator", answered=can)
    assert f"data-id='{can}' data-class='can' data-mine='plastic'" in page
    assert f"data-id='{paper}' data-class='paper' data-mine=''" in page
    assert f"data-answered='{can}'" in page and "→ plastic (operator, was metal)" in page


# -- export ----------------------------------------------------------------------------------------------


@pytest.fixture
def corrected(console: Console, seeded: Seeded) -> dict[str, CorrectionRecord]:
    frame = grab_frame(console)
    made = {
        "can": submit(console, OPERATOR, CorrectionIn(kind=Kind.RECLASS, item_id=seeded.ids["can"],
                                                      class_name="metal")),
        "plastic": submit(console, OPERATOR, CorrectionIn(kind=Kind.CONFIRM, item_id=seeded.ids["plastic"])),
        "paper": submit(console, OPERATOR, CorrectionIn(kind=Kind.NOT_ITEM, item_id=seeded.ids["paper"])),
        "missed": submit(console, OPERATOR, CorrectionIn(kind=Kind.MISSED_ITEM, frame_id=frame.frame_id,
                                                         class_name="battery", box=[20, 30, 120, 90])),
    }
    # an open conflict is held back from the dataset
    submit(console, OPERATOR, CorrectionIn(kind=Kind.RECLASS, item_id=seeded.ids["unsure"], class_name="mouse"))
    submit(console, OPERATOR2, CorrectionIn(kind=Kind.RECLASS, item_id=seeded.ids["unsure"], class_name="pcb"))
    return made


def _by_group(samples: list, key: Callable[[object], str]) -> dict[str, list[tuple[str, tuple[float, ...]]]]:  # type: ignore[type-arg]
    return {key(s): [(b.class_name, tuple(round(v) for v in b.xyxy)) for b in s.boxes] for s in samples}


def test_export_yolo_and_coco(console: Console, seeded: Seeded, corrected: dict[str, CorrectionRecord],
                              tmp_path: Path) -> None:
    names = console.ctx.taxonomy.names
    summary = export_dataset(console, tmp_path / "yolo", "yolo")
    assert (summary.images, summary.boxes, summary.negatives, summary.conflicts_held_back) == (4, 3, 1, 1)
    yolo = read_yolo(tmp_path / "yolo")
    got = _by_group(yolo, lambda s: s.image_path.stem)  # type: ignore[attr-defined]
    can = corrected["can"]
    assert got[f"console__{Path(str(can.frame_path)).stem}"] == [("metal", tuple(round(v) for v in can.box or ()))]
    assert got[f"console__{seeded.ids['paper']}"] == []
    assert got[f"console__{Path(str(corrected['missed'].frame_path)).stem}"] == [("battery", (20, 30, 120, 90))]
    assert all(not p.is_symlink() for p in (tmp_path / "yolo" / "images" / "train").iterdir()), "self-contained"

    export_dataset(console, tmp_path / "coco", "coco")
    coco = read_coco(tmp_path / "coco" / "annotations.json", image_root=tmp_path / "coco")
    assert sorted(b.class_name for s in coco for b in s.boxes) == ["battery", "metal", "plastic"]
    assert all(s.image_path.is_file() for s in coco)
    assert len(names) == 16 and {c["name"] for c in __import__("json").loads(
        (tmp_path / "coco" / "annotations.json").read_text())["categories"]} == set(names)


def test_export_download_is_for_engineers(served: Served, console: Console,
                                          corrected: dict[str, CorrectionRecord]) -> None:
    with client_for(served, "engineer") as client:
        r = client.get("/api/console/export?format=yolo")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "corrections-yolo/data.yaml" in names and sum(n.endswith(".txt") for n in names) == 4


# -- hazards ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "hazard"), [
    ("hazard.battery", "battery"), ("hazard.biohazard", "biohazard"),
    ("hazard.battery.on_item", "battery"), ("hazard.biohazard.on_item", "biohazard")])
def test_a_hazard_alarm_names_its_hazard(kind: str, hazard: str) -> None:
    """A cell seen on an item already sent to its bin (``.on_item``) is handled with its hazard's checklist."""
    alarm = HazardAlarm(AlarmRecord("a1", kind, "m", Severity.CRITICAL, "i1", 0.0, None, None), None)
    assert alarm.hazard == hazard and alarm.steps == checklist(hazard)


def test_hazard_needs_every_checklist_step(console: Console, seeded: Seeded) -> None:
    [hazard] = active_hazards(console)
    steps = list(checklist("battery"))
    assert hazard.item is not None and hazard.item.item_id == seeded.ids["battery"] and hazard.steps == tuple(steps)
    alarm_id = seeded.alarms["battery"]
    with pytest.raises(ChecklistError, match="not yet ticked: Battery terminals taped"):
        acknowledge(console, OPERATOR, alarm_id, "Q1", steps[:2] + steps[3:])
    with pytest.raises(ChecklistError, match="name the quarantine container"):
        acknowledge(console, OPERATOR, alarm_id, "  ", steps)
    with pytest.raises(ForbiddenError):
        acknowledge(console, MANAGER, alarm_id, "Q1", steps)
    assert console.repo.quarantine_log() == [] and len(active_hazards(console)) == 1

    q = acknowledge(console, OPERATOR, alarm_id, "Q7", steps)
    assert (q.item_id, q.hazard_type, q.container, q.handled_by) == (seeded.ids["battery"], "battery", "Q7", "operator")
    assert active_hazards(console) == []
    [alarm] = [a for a in console.ctx.store.alarms() if a.alarm_id == alarm_id]
    assert alarm.acknowledged_by == "operator"
    with pytest.raises(NotFoundError, match="not an active hazard alarm"):
        acknowledge(console, OPERATOR, alarm_id, "Q7", steps)
    rows = list(csv.DictReader(io.StringIO(quarantine_csv(console))))
    assert [(r["item_id"], r["hazard_type"], r["class_name"], r["handled_by"], r["container"]) for r in rows] == \
        [(seeded.ids["battery"], "battery", "battery", "operator", "Q7")]
    assert rows[0]["handled_at_utc"].endswith("Z") and "Battery terminals taped" in rows[0]["checklist"]


def test_hazard_ack_api_refuses_an_incomplete_checklist(served: Served, console: Console, seeded: Seeded) -> None:
    url = f"/api/console/hazards/{seeded.alarms['battery']}/ack"
    with client_for(served, "operator") as client:
        r = client.post(url, json={"container": "Q1", "steps": list(checklist("battery"))[:1]})
        assert r.status_code == 422 and "not yet ticked" in r.json()["detail"]
        assert len(active_hazards(console)) == 1
        r = client.post(url, json={"container": "Q1", "steps": list(checklist("battery"))})
        assert r.status_code == 200
        entry = r.json()
        assert (entry["item_id"], entry["hazard_type"], entry["container"], entry["handled_by"]) == \
            (seeded.ids["battery"], "battery", "Q1", "operator")
        assert set(entry["checklist"]) == set(checklist("battery")) and all(entry["checklist"].values())
        assert client.post(url, json={"container": "Q1", "steps": list(checklist("battery"))}).status_code == 404
        assert seeded.ids["battery"] in client.get("/api/console/quarantine.csv").text


def test_the_beep_is_a_real_wav(served: Served, console: Console) -> None:
    with wave.open(io.BytesIO(beep_wav())) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16_000)
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert 0.4 < len(samples) / 16_000 < 0.6 and np.abs(samples).max() > 10_000
    with TestClient(served[0]) as client:
        r = client.get("/console/beep.wav")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.content == beep_wav()
