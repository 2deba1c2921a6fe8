"""The station's web app: health, items and their crops, throughput, alarms, /metrics and the live view.

``create_app`` builds it from the running parts; the CLI serves it with uvicorn and the console (``ui``)
mounts itself at /ui. OpenAPI lives at /docs and /openapi.json. Stop MJPEG clients with ``live.close()``
before shutting the server down (uvicorn waits for open responses).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse

from station import __version__
from station.access import AccessGate, Principal, principal_of
from station.apidocs import docs_router
from station.config import StationConfig
from station.events import Reason
from station.health import StatusSnapshot
from station.live import BOUNDARY, LiveView
from station.metrics import CONTENT_TYPE, StationMetrics
from station.schemas import (
    BUCKET_SECONDS,
    AckRequest,
    AlarmOut,
    Bucket,
    HealthOut,
    ItemOut,
    ItemPage,
    LivenessOut,
    ThroughputOut,
    ThroughputReport,
)
from station.store import ItemFilter, NotFoundError, Store
from station.store.access import AccessRepo
from station.taxonomy import Stream, load_taxonomy

DEFAULT_WINDOW_S = {"hour": 86_400, "shift": 3 * 86_400, "day": 7 * 86_400}
NO_CACHE = {"Cache-Control": "no-store"}
MAX_PAGE = 1_000_000
MAX_EPOCH = 1e10  # year 2286: a time beyond (or inf, nan, 1e300) is a 422 naming the field


def _epoch(description: str) -> Any:
    return Query(ge=0, le=MAX_EPOCH, allow_inf_nan=False, description=description)


class StatusProvider(Protocol):
    def snapshot(self) -> StatusSnapshot: ...


def create_app(store: Store, status: StatusProvider, live: LiveView, metrics: StationMetrics,
               config: StationConfig) -> FastAPI:
    """The FastAPI app over a running station's parts."""
    app = FastAPI(title="sortloop station", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json",
                  description="Items, evidence, throughput, alarms, metrics and the live view of one station. "
                  "Every route but /health, /login and the impact page needs a login or a service token "
                  "(Authorization: Bearer …); see docs/security.md.")
    app.state.store, app.state.live, app.state.metrics, app.state.config = store, live, metrics, config
    access = AccessRepo(store)
    app.state.access = access
    taxonomy = load_taxonomy(config.taxonomy_file())
    mass_kg = {c.name: c.mass_kg for c in taxonomy.classes}
    app.include_router(_station_router(status, live, metrics, config.api.live_fps))
    app.include_router(_items_router(store, mass_kg), prefix="/api")
    app.include_router(_alarms_router(store, access), prefix="/api")
    app.include_router(docs_router(app))
    sec = config.security
    app.add_middleware(AccessGate, repo=access, idle_s=sec.session_idle_s, public_impact=sec.public_impact)
    return app


def _health(snapshot: StatusSnapshot) -> HealthOut:
    s = snapshot
    ok = s.running and s.source_ok and s.status != "failing"
    return HealthOut(ok=ok, status=s.status, reasons=list(s.reasons), spool=s.spool,
                     missed_actuations=s.missed_actuations, corrupt_frames=s.corrupt_frames,
                     running=s.running, source_ok=s.source_ok,
                     model_version=s.model_version, classifier_version=s.classifier_version, fps=s.fps,
                     frames=s.frames, dropped=s.dropped,
                     decisions=s.decisions, workers=dict(s.workers), last_error=s.last_error,
                     started_at=s.started_at, uptime_s=None if s.started_at is None else time.time() - s.started_at)


