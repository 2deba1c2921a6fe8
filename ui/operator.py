"""Operator view: the live camera (MJPEG), the strip of latest decisions with one-key corrections, and the
missed-item report (a box drawn on a grabbed frame).

Keys (while the Operator tab is shown): 1–9 pick a class for the selected item, Enter/Y confirm, N not an
item, U undo my last correction (within the undo window), C change my earlier answer on purpose, J/K
next/previous item, P pause the strip. Keys act on the selected item only, never on a focused button; after
an answer the selection moves on to the next item this operator has not answered. The strip and the box tool are
``gr.HTML`` components with our own small scripts (``ui/static/strip.js``, ``boxdraw.js``); they hand
actions to the server with ``trigger('submit', {...})``, where every action is checked again.
"""

# No ``from __future__ import annotations``: Gradio reads the handlers' annotations at run time.
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from station.store import ItemRecord, StoreError
from ui.auth import AuthError, Perm, request_user
from ui.corrections import (
    ITEM_KINDS,
    CorrectionError,
    CorrectionIn,
    GrabbedFrame,
    Kind,
    answer_text,
    earlier_answer,
    grab_frame,
    resolve,
    submit,
    undo_last,
)
from ui.repo import CorrectionRecord
from ui.settings import Console

if TYPE_CHECKING:
    import gradio as gr

STATIC = Path(__file__).resolve().parent / "static"
LIVE_HTML = "<div class='sl-live'><img src='/live.mjpg' alt='live view of the belt' id='live-view'></div>"
# (key, what it does): the key map card on the Operator view
KEYS = (("1–9", "correct the selected item to that class"), ("Enter / Y", "the decided class is right"),
        ("N", "not an item"), ("C", "change my answer: C, then the new one"),
        ("U", "undo my last answer (recent only)"), ("J / K", "next / previous item"),
        ("P", "pause / follow the strip"))


def keymap_html() -> str:
    rows = "".join(f"<kbd>{html.escape(k)}</kbd><span>{html.escape(v)}</span>" for k, v in KEYS)
    return (f"<div class='sl-keymap' id='keymap'><b>Keys</b> act on the selected item; after an answer the next "
            f"item you have not answered is selected.<div class='sl-keys'>{rows}</div></div>")


class StripAction(BaseModel):
    """What the strip's script sends (untrusted: validated here, then checked again by ``submit``)."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["reclass", "confirm", "not_item", "undo", "pause"]
    item_id: str | None = None
    class_name: str | None = None
    change: bool = False


class DrawAction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: Literal["report"]
    frame_id: str | None = None
    box: list[float] | None = None
    class_name: str | None = None


def event_fields(evt: Any) -> dict[str, Any]:
    data = vars(evt).get("_data")
    return data if isinstance(data, dict) else {}


def _badge(corrections: Sequence[CorrectionRecord]) -> str:
    res = resolve(corrections)
    if res.conflict:
        return "<span class='sl-badge sl-badge-conflict'>conflict</span>"
    if res.winner is None:
        return ""
    c = res.winner.correction
    earlier = earlier_answer(corrections, c)
    was = f", was {html.escape(answer_text(earlier))}" if earlier is not None else ""
    return f"<span class='sl-badge'>→ {html.escape(res.winner.text)} ({html.escape(c.username)}{was})</span>"


def my_answer(corrections: Sequence[CorrectionRecord], username: str) -> str:
    """The user's standing answer about an item ("" when none)."""
    mine = [c for c in corrections if c.username == username and c.kind in ITEM_KINDS and not c.undone]
    return answer_text(mine[-1]) if mine else ""


def _card(item: ItemRecord, corrections: Sequence[CorrectionRecord], username: str) -> str:
    cls = "sl-card" + (" sl-hazard" if item.hazard else "") + (" sl-done" if corrections else "")
    mine = html.escape(my_answer(corrections, username), quote=True)
    crop = f"<img src='/api/items/{item.item_id}/crop' alt=''>" if item.crop_path else \
        "<div class='sl-nocrop'>no crop</div>"
    hazard = f"<span class='sl-haz'>⚠ {html.escape(item.hazard)}</span>" if item.hazard else ""
    return (f"<div class='{cls}' data-id='{item.item_id}' data-class='{html.escape(item.class_name or '')}' "
            f"data-mine='{mine}'>{crop}"
            f"<div class='sl-cap'><b>{html.escape(item.class_name or '?')}</b>{hazard} {item.confidence:.2f}<br>"
            f"{item.stream.value} · bin {html.escape(item.bin)}{_badge(corrections)}</div></div>")


