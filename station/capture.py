"""Capture: frame sources — video file, image folder, RTSP/HTTP stream, USB camera, conveyor simulator.

Live sources (streams, cameras) reconnect with exponential back-off when they are lost and report each
change through ``on_status`` so the station can alarm and route to manual meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, cast

import cv2
import numpy as np
import numpy.typing as npt

from station.config import ReconnectConfig, SourceConfig, StationConfig
from station.frames import Frame
from station.taxonomy import Taxonomy

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
StatusCallback = Callable[[bool, str], None]


class SourceError(RuntimeError):
    """A source cannot be opened at all (missing file, empty folder, bad URI)."""


class Source(Protocol):
    name: str

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


class _Pacer:
    """Sleeps so that frames leave at ``fps`` when ``realtime``; otherwise does nothing."""

    def __init__(self, fps: float, realtime: bool) -> None:
        self._period = 1.0 / fps
        self._realtime = realtime
        self._next: float | None = None

    def wait(self) -> None:
        if not self._realtime:
            return
        now = time.monotonic()
        if self._next is None:
            self._next = now
        delay = self._next - now
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self._period, now - self._period)


class VideoFileSource:
    """Frames of a video file; timestamps from the file's frame rate.

    A frame that does not decode mid-file is skipped (the file is reopened past it), counted through
    ``on_corrupt`` and reported through ``on_status`` (the station alarms and routes to manual until frames
    decode again); ``max_bad_frames`` in a row end the file with a message saying where and why.
    """

    def __init__(self, path: str | Path, *, loop: bool = False, realtime: bool = True,
                 on_status: StatusCallback | None = None, on_corrupt: Callable[[str], None] | None = None,
                 max_bad_frames: int = 30) -> None:
        self.path = Path(path)
        self.name = f"video:{self.path.name}"
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} not found; set source.uri to an existing file")
        cap = cv2.VideoCapture(str(self.path))
        ok = cap.isOpened()
        self.fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        cap.release()
        if not ok:
            raise SourceError(f"video file {self.path} cannot be decoded; check that it is a video OpenCV reads")
        self._loop = loop
        self._realtime = realtime
        self._on_status = on_status or (lambda ok, detail: None)
        self._on_corrupt = on_corrupt or (lambda detail: None)
        self._max_bad = max_bad_frames
        self._stop = threading.Event()
        self.corrupt = 0
        self.ended_early: str | None = None
        """Why the file ended before its last frame, or None."""

    def __iter__(self) -> Iterator[Frame]:
        base = 0
        pacer = _Pacer(self.fps, self._realtime)
        while not self._stop.is_set():
            end = base
            for pos, image in self._pass():
                pacer.wait()
                end = base + pos + 1
                yield Frame(_u8(image), base + pos, (base + pos) / self.fps, None, self.name)
            if not (self._loop and end > base) or self.ended_early:
                return
            base = end

    def _pass(self) -> Iterator[tuple[int, npt.NDArray[np.uint8]]]:
        """(position, image) of one pass over the file, skipping frames that do not decode."""
        cap = cv2.VideoCapture(str(self.path))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        pos, bad = 0, 0
        try:
            while not self._stop.is_set():
                ok, image = cap.read()
                if ok:
                    if bad:
                        self._on_status(True, f"video {self.path.name} decodes again at frame {pos}")
                    pos, bad = pos + 1, 0
                    yield pos - 1, _u8(image)
                    continue
                if total <= 0 or pos >= total:
                    return
                bad += 1
                self._corrupt_frame(pos, total, bad)
                pos += 1
                if bad >= self._max_bad:
                    self.ended_early = (f"video {self.path} ended early at frame {pos - bad} of {total}: {bad} frames "
                                        "in a row do not decode; check or replace the file")
                    self._on_status(False, self.ended_early)
                    return
                cap.release()
                cap = cv2.VideoCapture(str(self.path))  # past the bad frame: a decoder left in error stays there
                cap.set(cv2.CAP_PROP_POS_FRAMES, pos)
        finally:
            cap.release()

    def _corrupt_frame(self, pos: int, total: int, bad: int) -> None:
        self.corrupt += 1
        detail = f"video {self.path.name}: frame {pos} of {total} does not decode; skipped"
        log.warning("%s", detail)
        self._on_corrupt(detail)
        if bad == 1:
            self._on_status(False, f"{detail}, routing to manual until frames decode again")

    def close(self) -> None:
        self._stop.set()


class ImageFolderSource:
    """Images of a folder in name order, as frames at ``fps``."""

    def __init__(self, folder: str | Path, *, fps: float = 5.0, loop: bool = False, realtime: bool = True,
                 on_corrupt: Callable[[str], None] | None = None) -> None:
        self.folder = Path(folder)
        self._on_corrupt = on_corrupt or (lambda detail: None)
        self.name = f"images:{self.folder.name}"
        if not self.folder.is_dir():
            raise SourceError(f"image folder {self.folder} not found; set source.uri to a folder of images")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise SourceError(f"image folder {self.folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        self.fps, self._loop, self._realtime = fps, loop, realtime
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        pacer = _Pacer(self.fps, self._realtime)
        while not self._stop.is_set():
            for path in self.files:
                if self._stop.is_set():
                    return
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    log.warning("skipping unreadable image %s", path)
                    self._on_corrupt(f"image {path} does not decode; skipped")
                    continue
                pacer.wait()
                yield Frame(_u8(image), index, index / self.fps, None, self.name)
                index += 1
            if not self._loop:
                return

    def close(self) -> None:
        self._stop.set()


class LiveSource:
    """An RTSP/HTTP stream or a USB camera. Reconnects with back-off; never ends until closed."""

    def __init__(self, uri: str | int, reconnect: ReconnectConfig, on_status: StatusCallback | None = None) -> None:
        self.uri = uri
        self.name = f"camera:{uri}" if isinstance(uri, int) else f"stream:{_redact(str(uri))}"
        self._reconnect = reconnect
        self._on_status = on_status or (lambda ok, detail: None)
        self._stop = threading.Event()
        self.connected = False
        self.reconnects = 0

    def _open(self) -> cv2.VideoCapture | None:
        cap = cv2.VideoCapture(self.uri) if isinstance(self.uri, int) else cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def __iter__(self) -> Iterator[Frame]:
        index, t0, wait = 0, time.monotonic(), self._reconnect.initial_s
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                self._set(False, f"{self.name} unreachable; retrying in {wait:.1f} s")
                self._stop.wait(wait)
                wait = min(wait * self._reconnect.factor, self._reconnect.max_s)
                self.reconnects += 1
                continue
            self._set(True, f"{self.name} connected")
            wait = self._reconnect.initial_s
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok:
                    self._set(False, f"{self.name} lost (no frame); reconnecting")
                    break
                yield Frame(_u8(image), index, time.monotonic() - t0, None, self.name)
                index += 1
            cap.release()

    def _set(self, ok: bool, detail: str) -> None:
        if ok != self.connected or not ok:
            (log.info if ok else log.warning)(detail)
        if ok != self.connected:
            self.connected = ok
            self._on_status(ok, detail)
        elif not ok:
            self._on_status(ok, detail)

    def close(self) -> None:
        self._stop.set()


class SimulatorSource:
    """The conveyor simulator as a source; it keeps the ground truth for scoring."""

    def __init__(self, cfg: StationConfig, taxonomy: Taxonomy, *, realtime: bool = True) -> None:
        from station.simulator import ConveyorSimulator

        self.sim = ConveyorSimulator(cfg.simulator, taxonomy, line_x=cfg.decision.line_x)
        self.name = "simulator"
        self.fps = cfg.simulator.fps
        self._realtime = realtime
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        pacer = _Pacer(self.fps, self._realtime)
        for frame in self.sim:
            if self._stop.is_set():
                return
            pacer.wait()
            yield frame

    def close(self) -> None:
        self._stop.set()


def _u8(image: object) -> npt.NDArray[np.uint8]:
    """OpenCV's decoded frame, typed (it is uint8 BGR)."""
    return cast("npt.NDArray[np.uint8]", image)


