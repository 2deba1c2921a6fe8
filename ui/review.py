"""Review queue: recent items ordered by how much a human look is worth, each with the reasons ("why").

Reasons: a small margin between the two top classes of the track's votes, votes that disagree along the
track, a battery vote share near the hazard-doubt threshold, a manual-routed item, and people who disagree
(a conflict). An item with a standing answer (``ui.corrections.resolve``) has been reviewed and leaves.
"""

# No ``from __future__ import annotations`` here: Gradio reads the handlers' annotations (gr.Request,
# gr.SelectData) at run time, and ``gr`` is imported inside the builder.
import html
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from station.store import ItemFilter, ItemRecord
from station.taxonomy import Stream, Taxonomy
from ui.auth import AuthError, ConsoleUser, Perm, request_user
from ui.corrections import CorrectionError, CorrectionIn, Kind, Resolution, answer_text, resolve, submit
from ui.repo import CorrectionRecord
from ui.settings import Console, ReviewWeights

if TYPE_CHECKING:
    import gradio as gr

HEADERS = ["priority", "why", "item", "class", "stream", "conf", "bin", "decided"]
SHOWN = 50


@dataclass(frozen=True)
class ReviewEntry:
    item: ItemRecord
    score: float
    why: tuple[str, ...]
    resolution: Resolution

    def row(self) -> list[Any]:
        i = self.item
        return [round(self.score, 2), "; ".join(self.why) or "routine check", i.item_id[:8], i.class_name or "?",
                i.stream.value, round(i.confidence, 2), i.bin, time.strftime("%H:%M:%S", time.localtime(i.decided_at))]


def shares(votes: Mapping[str, float]) -> list[tuple[str, float]]:
    total = sum(v for v in votes.values() if v > 0)
    if total <= 0:
        return []
    return sorted(((k, v / total) for k, v in votes.items() if v > 0), key=lambda kv: -kv[1])


def _vote_reasons(item: ItemRecord, w: ReviewWeights) -> tuple[float, list[str]]:
    ranked = shares(item.votes)
    if not ranked:
        return w.margin + w.disagreement, ["no class votes"]
    top, s1 = ranked[0]
    second, s2 = ranked[1] if len(ranked) > 1 else ("-", 0.0)
    margin, dissent = s1 - s2, 1.0 - s1
    why = []
    if margin < w.margin_below:
        why.append(f"margin {margin:.2f}: {top} {s1:.2f} vs {second} {s2:.2f}")
    if dissent > w.disagreement_above:
        why.append(f"votes disagree along the track: {dissent:.0%} not {top} ({len(ranked)} classes)")
    return w.margin * (1.0 - margin) + w.disagreement * dissent, why


def _hazard_reason(item: ItemRecord, taxonomy: Taxonomy, doubt: float, w: ReviewWeights) -> tuple[float, list[str]]:
    battery = taxonomy.battery_hazards
    if item.class_name in battery:
        return 0.0, []
    share = sum(s for name, s in shares(item.votes) if name in battery)
    if share > 0 and abs(share - doubt) <= w.hazard_band:
        return w.hazard_near, [f"battery vote share {share:.2f} near the hazard threshold {doubt:.2f}"]
    return 0.0, []


def _people_reasons(res: Resolution, w: ReviewWeights) -> tuple[float, list[str]]:
    if not res.conflict:
        return 0.0, []
    said = " · ".join(f"{a.correction.username} ({a.correction.role}): {a.text}" for a in res.answers)
    return w.conflict, [f"CONFLICT — {said}; a higher role settles it"]


def score_item(item: ItemRecord, res: Resolution, taxonomy: Taxonomy, hazard_doubt: float,
               w: ReviewWeights) -> tuple[float, tuple[str, ...]]:
    """Priority and the reasons for it (most important first)."""
    score, why = _people_reasons(res, w)
    for part in (_hazard_reason(item, taxonomy, hazard_doubt, w), _vote_reasons(item, w)):
        score += part[0]
        why = [*why, *part[1]]
    if item.stream is Stream.MANUAL:
        score += w.manual
        detail = f": {item.detail}" if item.detail else ""
        why.append(f"routed to manual ({item.reason.value}{detail})")
    return score, tuple(why)