def strip_html(console: Console, items: Sequence[ItemRecord], corrections: Mapping[str, Sequence[CorrectionRecord]],
               paused: bool = False, username: str = "", answered: str = "") -> str:
    """The strip of latest decisions (newest first) and the class palette, keys marked; ``answered``: the item
    just answered (the strip's script then selects the next one ``username`` has not answered)."""
    shortcuts = console.shortcut_classes
    cards = "".join(_card(i, corrections.get(i.item_id, ()), username) for i in items) or \
        "<div class='sl-muted'>No decisions yet.</div>"
    keys = {name: str(n) for n, name in enumerate(shortcuts, start=1)}
    buttons = "".join(
        f"<button data-act='reclass' data-class='{html.escape(c)}'>"
        f"{'<kbd>' + keys[c] + '</kbd> ' if c in keys else ''}{html.escape(c)}</button>"
        for c in [*shortcuts, *(n for n in console.ctx.taxonomy.names if n not in keys)])
    order = html.escape(",".join(shortcuts), quote=True)
    pause = "<span class='sl-paused'>strip paused (P)</span>" if paused else ""
    return (f"<div class='sl-strip' data-shortcuts='{order}' data-answered='{html.escape(answered)}'>"
            f"<div class='sl-cards'>{cards}</div><div class='sl-mode'></div>"
            f"<div class='sl-palette'>{buttons}<span class='sl-sep'></span>"
            "<button data-act='confirm' class='sl-ok'><kbd>Enter</kbd> Right</button>"
            "<button data-act='not_item' class='sl-no'><kbd>N</kbd> Not an item</button>"
            "<button data-act='change'><kbd>C</kbd> Change</button>"
            "<button data-act='undo'><kbd>U</kbd> Undo</button>"
            f"{pause}</div></div>")


def drawer_html(console: Console, frame: GrabbedFrame | None, reported: Sequence[CorrectionRecord] = ()) -> str:
    """The grabbed frame to draw a missed item's box on (with the boxes reported on it so far)."""
    if frame is None:
        return ("<div class='sl-draw sl-empty'>Press <b>Grab frame</b> to freeze the belt, then drag a box around "
                "the item the station missed.</div>")
    w, h = frame.width, frame.height
    done = "".join(
        f"<div class='sl-saved' style='left:{b[0] / w:.2%};top:{b[1] / h:.2%};width:{(b[2] - b[0]) / w:.2%};"
        f"height:{(b[3] - b[1]) / h:.2%}'><span>{html.escape(c.after_class or '')}</span></div>"
        for c in reported if (b := c.box) is not None)
    options = "".join(f"<option value='{html.escape(n)}'>{html.escape(n)}</option>" for n in console.ctx.taxonomy.names)
    return (f"<div class='sl-draw' data-frame='{frame.frame_id}' data-w='{w}' data-h='{h}'>"
            f"<div class='sl-draw-stage'><img src='{frame.url}' draggable='false' alt='grabbed frame'>{done}"
            "<div class='sl-rect' hidden></div></div><div class='sl-draw-bar'>"
            f"<select class='sl-draw-class' aria-label='class of the missed item'>{options}</select>"
            "<button data-act='report' class='sl-report'>Report missed item</button>"
            "<span class='sl-draw-box'>drag on the picture to draw the box</span></div></div>")


def latest(console: Console) -> tuple[list[ItemRecord], dict[str, list[CorrectionRecord]]]:
    items = console.ctx.store.list_items(page_size=console.settings.strip_size).items
    return items, console.repo.corrections_by_item(i.item_id for i in items)


def signature(items: Sequence[ItemRecord], corrections: Mapping[str, Sequence[CorrectionRecord]]) -> str:
    """Changes when an item or a standing correction changes (so an unchanged strip is not sent again)."""
    return "|".join(f"{i.item_id}:{','.join(c.id for c in corrections.get(i.item_id, ()))}" for i in items)


def describe(c: CorrectionRecord) -> str:
    was = c.before_class or "?"
    what = {"not_item": f"{was} is not an item", "confirm": f"{was} confirmed"}.get(c.kind, f"{was} → {c.after_class}")
    return f"item {(c.item_id or 'missed')[:8]}: {what}"


def perform(console: Console, request: Any, action: StripAction) -> tuple[str, str]:
    """Carry out one strip action for the request's user: (message, the item answered or ""); a refusal
    comes back as the message."""
    try:
        user = request_user(console.auth, request, Perm.OPERATE)
        if action.action == "undo":
            return f"Undone: {describe(undo_last(console, user))}.", ""
        c = submit(console, user, CorrectionIn(kind=Kind(action.action), item_id=action.item_id,
                                               class_name=action.class_name, change=action.change))
    except (CorrectionError, AuthError, StoreError) as exc:
        return f"**Refused:** {exc}", ""
    stream = console.ctx.taxonomy.stream_of(c.after_class).value if c.after_class else "none"
    earlier = earlier_answer(console.repo.corrections([str(c.item_id)]), c)
    if earlier is not None:
        return (f"Changed: item {str(c.item_id)[:8]}: was {answer_text(earlier)}, now {answer_text(c)} "
                f"(stream {stream}).", str(c.item_id))
    return f"Saved: {describe(c)} (stream {stream}).", str(c.item_id)