def _redact(uri: str) -> str:
    """Hide credentials in a stream URL (rtsp://user:pass@host → rtsp://***@host)."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


def open_source(cfg: StationConfig, taxonomy: Taxonomy, on_status: StatusCallback | None = None,
                on_corrupt: Callable[[str], None] | None = None) -> Source:
    """The source named by ``cfg.source``; raises SourceError with the fix when it cannot be opened."""
    s: SourceConfig = cfg.source
    if s.kind == "simulator":
        return SimulatorSource(cfg, taxonomy, realtime=s.realtime)
    if s.kind == "video":
        return VideoFileSource(cfg.resolve(s.uri) if s.uri else Path(""), loop=s.loop, realtime=s.realtime,
                               on_status=on_status, on_corrupt=on_corrupt, max_bad_frames=s.max_bad_frames)
    if s.kind == "images":
        return ImageFolderSource(cfg.resolve(s.uri), fps=s.fps, loop=s.loop, realtime=s.realtime,
                                 on_corrupt=on_corrupt)
    if s.kind == "usb":
        try:
            index = int(s.uri or "0")
        except ValueError:
            raise SourceError(f"source.uri {s.uri!r} is not a USB camera index; use 0, 1, …") from None
        return LiveSource(index, s.reconnect, on_status)
    if not s.uri.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        raise SourceError(f"source.uri {s.uri!r} is not an RTSP/HTTP URL; use rtsp://host/path or http://…")
    return LiveSource(s.uri, s.reconnect, on_status)


def parse_source(spec: str) -> tuple[str, str]:
    """``--source`` on the command line → (kind, uri): sim, a video path, a folder, a URL or usb:N."""
    if spec in ("sim", "simulator"):
        return "simulator", ""
    if spec.startswith("usb:"):
        return "usb", spec[4:]
    if "://" in spec:
        return "stream", spec
    p = Path(spec)
    return ("images", spec) if p.is_dir() else ("video", spec)

