"""Hazard handling: a hazard alarm (``hazard.battery`` …) stays on screen with a beep until someone works
through the safe-removal checklist and acknowledges it; each acknowledgement writes the quarantine log
(item, type, when, who, container), exportable as CSV for the hazardous-waste record.
"""

# No ``from __future__ import annotations``: Gradio reads the handlers' annotations at run time.
import csv
import functools
import html
import io
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from station.store import AlarmRecord, ItemRecord, NotFoundError, StoreError
from ui.auth import AuthError, ConsoleUser, Perm, request_user
from ui.repo import QuarantineRecord
from ui.settings import Console

if TYPE_CHECKING:
    import gradio as gr

CHECKLISTS: dict[str, tuple[str, ...]] = {
    "battery": (
        "Non-conductive tool in hand (plastic tongs or insulated pliers)",
        "No bare hands: insulated gloves on",
        "Battery terminals taped",
        "Placed in the sand-filled quarantine container",
        "Checked for smoke or heat (E-stop pressed if it smokes)",
    ),
    "biohazard": (
        "Puncture-resistant gloves on",
        "Picked with tongs, never by hand",
        "Placed in the sharps / biohazard container",
        "Belt spot wiped with disinfectant",
    ),
}
LOG_HEADERS = ["when (UTC)", "item", "type", "class", "container", "handled by"]


class ChecklistError(ValueError):
    """The acknowledgement was refused (a step not ticked, no container); nothing was stored."""


@dataclass(frozen=True)
class HazardAlarm:
    alarm: AlarmRecord
    item: ItemRecord | None

    @property
    def hazard(self) -> str:
        """``hazard.battery`` → battery; ``hazard.battery.on_item`` (a cell seen on an item already sent to
        its bin) → battery too."""
        return self.alarm.kind.removeprefix("hazard.").split(".")[0]

    @property
    def steps(self) -> tuple[str, ...]:
        return checklist(self.hazard)


def checklist(hazard: str) -> tuple[str, ...]:
    return CHECKLISTS.get(hazard, CHECKLISTS["battery"])


def active_hazards(console: Console) -> list[HazardAlarm]:
    """Unacknowledged hazard alarms, oldest first, with their items."""
    alarms = [a for a in console.ctx.store.alarms(active_only=True, limit=100) if a.kind.startswith("hazard.")]
    return [HazardAlarm(a, console.ctx.store.get_item(a.item_id) if a.item_id else None) for a in reversed(alarms)]