def _username(console: Console, request: Any) -> str:
    try:
        return request_user(console.auth, request, Perm.OPERATE).username
    except AuthError:
        return ""


def build_operator_tab(console: Console, user_state: "gr.State", timer: "gr.Timer") -> None:
    """Live view, decision strip with one-key corrections, and the missed-item box tool."""
    import gradio as gr

    paused = gr.State(False)
    last_sig = gr.State("")
    frame_state = gr.State(None)
    # one screen (1366 × 768): live view, missed-item tool and key map on the left, strip and palette right
    with gr.Row(equal_height=False, elem_id="op-row"):
        with gr.Column(scale=2, min_width=320):
            gr.HTML(LIVE_HTML, js_on_load=None, elem_id="live")
            with gr.Accordion("Report a missed item", open=False, elem_id="missed"):
                grab = gr.Button("Grab frame", elem_id="grab-frame", scale=0)
                drawer = gr.HTML(drawer_html(console, None), js_on_load=(STATIC / "boxdraw.js").read_text(),
                                 elem_id="op-drawer")
            gr.HTML(keymap_html(), elem_id="op-keys")
        with gr.Column(scale=3, min_width=480):
            status = gr.Markdown("Select an item (click or J/K), then press a class key.", elem_id="op-status",
                                 show_label=False)
            strip = gr.HTML(strip_html(console, [], {}), js_on_load=(STATIC / "strip.js").read_text(),
                            elem_id="op-strip")

    def refresh(is_paused: bool, sig: str, request: gr.Request) -> tuple[Any, Any]:
        try:
            user = request_user(console.auth, request, Perm.OPERATE)
        except AuthError:
            return gr.skip(), gr.skip()
        items, corr = latest(console)
        new_sig = signature(items, corr) + f"|{is_paused}"
        if is_paused or new_sig == sig:
            return gr.skip(), gr.skip()
        return strip_html(console, items, corr, is_paused, user.username), new_sig

    def on_strip(is_paused: bool, evt: gr.EventData, request: gr.Request) -> tuple[Any, str, bool, str]:
        try:
            action = StripAction.model_validate(event_fields(evt))
        except ValidationError as exc:
            return gr.skip(), f"**Refused:** not a strip action ({exc.error_count()} problems)", is_paused, ""
        answered = ""
        if action.action == "pause":
            is_paused = not is_paused
            message = "Strip paused: press P to follow the belt again." if is_paused else "Following the belt."
        else:
            message, answered = perform(console, request, action)
        items, corr = latest(console)
        page = strip_html(console, items, corr, is_paused, _username(console, request), answered)
        return page, message, is_paused, signature(items, corr) + f"|{is_paused}"

    def on_grab(request: gr.Request) -> tuple[Any, Any, str]:
        try:
            request_user(console.auth, request, Perm.OPERATE)
            frame = grab_frame(console)
        except (CorrectionError, AuthError) as exc:
            return gr.skip(), gr.skip(), f"**Refused:** {exc}"
        return drawer_html(console, frame), frame, "Frame grabbed: drag a box around the missed item."

    def on_draw(frame: GrabbedFrame | None, evt: gr.EventData, request: gr.Request) -> tuple[Any, str]:
        try:
            act = DrawAction.model_validate(event_fields(evt))
            user = request_user(console.auth, request, Perm.OPERATE)
            c = submit(console, user, CorrectionIn(kind=Kind.MISSED_ITEM, frame_id=act.frame_id, box=act.box,
                                                   class_name=act.class_name))
        except ValidationError as exc:
            return gr.skip(), f"**Refused:** not a box report ({exc.error_count()} problems)"
        except (CorrectionError, AuthError) as exc:
            return gr.skip(), f"**Refused:** {exc}"
        reported = [x for x in console.repo.corrections(kinds=["missed_item"]) if x.frame_path == c.frame_path]
        box = ", ".join(f"{v:.0f}" for v in c.box or ())
        return drawer_html(console, frame, reported), f"Missed item reported: {c.after_class} at ({box})."

    gr.on([timer.tick, user_state.change], refresh, [paused, last_sig], [strip, last_sig])
    strip.submit(on_strip, paused, [strip, status, paused, last_sig])
    grab.click(on_grab, None, [drawer, frame_state, status])
    drawer.submit(on_draw, frame_state, [drawer, status])