def rank_items(items: Sequence[ItemRecord], corrections: Mapping[str, Sequence[CorrectionRecord]],
               taxonomy: Taxonomy, hazard_doubt: float, w: ReviewWeights) -> list[ReviewEntry]:
    """Items without a standing answer, highest priority first (newest first among equals)."""
    out = []
    for item in items:
        res = resolve(corrections.get(item.item_id, ()))
        if res.winner is not None:
            continue
        score, why = score_item(item, res, taxonomy, hazard_doubt, w)
        out.append(ReviewEntry(item, score, why, res))
    return sorted(out, key=lambda e: (-e.score, -e.item.decided_at, e.item.item_id))


def review_queue(console: Console, limit: int = SHOWN) -> list[ReviewEntry]:
    s = console.settings
    page = console.ctx.store.list_items(ItemFilter(since=time.time() - s.review_window_s), page_size=s.review_limit)
    by_item = console.repo.corrections_by_item(i.item_id for i in page.items)
    ranked = rank_items(page.items, by_item, console.ctx.taxonomy, console.ctx.config.decision.hazard_doubt,
                        s.review_weights)
    return ranked[:limit]


class ReviewOut(BaseModel):
    item_id: str
    score: float
    why: list[str]
    conflict: bool
    class_name: str | None
    stream: str
    confidence: float
    bin: str
    decided_at: float


ReviewLimit = Annotated[int, Query(ge=1, le=500, description="Entries (1–500).")]


def router(console: Console) -> APIRouter:
    r = APIRouter(tags=["console"])
    reviewer = Depends(console.auth.dependency(Perm.REVIEW))

    @r.get("/api/console/review", response_model=list[ReviewOut])
    def get_review(user: ConsoleUser = reviewer, limit: ReviewLimit = SHOWN) -> list[ReviewOut]:
        return [ReviewOut(item_id=e.item.item_id, score=round(e.score, 4), why=list(e.why),
                          conflict=e.resolution.conflict, class_name=e.item.class_name, stream=e.item.stream.value,
                          confidence=e.item.confidence, bin=e.item.bin, decided_at=e.item.decided_at)
                for e in review_queue(console, limit)]

    return r


# -- the tab ---------------------------------------------------------------------------------------------


def _detail_html(entry: ReviewEntry | None) -> str:
    if entry is None:
        return "<p class='sl-muted'>Select a row to look at the item.</p>"
    i = entry.item
    votes = ", ".join(f"{n} {s:.2f}" for n, s in shares(i.votes)) or "none"
    second = ", ".join(f"{n} {s:.2f}" for n, s in shares(i.crop_scores)[:3])
    second = f"<br>crop classifier: {html.escape(second)}" if second else ""
    answers = "".join(f"<li><b>{html.escape(a.correction.username)}</b> ({html.escape(str(a.correction.role))}): "
                      f"{html.escape(a.text)}</li>" for a in entry.resolution.answers)
    conflict = f"<div class='sl-conflict'>Conflict — answers so far:<ul>{answers}</ul></div>" if answers else ""
    why = "".join(f"<li>{html.escape(w)}</li>" for w in entry.why)
    return (f"<div class='sl-review-detail' data-item='{i.item_id}'><img src='/api/items/{i.item_id}/crop' "
            f"alt='crop of {i.item_id}'><div><b>{html.escape(i.class_name or '?')}</b> → {i.stream.value} · bin "
            f"{html.escape(i.bin)} · conf {i.confidence:.2f}<br>votes: {html.escape(votes)}{second}<ul>{why}</ul>"
            f"{conflict}</div></div>")


