"""Web app (TestClient and a real uvicorn on 127.0.0.1), live view and metrics."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from access_kit import sign_in
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from station.access import COOKIE
from station.api import StatusSnapshot, create_app
from station.config import StationConfig
from station.detections import Detections
from station.events import Actuation, Alarm, Decision, Reason, Severity, new_id
from station.frames import Frame
from station.live import BOUNDARY, HAZARD_COLOUR, LiveView
from station.metrics import StationMetrics
from station.store import Store
from station.store.access import AccessRepo
from station.taxonomy import Stream, load_taxonomy

T0 = 1_699_999_200.0
NAMES = ["battery", "phone", "plastic"]
RUNNING = StatusSnapshot(running=True, source_ok=True, model_version="m-1", fps=29.5, frames=900, dropped=2,
                         decisions=31, workers={"detect": "running"}, started_at=time.time() - 60)


class FixedStatus:
    """A StatusProvider that reports what a test sets."""

    def __init__(self, snapshot: StatusSnapshot) -> None:
        self.value = snapshot

    def snapshot(self) -> StatusSnapshot:
        return self.value


def make_decision(**kw: object) -> Decision:
    values: dict[str, object] = {
        "item_id": new_id(), "station_id": "station-1", "track_id": 3, "frame_index": 10, "crossed_at": 1.0,
        "crossed_ticks": None, "class_name": "plastic", "stream": Stream.PLASTIC, "hazard": None,
        "confidence": 0.9, "votes": {"plastic": 0.9}, "observations": 8, "reason": Reason.OK,
        "box": (1.0, 2.0, 30.0, 40.0), "model_version": "m-1", "decided_at_wall": T0,
    }
    values.update(kw)
    return Decision(**values)  # type: ignore[arg-type]


def actuation_for(d: Decision, bin_name: str = "plastic") -> Actuation:
    return Actuation(new_id(), d.item_id, bin_name, 1, 2.0, None, d.decided_at_wall + 2)


def make_frame(index: int = 0, value: int = 30, size: tuple[int, int] = (240, 320)) -> Frame:
    return Frame(np.full((*size, 3), value, np.uint8), index=index, timestamp=index / 30)


def make_dets(class_ids: list[int], boxes: list[tuple[float, float, float, float]]) -> Detections:
    n = len(class_ids)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(n, 0.8, np.float32),
                      np.array(class_ids), tracker_id=np.arange(1, n + 1))


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Store, FixedStatus, LiveView, StationMetrics]]:
    store = Store.open(f"sqlite:///{tmp_path / 'api.db'}", tmp_path / "evidence")
    live = LiveView(load_taxonomy())
    yield store, FixedStatus(RUNNING), live, StationMetrics()
    live.close()
    store.close()


@pytest.fixture
def client(parts: tuple[Store, FixedStatus, LiveView, StationMetrics]) -> TestClient:
    """The app, signed in as an admin (ana): every route admits her (tests/test_access.py walks the roles)."""
    return TestClient(create_app(*parts, StationConfig()), cookies={COOKIE: sign_in(parts[0], "ana", "admin")})


@pytest.fixture
def items(parts: tuple[Store, FixedStatus, LiveView, StationMetrics]) -> dict[str, str]:
    store = parts[0]
    specs: dict[str, dict[str, object]] = {
        "plastic": {"crop": np.full((16, 16, 3), 90, np.uint8)},
        "phone": {"class_name": "phone", "stream": Stream.ELECTRONICS, "hazard": "battery",
                  "decided_at_wall": T0 + 3600},
        "unknown": {"class_name": None, "stream": Stream.MANUAL, "reason": Reason.SHORT_TRACK,
                    "decided_at_wall": T0 + 7200},
    }
    ids = {}
    for name, spec in specs.items():
        d = make_decision(**spec)
        store.record(d, actuation_for(d, "manual" if d.stream is Stream.MANUAL else "plastic"))
        ids[name] = d.item_id
    return ids


@pytest.mark.parametrize(("snapshot", "code"), [
    (RUNNING, 200),
    (replace(RUNNING, running=False), 503),
    (replace(RUNNING, source_ok=False, last_error="camera lost"), 503),
])
def test_health(parts: tuple[Store, FixedStatus, LiveView, StationMetrics], client: TestClient,
                snapshot: StatusSnapshot, code: int) -> None:
    parts[1].value = snapshot
    r = client.get("/health")
    assert r.status_code == code
    body = r.json()
    assert (body["ok"], body["fps"], body["workers"], body["last_error"]) == \
        (code == 200, 29.5, {"detect": "running"}, snapshot.last_error)
    assert 55 <= body["uptime_s"] < 3600


@pytest.mark.parametrize(("query", "expected"), [
    ("", ["unknown", "phone", "plastic"]),
    ("?stream=plastic", ["plastic"]),
    ("?class=phone", ["phone"]),
    ("?hazard=battery", ["phone"]),
    ("?reason=short_track", ["unknown"]),
    (f"?since={T0 + 1}&until={T0 + 7200}", ["phone"]),
    ("?page=2&page_size=2", ["plastic"]),
])
def test_list_items(client: TestClient, items: dict[str, str], query: str, expected: list[str]) -> None:
    r = client.get(f"/api/items{query}")
    assert r.status_code == 200, r.text
    assert [i["item_id"] for i in r.json()["items"]] == [items[n] for n in expected]


@pytest.mark.parametrize("query", ["?stream=gold", "?page=0", "?page_size=100000", "?reason=maybe"])
def test_list_items_rejects_bad_queries(client: TestClient, query: str) -> None:
    assert client.get(f"/api/items{query}").status_code == 422


def test_get_item_and_crop(client: TestClient, items: dict[str, str]) -> None:
    body = client.get(f"/api/items/{items['plastic']}").json()
    assert (body["class_name"], body["bin"], body["actuation"]["status"]) == ("plastic", "plastic", "pending")
    assert body["crop_url"] == f"/api/items/{items['plastic']}/crop"
    crop = client.get(body["crop_url"])
    assert crop.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(crop.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (16, 16, 3)


@pytest.mark.parametrize(("path", "message"), [
    ("/api/items/nope", "item 'nope' not found"),
    ("/api/items/nope/crop", "item 'nope' not found"),
    ("/api/items/{phone}/crop", "has no evidence crop"),
])
def test_item_404s_say_what_is_missing(client: TestClient, items: dict[str, str], path: str, message: str) -> None:
    r = client.get(path.format(phone=items["phone"]))
    assert r.status_code == 404
    assert message in r.json()["detail"]


def test_throughput(client: TestClient, items: dict[str, str]) -> None:
    r = client.get(f"/api/throughput?bucket=hour&since={T0}&until={T0 + 3 * 3600}")
    assert r.status_code == 200, r.text
    rows = [(row["bucket_start"], row["stream"], row["items"], row["kg"]) for row in r.json()["rows"]]
    assert rows == [(T0, "plastic", 1, 0.04), (T0 + 3600, "electronics", 1, 0.18), (T0 + 7200, "manual", 1, 0.0)]
    day = client.get(f"/api/throughput?bucket=day&since={T0}&until={T0 + 3 * 3600}").json()
    assert sum(row["items"] for row in day["rows"]) == 3 and day["bucket_s"] == 86_400
    assert client.get(f"/api/throughput?since={T0}&until={T0}").status_code == 422
    assert client.get("/api/throughput?bucket=week").status_code == 422


def test_alarms_list_and_ack(parts: tuple[Store, FixedStatus, LiveView, StationMetrics], client: TestClient) -> None:
    store = parts[0]
    hazard = Alarm("hazard.battery", "battery on the belt", Severity.CRITICAL, raised_at=T0)
    store.add_alarm(hazard)
    lost = Alarm("source.lost", "camera lost", raised_at=T0 + 5)
    store.add_alarm(lost)
    assert len(client.get("/api/alarms?active=true").json()) == 2
    r = client.post(f"/api/alarms/{lost.alarm_id}/ack", json={"by": "admin"})  # "by" is the caller, not the body
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "ana" and r.json()["active"] is False
    assert [(a.actor, a.target) for a in AccessRepo(store).audit_log(action="alarm.ack")] == [("ana", lost.alarm_id)]
    assert [a["kind"] for a in client.get("/api/alarms?active=true").json()] == ["hazard.battery"]
    # a hazard is acknowledged only through the console's checklist, never by a bare API call
    r = client.post(f"/api/alarms/{hazard.alarm_id}/ack", json={"by": "ana"})
    assert r.status_code == 409 and "checklist" in r.json()["detail"]
    assert store.get_alarm(hazard.alarm_id).acknowledged_at is None
    assert len(client.get("/api/alarms").json()) == 2
    assert client.post("/api/alarms/nope/ack", json={"by": "ana"}).status_code == 404
    assert client.post(f"/api/alarms/{lost.alarm_id}/ack", json={"by": 3}).status_code == 422


def test_metrics_endpoint(parts: tuple[Store, FixedStatus, LiveView, StationMetrics], client: TestClient) -> None:
    metrics = parts[3]
    for _ in range(3):
        metrics.frame()
    metrics.frames_dropped(2)
    metrics.frames_dropped(5)
    metrics.frames_dropped(4)  # a total never goes down
    metrics.decision(make_decision(hazard="battery", stream=Stream.ELECTRONICS), "sent", 0.12)
    metrics.set_model("m-1")
    metrics.set_model("m-2")
    metrics.set_queue("frames", 3)
    metrics.worker_restarted("detect")
    metrics.alarm("hazard.battery")
    metrics.observe_inference(0.012)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(r.text) for s in fam.samples}
    assert samples[("sortloop_frames_total", ())] == 3
    assert samples[("sortloop_decisions_total", (("reason", "ok"), ("stream", "electronics")))] == 1
    assert samples[("sortloop_hazards_total", (("kind", "battery"),))] == 1
    assert samples[("sortloop_inference_seconds_count", ())] == 1
    assert samples[("sortloop_frames_dropped_total", (("stage", "capture"),))] == 5
    assert samples[("sortloop_actuations_total", (("status", "sent"),))] == 1
    assert samples[("sortloop_frame_to_decision_seconds_count", ())] == 1
    assert samples[("sortloop_queue_depth", (("queue", "frames"),))] == 3
    assert samples[("sortloop_worker_restarts_total", (("worker", "detect"),))] == 1
    assert samples[("sortloop_alarms_total", (("kind", "hazard.battery"),))] == 1
    assert [k[1] for k in samples if k[0] == "sortloop_model_info"] == [(("version", "m-2"),)]


def test_metrics_registries_are_independent() -> None:
    a, b = StationMetrics(), StationMetrics()
    a.frame()
    assert b"sortloop_frames_total 1.0" in a.render()
    assert b"sortloop_frames_total 0.0" in b.render()


def test_index_and_openapi(client: TestClient) -> None:
    page = client.get("/").text
    assert all(s in page for s in ('src="/live.mjpg"', 'href="/docs"', 'href="/ui"', "/api/items"))
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/api/items", "/api/items/{item_id}", "/api/items/{item_id}/crop", "/api/throughput",
            "/api/alarms", "/api/alarms/{alarm_id}/ack", "/metrics", "/live.mjpg"} <= set(paths)
    assert client.get("/docs").status_code == 200


# -- live view -----------------------------------------------------------------------------------------

def _decode(data: bytes | None) -> np.ndarray:
    assert data is not None and data[:2] == b"\xff\xd8"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_live_jpeg_is_drawn_once_per_frame_and_leaves_the_frame_alone() -> None:
    live = LiveView(load_taxonomy())
    assert live.jpeg() is None
    frame = make_frame()
    live.publish(frame, make_dets([2], [(50, 50, 150, 150)]), NAMES, [], line_x=0.5)
    first = live.jpeg()
    assert live.jpeg() is first  # cached: not drawn again
    assert _decode(first).shape == (240, 320, 3)
    assert int(frame.image.max()) == 30  # drawing happened on a copy
    live.publish(make_frame(1), Detections.empty(), NAMES, [], line_x=0.5)
    assert live.jpeg() is not first


@pytest.mark.parametrize(("class_ids", "decision", "banner"), [
    ([2], None, False),
    ([0], None, True),                                       # a battery in view
    ([2], {"hazard": "battery", "class_name": "phone"}, True),  # a hazard just decided
    ([2], {"hazard": "battery", "decided_at_wall": 0.0}, False),  # decided long ago
])
def test_live_hazard_banner(class_ids: list[int], decision: dict[str, object] | None, banner: bool) -> None:
    live = LiveView(load_taxonomy())
    decisions = [] if decision is None else [make_decision(**{"decided_at_wall": time.time(), **decision})]
    live.publish(make_frame(), make_dets(class_ids, [(100, 100, 200, 180)]), NAMES, decisions, line_x=0.5)
    b, g, r = _decode(live.jpeg())[5:30, 200:300].reshape(-1, 3).mean(axis=0)
    assert bool(r > 150 and b < 80 and g < 80) == banner


def test_live_boxes_take_their_stream_colour() -> None:
    live = LiveView(load_taxonomy())
    live.publish(make_frame(value=0), make_dets([2, 0], [(40, 60, 140, 200), (180, 60, 300, 200)]), NAMES, [],
                 line_x=0.9)
    image = _decode(live.jpeg()).astype(int)
    plastic = image[100:160, 40].mean(axis=0)   # left edge of the plastic item's box
    battery = image[100:160, 180].mean(axis=0)  # left edge of the battery's box
    assert np.abs(plastic - (255, 140, 0)).max() < 60
    assert np.abs(battery - HAZARD_COLOUR).max() < 60


def _read_parts(chunks: Iterator[bytes], count: int) -> list[bytes]:
    buf, out = b"", list[bytes]()
    marker = f"--{BOUNDARY}\r\n".encode()
    for chunk in chunks:
        buf += chunk
        while len(out) < count and marker in buf and b"\r\n\r\n" in buf:
            head, _, rest = buf[buf.index(marker) + len(marker):].partition(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
            size = int(headers["Content-Length"])
            if len(rest) < size + 2:
                break
            assert headers["Content-Type"] == "image/jpeg"
            out.append(rest[:size])
            buf = rest[size + 2:]
        if len(out) == count:
            return out
    raise AssertionError(f"stream ended after {len(out)} of {count} parts")


def test_live_mjpeg_generator_starts_with_a_placeholder_and_stops_on_close() -> None:
    live = LiveView()
    stream = live.mjpeg(fps=50)
    [placeholder] = _read_parts(stream, 1)
    assert _decode(placeholder).shape == (360, 640, 3)
    live.publish(make_frame(), Detections.empty(), NAMES, [], line_x=0.5)
    [frame] = _read_parts(stream, 1)
    assert _decode(frame).shape == (240, 320, 3)
    live.close()
    assert list(stream) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_uvicorn_serves_the_mjpeg_live_view(parts: tuple[Store, FixedStatus, LiveView, StationMetrics]) -> None:
    live = parts[2]
    config = StationConfig()
    config.api.live_fps = 20
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(*parts, config), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stop = threading.Event()

    def publisher() -> None:
        i = 0
        while not stop.wait(0.03):
            live.publish(make_frame(i, value=i % 200), make_dets([2], [(10, 10, 60, 60)]), NAMES, [], 0.5)
            i += 1

    pub = threading.Thread(target=publisher, daemon=True)
    pub.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        _, token = AccessRepo(parts[0]).create_token("wall-screen", "read")
        with httpx.stream("GET", f"http://127.0.0.1:{port}/live.mjpg", timeout=20,
                          headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
            frames = _read_parts(r.iter_bytes(), 2)
        assert [_decode(f).shape for f in frames] == [(240, 320, 3)] * 2
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json() == {"ok": True}  # anonymous
        assert httpx.get(f"http://127.0.0.1:{port}/live.jpg", timeout=10).status_code == 401
    finally:
        stop.set()
        live.close()
        server.should_exit = True
        thread.join(timeout=30)
        pub.join(timeout=5)
    assert not thread.is_alive()
