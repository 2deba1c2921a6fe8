"""Live view: the latest frame annotated with boxes, the decision line and recent decisions, as JPEG/MJPEG.

``publish`` is on the hot path and only keeps references; drawing and encoding happen when a client asks
(``jpeg``), at most once per frame however many clients watch. The published image must not be changed
in place afterwards (frames move by reference through the pipeline).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from station.detections import Detections
from station.events import Actuation, Decision
from station.frames import Frame
from station.taxonomy import Stream, Taxonomy

Image = npt.NDArray[np.uint8]
BOUNDARY = "frame"
KEEPALIVE_S = 1.0  # a still picture is sent again this often, so clients see the stream is alive
FONT = cv2.FONT_HERSHEY_SIMPLEX
# BGR colours of the streams; hazardous classes are drawn red whatever their stream.
COLOURS: dict[Stream | None, tuple[int, int, int]] = {
    Stream.ELECTRONICS: (0, 165, 255),
    Stream.PLASTIC: (255, 140, 0),
    Stream.METAL: (200, 200, 200),
    Stream.TEXTILE: (200, 60, 200),
    Stream.RESIDUAL: (90, 160, 90),
    Stream.MANUAL: (0, 230, 230),
    None: (255, 255, 255),
}
HAZARD_COLOUR = (0, 0, 255)
BANNER_COLOUR = (0, 0, 200)


@dataclass(frozen=True)
class _Scene:
    frame: Frame
    dets: Detections
    names: Sequence[str]
    line_x: float
    recent: tuple[Decision, ...]
    version: int


class LiveView:
    """Keeps the latest scene and turns it into an annotated JPEG on demand."""

    def __init__(self, taxonomy: Taxonomy | None = None, *, strip_size: int = 6, banner_s: float = 5.0,
                 quality: int = 80, max_width: int = 1280) -> None:
        self._streams = {} if taxonomy is None else {c.name: c.stream for c in taxonomy.classes}
        self._hazards = set() if taxonomy is None else {c.name for c in taxonomy.classes if c.hazard != "none"}
        self.strip_size, self.banner_s, self.quality, self.max_width = strip_size, banner_s, quality, max_width
        self._scene: _Scene | None = None
        self._recent: tuple[Decision, ...] = ()
        self._bins: OrderedDict[str, str] = OrderedDict()
        self._versions = itertools.count()
        self._cache: tuple[int, bytes] | None = None
        self._draw_lock = threading.Lock()
        self._closed = threading.Event()
        self._placeholder: bytes | None = None

    def publish(self, frame: Frame, dets: Detections, names: list[str], decisions: list[Decision],
                line_x: float, actuations: Sequence[Actuation] = ()) -> None:
        """Make ``frame`` the current picture (references only; nothing is drawn here)."""
        if decisions:
            self._recent = (*reversed(decisions), *self._recent)[: self.strip_size]
        for a in actuations:
            self._bins[a.item_id] = a.bin
            if len(self._bins) > 4 * self.strip_size:
                self._bins.popitem(last=False)
        self._scene = _Scene(frame, dets, names, line_x, self._recent, next(self._versions))

    def latest_frame(self) -> Frame | None:
        """The latest published frame as captured, unannotated (the console grabs it for missed-item reports)."""
        scene = self._scene
        return None if scene is None else scene.frame

    def jpeg(self) -> bytes | None:
        """The current annotated frame as JPEG, drawn once per frame; None before the first frame."""
        scene = self._scene
        if scene is None:
            return None
        cached = self._cache
        if cached is not None and cached[0] == scene.version:
            return cached[1]
        with self._draw_lock:
            cached = self._cache
            if cached is not None and cached[0] == scene.version:
                return cached[1]
            data = self._encode(self._draw(scene))
            self._cache = (scene.version, data)
            return data

    def mjpeg(self, fps: float) -> Iterator[bytes]:
        """Multipart JPEG parts (boundary ``frame``) at most ``fps`` per second, until ``close()``."""
        period = 1.0 / fps
        last_version, last_sent = -1, 0.0
        while not self._closed.is_set():
            scene, now = self._scene, time.monotonic()
            version = -1 if scene is None else scene.version
            if version != last_version or now - last_sent >= KEEPALIVE_S:
                yield part(self.jpeg() or self.placeholder())
                last_version, last_sent = version, now
            self._closed.wait(period)

    def close(self) -> None:
        """End every MJPEG stream (at shutdown)."""
        self._closed.set()

    def placeholder(self) -> bytes:
        """A 'waiting for frames' picture for clients that connect before the first frame."""
        if self._placeholder is None:
            image = np.full((360, 640, 3), 40, np.uint8)
            cv2.putText(image, "sortloop: waiting for frames", (120, 185), FONT, 0.8, (220, 220, 220), 2,
                        cv2.LINE_AA)
            self._placeholder = self._encode(image)
        return self._placeholder

    # -- drawing (only when a client asks) -------------------------------------------------------

    def _encode(self, image: Image) -> bytes:
        if image.shape[1] > self.max_width:
            scale = self.max_width / image.shape[1]
            size = (self.max_width, round(image.shape[0] * scale))
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError(f"live view: cannot encode a frame of shape {image.shape} as JPEG")
        return buf.tobytes()

    def _draw(self, scene: _Scene) -> Image:
        src = scene.frame.image
        image = np.asarray(cv2.cvtColor(src, cv2.COLOR_GRAY2BGR), np.uint8) if src.ndim == 2 else src.copy()
        x = round(scene.line_x * image.shape[1])
        cv2.line(image, (x, 0), (x, image.shape[0] - 1), (0, 255, 255), 2)
        visible_hazard = self._draw_boxes(image, scene.dets, scene.names)
        self._draw_strip(image, scene.recent)
        self._draw_banner(image, scene.recent, visible_hazard)
        return image

    def _draw_boxes(self, image: Image, dets: Detections, names: Sequence[str]) -> str | None:
        """Draw boxes; returns the class name of a hazardous item in view, if any."""
        hazard = None
        tids = dets.tracker_id if dets.tracker_id is not None else np.full(len(dets), -1)
        for (x1, y1, x2, y2), conf, cid, tid in zip(dets.xyxy, dets.confidence, dets.class_id, tids, strict=True):
            name = names[cid] if 0 <= cid < len(names) else str(cid)
            is_hazard = name in self._hazards
            hazard = name if is_hazard else hazard
            colour = HAZARD_COLOUR if is_hazard else COLOURS[self._streams.get(name)]
            p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
            cv2.rectangle(image, p1, p2, colour, 2)
            label = f"#{tid} {name} {conf:.2f}" if tid >= 0 else f"{name} {conf:.2f}"
            cv2.putText(image, label, (p1[0], max(12, p1[1] - 5)), FONT, 0.5, colour, 1, cv2.LINE_AA)
        return hazard

    def _draw_strip(self, image: Image, recent: tuple[Decision, ...]) -> None:
        if not recent:
            return
        h = image.shape[0]
        top = max(0, h - 20 * len(recent) - 8)
        image[top:] = (image[top:] * 0.35).astype(np.uint8)
        for i, d in enumerate(recent):
            bin_name = self._bins.get(d.item_id)
            text = f"#{d.track_id} {d.class_name or '?'} {d.confidence:.2f} -> {d.stream.value}"
            text += f" / bin {bin_name}" if bin_name else ""
            text += f"  [{d.reason.value}]" if d.reason.value != "ok" else ""
            colour = HAZARD_COLOUR if d.hazard else COLOURS[d.stream]
            cv2.putText(image, text, (8, top + 18 + 20 * i), FONT, 0.5, colour, 1, cv2.LINE_AA)

    def _draw_banner(self, image: Image, recent: tuple[Decision, ...], visible: str | None) -> None:
        now = time.time()
        decided = next((d for d in recent if d.hazard and now - d.decided_at_wall < self.banner_s), None)
        if decided is not None:
            bin_name = self._bins.get(decided.item_id)
            where = f"bin {bin_name}" if bin_name else decided.stream.value
            text = f"HAZARD {decided.hazard}: {decided.class_name or '?'} #{decided.track_id} -> {where}"
        elif visible is not None:
            text = f"HAZARD on the belt: {visible}"
        else:
            return
        cv2.rectangle(image, (0, 0), (image.shape[1] - 1, 34), BANNER_COLOUR, -1)
        cv2.putText(image, text, (10, 24), FONT, 0.7, (255, 255, 255), 2, cv2.LINE_AA)


def part(jpeg: bytes) -> bytes:
    """One multipart/x-mixed-replace part holding a JPEG."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
    return head + jpeg + b"\r\n"