def _station_router(status: StatusProvider, live: LiveView, metrics: StationMetrics, fps: float) -> APIRouter:
    router = APIRouter()

    @router.get("/health", response_model=HealthOut | LivenessOut, tags=["station"],
                responses={503: {"model": HealthOut, "description": "Failing: not running, source lost, "
                                 "fail-safe, a dead or stuck worker, the store refusing writes."}})
    def health(request: Request, response: Response) -> HealthOut | LivenessOut:
        """The station's health: 200 when ok or degraded, 503 when failing (same body, with the reasons).
        Without a login or token only ``ok`` (liveness), no figures."""
        out = _health(status.snapshot())
        response.status_code = 200 if out.ok else 503
        response.headers.update(NO_CACHE)
        return out if principal_of(request) is not None else LivenessOut(ok=out.ok)

    @router.get("/metrics", tags=["station"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @router.get("/live.mjpg", tags=["live"], response_class=StreamingResponse)
    def live_mjpeg() -> StreamingResponse:
        """Annotated live view as MJPEG (multipart/x-mixed-replace, boundary 'frame')."""
        return StreamingResponse(live.mjpeg(fps), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                 headers=NO_CACHE)

    @router.get("/live.jpg", tags=["live"], response_class=Response)
    def live_jpeg() -> Response:
        """The current annotated frame (a placeholder before the first frame)."""
        return Response(live.jpeg() or live.placeholder(), media_type="image/jpeg", headers=NO_CACHE)

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(INDEX_HTML)

    return router


def _items_router(store: Store, mass_kg: dict[str, float]) -> APIRouter:
    router = APIRouter(tags=["items"])

    @router.get("/items", response_model=ItemPage)
    def list_items(
        stream: Stream | None = None,
        class_name: Annotated[str | None, Query(alias="class", description="Class name.")] = None,
        hazard: Annotated[str | None, Query(description="Hazard kind, e.g. battery.")] = None,
        reason: Reason | None = None,
        since: Annotated[float | None, _epoch("Decided at or after (epoch s).")] = None,
        until: Annotated[float | None, _epoch("Decided before (epoch s).")] = None,
        page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
        page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> ItemPage:
        """Recorded items, newest first."""
        flt = ItemFilter(stream=stream, class_name=class_name, hazard=hazard, reason=reason, since=since,
                         until=until)
        return ItemPage.from_page(store.list_items(flt, page=page, page_size=page_size))

    @router.get("/items/{item_id}", response_model=ItemOut, responses={404: {"description": "No such item."}})
    def get_item(item_id: str) -> ItemOut:
        item = store.get_item(item_id)
        if item is None:
            raise HTTPException(404, f"item {item_id!r} not found; list recorded items at /api/items")
        return ItemOut.from_record(item)

    @router.get("/items/{item_id}/crop", response_class=FileResponse,
                responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No item or no crop."}})
    def get_crop(item_id: str) -> FileResponse:
        """The item's evidence crop (JPEG)."""
        path = store.crop_file(item_id)
        if path is None:
            what = "has no evidence crop" if store.get_item(item_id) is not None else "not found"
            raise HTTPException(404, f"item {item_id!r} {what}; list recorded items at /api/items")
        return FileResponse(path, media_type="image/jpeg")

    @router.get("/throughput", response_model=ThroughputReport)
    def throughput(
        bucket: Bucket = "hour",
        since: Annotated[float | None, _epoch("Start (epoch s); default: a window before until.")] = None,
        until: Annotated[float | None, _epoch("End (epoch s); default: now.")] = None,
        origin: Annotated[float, Query(ge=-MAX_EPOCH, le=MAX_EPOCH, allow_inf_nan=False,
                                       description="Buckets are aligned to this time (epoch s; "
                                       "0 = UTC midnight), e.g. a shift start.")] = 0.0,
    ) -> ThroughputReport:
        """Items and kg per stream and hour, shift (8 h) or day."""
        end = time.time() if until is None else until
        start = end - DEFAULT_WINDOW_S[bucket] if since is None else since
        if start >= end:
            raise HTTPException(422, f"since ({start}) must be before until ({end})")
        rows = store.throughput(start, end, BUCKET_SECONDS[bucket], mass_kg=mass_kg, origin=origin)
        return ThroughputReport(since=start, until=end, bucket=bucket, bucket_s=BUCKET_SECONDS[bucket],
                                rows=[ThroughputOut.from_row(r) for r in rows])

    return router


def _acker(principal: Principal | None) -> str:
    if principal is None:  # only without the gate (it admits no anonymous ack)
        raise HTTPException(401, "log in or send a service token with scope ack")
    return principal.name if principal.kind == "user" else f"token:{principal.name}"


def _alarms_router(store: Store, access: AccessRepo) -> APIRouter:
    router = APIRouter(tags=["alarms"])

    @router.get("/alarms", response_model=list[AlarmOut])
    def alarms(active: bool = False, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[AlarmOut]:
        """Alarms, newest first; ``active=true`` for the unacknowledged ones only."""
        return [AlarmOut.from_record(a) for a in store.alarms(active_only=active, limit=limit)]

    @router.post("/alarms/{alarm_id}/ack", response_model=AlarmOut,
                 responses={404: {"description": "No such alarm."},
                            409: {"description": "A hazard alarm: acknowledged only through the console."}})
    def ack(alarm_id: str, request: Request, body: AckRequest | None = None) -> AlarmOut:
        """Acknowledge an alarm (the first acknowledgement is kept). Hazard alarms are refused here: they are
        acknowledged in the console, through the safe-removal checklist and the quarantine log."""
        alarm = store.get_alarm(alarm_id)
        if alarm is not None and alarm.kind.startswith("hazard."):
            raise HTTPException(409, f"alarm {alarm_id} is a {alarm.kind} alarm: acknowledge it in the console "
                                "(/ui, Hazards) through the safe-removal checklist, so it enters the quarantine log")
        by = _acker(principal_of(request))
        try:
            out = AlarmOut.from_record(store.ack_alarm(alarm_id, by=by))
        except NotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        access.audit("alarm.ack", by, alarm_id, alarm.kind if alarm else "", request.client.host if request.client
                     else "")
        return out

    return router


INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sortloop station</title>
<style>
 body{font-family:system-ui,sans-serif;margin:1rem;background:#111;color:#eee}
 a{color:#8cf} img{max-width:100%;border:1px solid #444} table{border-collapse:collapse;margin-top:.5rem}
 td,th{padding:.2rem .6rem;border-bottom:1px solid #333;text-align:left} .bad{color:#f66} .ok{color:#6f6}
 main{display:grid;grid-template-columns:minmax(0,2fr) minmax(0,1fr);gap:1rem}
</style></head>
<body>
<h1>sortloop station</h1>
<nav><a href="/ui">console</a> · <a href="/docs">API docs</a> · <a href="/metrics">metrics</a></nav>
<main>
 <section><img src="/live.mjpg" alt="live view"></section>
 <section><h2>Health</h2><div id="health">…</div><h2>Latest items</h2>
  <table><thead><tr><th>time</th><th>class</th><th>stream</th><th>bin</th><th>conf</th></tr></thead>
  <tbody id="items"></tbody></table></section>
</main>
<script>
function cell(row, text){const td=document.createElement('td');td.textContent=text;row.appendChild(td);}
async function refresh(){
  try{
    const h=await (await fetch('/health')).json();
    const el=document.getElementById('health');
    el.className=h.ok?'ok':'bad';
    el.textContent=(h.ok?'running':'NOT OK')+' · '+h.fps.toFixed(1)+' fps · '+h.decisions+' decisions · model '
      +(h.model_version||'-')+(h.last_error?' · '+h.last_error:'');
    const page=await (await fetch('/api/items?page_size=10')).json();
    const body=document.getElementById('items');body.replaceChildren();
    for(const it of page.items){const tr=document.createElement('tr');
      cell(tr,new Date(it.decided_at*1000).toLocaleTimeString());cell(tr,it.class_name||'?');
      cell(tr,it.stream+(it.hazard?' ⚠ '+it.hazard:''));cell(tr,it.bin);cell(tr,it.confidence.toFixed(2));
      body.appendChild(tr);}
  }catch(e){document.getElementById('health').textContent='unreachable';}
}
refresh();setInterval(refresh,2000);
</script></body></html>
"""