def acknowledge(console: Console, user: ConsoleUser, alarm_id: str, container: str,
                ticked: Sequence[str]) -> QuarantineRecord:
    """Quarantine the alarm's item and acknowledge the alarm, once every checklist step is ticked."""
    console.auth.require(user, Perm.OPERATE)
    hazard = next((h for h in active_hazards(console) if h.alarm.alarm_id == alarm_id), None)
    if hazard is None:
        raise NotFoundError(f"alarm {alarm_id!r} is not an active hazard alarm (already acknowledged?); "
                            "refresh the hazards view")
    missing = [s for s in hazard.steps if s not in set(ticked)]
    if missing:
        raise ChecklistError(f"tick every safe-removal step first; not yet ticked: {'; '.join(missing)}")
    container = container.strip()
    if not container or len(container) > 64:
        raise ChecklistError("name the quarantine container the item went into (1–64 characters)")
    record = console.repo.quarantine(alarm_id, container, user.username, {s: True for s in hazard.steps},
                                     hazard.hazard)
    console.repo.access.audit("hazard.ack", user.username, alarm_id, f"{hazard.hazard} into {container}")
    return record


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def quarantine_csv(console: Console, limit: int = 100_000) -> str:
    """The quarantine log as CSV (newest first) for the hazardous-waste record."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["entry_id", "item_id", "hazard_type", "class_name", "bin", "handled_at_utc", "handled_by",
                     "container", "checklist"])
    for q in console.repo.quarantine_log(limit):
        item = console.ctx.store.get_item(q.item_id)
        writer.writerow([q.id, q.item_id, q.hazard_type, item.class_name if item else "", item.bin if item else "",
                         _utc(q.handled_at), q.handled_by, q.container,
                         " | ".join(step for step, done in q.checklist.items() if done)])
    return out.getvalue()


@functools.cache
def beep_wav(rate: int = 16_000) -> bytes:
    """Two short 880 Hz beeps as a 16-bit mono WAV, made with numpy (no sound file shipped)."""
    t = np.arange(int(rate * 0.18)) / rate
    tone = np.sin(2 * np.pi * 880 * t) * np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades
    gap = np.zeros(int(rate * 0.12))
    samples = (np.concatenate([tone, gap, tone]) * 0.6 * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


# -- HTML pieces -----------------------------------------------------------------------------------------


def _item_line(h: HazardAlarm) -> str:
    i = h.item
    if i is None:
        return html.escape(h.alarm.message)
    return f"{html.escape(i.class_name or '?')} → bin <b>{html.escape(i.bin)}</b>"


def banner_html(hazards: Sequence[HazardAlarm]) -> str:
    """The red banner on every tab while a hazard alarm is unacknowledged (empty when none)."""
    if not hazards:
        return "<div class='sl-banner-none'></div>"
    h = hazards[0]
    crop = f"<img src='/api/items/{h.item.item_id}/crop' alt='hazard crop'>" if h.item and h.item.crop_path else ""
    more = f" · {len(hazards) - 1} more waiting" if len(hazards) > 1 else ""
    ids = ",".join(x.alarm.alarm_id for x in hazards)
    raised = time.strftime("%H:%M:%S", time.localtime(h.alarm.raised_at))
    return (f"<div class='sl-banner' role='alert' data-alarms='{ids}'>{crop}<div><span class='sl-banner-title'>"
            f"{html.escape(h.hazard.capitalize())} hazard</span> — {_item_line(h)} · raised {raised}"
            f"{more}<br>Take it out safely and acknowledge on the <a href='#' class='sl-goto-hazards'>Hazards</a> "
            "tab. The alarm stays until then.</div></div>")


def card_html(h: HazardAlarm | None) -> str:
    if h is None:
        return "<div class='sl-hazard-card sl-ok'>No hazard alarm waiting.</div>"
    crop = f"<img src='/api/items/{h.item.item_id}/crop' alt='hazard crop'>" if h.item and h.item.crop_path else ""
    item_id = h.item.item_id if h.item else "-"
    return (f"<div class='sl-hazard-card' data-alarm='{h.alarm.alarm_id}'>{crop}<div><h3>{html.escape(h.hazard)}"
            f"</h3><p>{_item_line(h)}</p><p>item {item_id}<br>raised "
            f"{time.strftime('%H:%M:%S', time.localtime(h.alarm.raised_at))}<br>{html.escape(h.alarm.message)}"
            "</p></div></div>")


def log_rows(console: Console) -> list[list[str]]:
    return [[_utc(q.handled_at), q.item_id[:8], q.hazard_type, _class_of(console, q.item_id), q.container,
             q.handled_by] for q in console.repo.quarantine_log(console.settings.quarantine_rows)]


def _class_of(console: Console, item_id: str) -> str:
    item = console.ctx.store.get_item(item_id)
    return (item.class_name or "?") if item else "?"


# -- API -------------------------------------------------------------------------------------------------


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    container: str = Field(description="Quarantine container the item went into.")
    steps: list[str] = Field(description="The checklist steps ticked (all are needed).")


def router(console: Console) -> APIRouter:
    r = APIRouter(tags=["console"])
    operate = Depends(console.auth.dependency(Perm.OPERATE))
    reader = Depends(console.auth.dependency(Perm.QUARANTINE_LOG))

    @r.post("/api/console/hazards/{alarm_id}/ack", response_model=QuarantineRecord)
    def ack(alarm_id: str, body: AckIn, user: ConsoleUser = operate) -> QuarantineRecord:
        try:
            q = acknowledge(console, user, alarm_id, body.container, body.steps)
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        except (ChecklistError, StoreError) as exc:
            raise HTTPException(422 if isinstance(exc, ChecklistError) else 409, str(exc)) from None
        return q

    @r.get("/api/console/quarantine.csv", response_class=Response)
    def csv_log(user: ConsoleUser = reader) -> Response:
        name = f"quarantine-log-{time.strftime('%Y%m%d')}.csv"
        return Response(quarantine_csv(console), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @r.get("/console/beep.wav", response_class=Response, include_in_schema=False)
    def beep() -> Response:
        return Response(beep_wav(), media_type="audio/wav", headers={"Cache-Control": "max-age=86400"})

    return r


# -- the tab ---------------------------------------------------------------------------------------------


def build_hazard_tab(console: Console, user_state: "gr.State", timer: "gr.Timer") -> None:
    """The oldest waiting hazard with its checklist and acknowledgement; the quarantine log below."""
    import gradio as gr

    shown = gr.State(None)
    with gr.Group(visible=False) as handling:
        card = gr.HTML(card_html(None), elem_id="hazard-card")
        steps = gr.CheckboxGroup(list(checklist("battery")), label="Safe removal — tick each step as you do it",
                                 elem_id="hazard-checklist")
        with gr.Row():
            container = gr.Textbox(console.settings.container, label="Quarantine container", elem_id="hazard-container")
            ack = gr.Button("Acknowledge: item quarantined", variant="stop", interactive=False, elem_id="hazard-ack")
        status = gr.Markdown(elem_id="hazard-status")
    gr.Markdown("### Quarantine log\n<a href='/api/console/quarantine.csv' download id='quarantine-csv'>"
                "Download the log as CSV</a> (for the hazardous-waste record)")
    log_table = gr.Dataframe(headers=LOG_HEADERS, interactive=False, elem_id="quarantine-log")

    def show(user: ConsoleUser | None, request: gr.Request) -> tuple[Any, Any]:
        try:
            request_user(console.auth, request, Perm.QUARANTINE_LOG)
        except AuthError:
            return gr.Group(visible=False), gr.skip()
        return gr.Group(visible=bool(user and user.can(Perm.OPERATE))), log_rows(console)

    def poll(current: str | None, request: gr.Request) -> tuple[Any, Any, Any, Any]:
        try:
            request_user(console.auth, request, Perm.OPERATE)
        except AuthError:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        hazards = active_hazards(console)
        first = hazards[0] if hazards else None
        new_id = first.alarm.alarm_id if first else None
        if new_id == current:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        choices = list(first.steps if first else checklist("battery"))
        return new_id, card_html(first), gr.CheckboxGroup(choices=choices, value=[]), gr.Button(interactive=False)

    def ticked(current: str | None, chosen: list[str]) -> Any:
        hazard = next((h for h in active_hazards(console) if h.alarm.alarm_id == current), None)
        return gr.Button(interactive=hazard is not None and set(hazard.steps) <= set(chosen))

    def acknowledge_click(current: str | None, chosen: list[str], box: str, request: gr.Request) -> tuple[Any, ...]:
        try:
            user = request_user(console.auth, request, Perm.OPERATE)
            q = acknowledge(console, user, current or "", box, chosen)
        except (ChecklistError, StoreError, AuthError) as exc:
            return f"**Refused:** {exc}", gr.skip(), gr.skip()
        # "acked" differs from any alarm id and from None, so the next poll shows what waits next
        return (f"Logged: item {q.item_id[:8]} ({q.hazard_type}) into container {q.container} by {q.handled_by}.",
                log_rows(console), "acked")

    user_state.change(show, user_state, [handling, log_table])
    gr.on([timer.tick, user_state.change], poll, shown, [shown, card, steps, ack])
    steps.change(ticked, [shown, steps], ack)
    ack.click(acknowledge_click, [shown, steps, container], [status, log_table, shown]) \
        .then(poll, shown, [shown, card, steps, ack])