def build_review_tab(console: Console, user_state: "gr.State", tab: "gr.Tab | None" = None) -> None:
    """The review queue: a table with a why column, and the selected item with its answers; it is ranked
    again when the tab is opened, on Refresh and after each answer."""
    import gradio as gr

    gr.Markdown("Items ordered by how much a look is worth: conflicts between people first, then a battery "
                "vote near the hazard threshold, a small margin between the two top classes, votes that "
                "disagree along the track, and manual-routed items. An answered item leaves the queue.")
    entries_state = gr.State([])
    selected = gr.State(None)
    with gr.Row():
        refresh = gr.Button("Refresh queue", elem_id="review-refresh", scale=0)
        count = gr.Markdown(elem_id="review-count")
    table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="review-table", wrap=True,
                         column_widths=["7%", "43%", "9%", "10%", "10%", "6%", "8%", "7%"])
    detail = gr.HTML(_detail_html(None), elem_id="review-detail")
    with gr.Row():
        # no default class: "Correct to this class" without a choice is refused, never a silent first entry
        klass = gr.Dropdown(console.ctx.taxonomy.names, value=None, label="Class (choose one)",
                            elem_id="review-class", scale=2)
        fix = gr.Button("Correct to this class", elem_id="review-correct", variant="primary")
        ok = gr.Button("Decided class is right", elem_id="review-confirm")
        not_item = gr.Button("Not an item", elem_id="review-not-item", variant="stop")
        change = gr.Checkbox(False, label="Change my earlier answer", elem_id="review-change", scale=1)
    # the answer's feedback stays until the next answer (the queue's refresh never touches it)
    status = gr.Markdown(elem_id="review-status")

    def load(request: gr.Request) -> tuple[Any, list[str], str]:
        try:
            request_user(console.auth, request, Perm.REVIEW)
        except AuthError:
            return gr.skip(), [], ""
        entries = review_queue(console)
        return [e.row() for e in entries], [e.item.item_id for e in entries], f"{len(entries)} items waiting"

    def pick(ids: list[str], evt: gr.SelectData, request: gr.Request) -> tuple[str | None, str]:
        request_user(console.auth, request, Perm.REVIEW)
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        item_id = ids[row] if isinstance(row, int) and 0 <= row < len(ids) else None
        return item_id, _detail_html(_entry(console, item_id))

    def answerer(kind: Kind) -> Any:
        def answer(item_id: str | None, class_name: str | None, changing: bool, ids: list[str],
                   request: gr.Request) -> tuple[str, Any, Any, Any, Any]:
            try:
                user = request_user(console.auth, request, Perm.OPERATE)
                if kind is Kind.RECLASS and not class_name:
                    raise CorrectionError("choose a class in the Class list first (it starts empty on purpose)")
                c = submit(console, user, CorrectionIn(kind=kind, item_id=item_id, class_name=class_name,
                                                       change=changing))
            except (CorrectionError, AuthError) as exc:
                return f"**Refused:** {exc}", gr.skip(), gr.skip(), gr.skip(), gr.skip()
            nxt = next_item(ids, str(c.item_id), {e.item.item_id for e in review_queue(console, 500)})
            where = f" Next: item {nxt[:8]}." if nxt else " The queue is empty."
            message = f"Saved: item {str(c.item_id)[:8]} → {answer_text(c)} ({c.kind}).{where}"
            return message, nxt, _detail_html(_entry(console, nxt)), None, False
        return answer

    outputs = [table, entries_state, count]
    triggers = [refresh.click, user_state.change, *([tab.select] if tab is not None else [])]
    gr.on(triggers, load, None, outputs)
    table.select(pick, entries_state, [selected, detail])
    for button, kind in ((fix, Kind.RECLASS), (ok, Kind.CONFIRM), (not_item, Kind.NOT_ITEM)):
        button.click(answerer(kind), [selected, klass, change, entries_state],
                     [status, selected, detail, klass, change]).then(load, None, outputs)


def _entry(console: Console, item_id: str | None) -> ReviewEntry | None:
    return next((e for e in review_queue(console, 500) if e.item.item_id == item_id), None)


def next_item(ids: Sequence[str], answered: str, waiting: set[str]) -> str | None:
    """After answering ``answered``: the next item of the shown queue still waiting (then from the top)."""
    at = ids.index(answered) if answered in ids else -1
    later = [i for i in ids[at + 1:] if i in waiting and i != answered]
    earlier = [i for i in ids[:max(at, 0)] if i in waiting and i != answered]
    rest = later or earlier
    return rest[0] if rest else None
