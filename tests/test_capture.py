"""Sources: real files, a folder, and a dead stream that reconnects with back-off."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from station.capture import ImageFolderSource, LiveSource, SourceError, VideoFileSource, parse_source
from station.config import ReconnectConfig


def write_video(path: Path, n: int = 12, size: tuple[int, int] = (160, 120)) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    for i in range(n):
        img = np.full((size[1], size[0], 3), (i * 10) % 256, np.uint8)
        vw.write(img)
    vw.release()
    return path


def test_video_file_frames_and_loop(tmp_path: Path) -> None:
    src = VideoFileSource(write_video(tmp_path / "v.avi"), realtime=False)
    frames = list(src)
    assert len(frames) == 12
    assert [f.index for f in frames] == list(range(12))
    assert frames[3].timestamp == pytest.approx(3 / 30)
    looped = VideoFileSource(tmp_path / "v.avi", loop=True, realtime=False)
    it = iter(looped)
    got = [next(it) for _ in range(30)]
    looped.close()
    assert got[-1].index == 29


def _junk(path: Path) -> Path:
    path.write_bytes(b"not a video")
    return path


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: VideoFileSource(p / "missing.mp4"), "not found; set source.uri"),
        (lambda p: VideoFileSource(_junk(p / "junk.mp4")), "cannot be decoded"),
        (lambda p: ImageFolderSource(p / "nope"), "not found"),
        (lambda p: ImageFolderSource(p), "holds no images"),
    ],
)
def test_bad_sources_refused_with_fix(tmp_path: Path, make, needle: str) -> None:
    with pytest.raises(SourceError, match=needle):
        make(tmp_path)


def test_image_folder_skips_unreadable(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "9.jpg").write_bytes(b"corrupt")
    frames = list(ImageFolderSource(tmp_path, realtime=False))
    assert len(frames) == 3 and frames[0].image.shape == (20, 30, 3)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_stream_alarms_and_backs_off() -> None:
    events: list[tuple[bool, str]] = []
    src = LiveSource(f"rtsp://127.0.0.1:{_closed_port()}/cam", ReconnectConfig(initial_s=0.05, max_s=0.2),
                     on_status=lambda ok, d: events.append((ok, d)))
    frames = []
    t = threading.Thread(target=lambda: frames.extend(src), daemon=True)
    t.start()
    time.sleep(1.5)
    src.close()
    t.join(10)
    assert not frames and not src.connected
    assert src.reconnects >= 2
    assert all(not ok for ok, _ in events) and "unreachable" in events[0][1]


@pytest.mark.parametrize(
    ("spec", "kind"),
    [("sim", "simulator"), ("usb:0", "usb"), ("rtsp://h/x", "stream"), ("clip.mp4", "video"), (".", "images")],
)
def test_parse_source(spec: str, kind: str) -> None:
    assert parse_source(spec)[0] == kind


def corrupt(src: Path, dst: Path, start: float, end: float | None) -> Path:
    """A copy of ``src`` with bytes ``start..end`` (fractions of its size) overwritten, or cut at ``start``."""
    data = bytearray(src.read_bytes())
    a = int(len(data) * start)
    if end is None:
        dst.write_bytes(bytes(data[:a]))
        return dst
    b = int(len(data) * end)
    data[a:b] = bytes((i * 131 + 7) % 256 for i in range(b - a))
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(("start", "end", "ends_early", "restored"), [
    (0.40, 0.55, False, True),   # garbage mid-file: skipped and counted, frames decode again after it
    (0.50, None, True, False),   # cut mid-file (a copy that stopped): ends with a message, not silently
])
def test_video_that_goes_bad_mid_run_is_counted_and_reported(tmp_path: Path, start: float, end: float | None,
                                                             ends_early: bool, restored: bool) -> None:
    good = write_video(tmp_path / "v.avi", n=100)
    status: list[tuple[bool, str]] = []
    corrupt_seen: list[str] = []
    src = VideoFileSource(corrupt(good, tmp_path / "bad.avi", start, end), realtime=False, max_bad_frames=10,
                          on_status=lambda ok, d: status.append((ok, d)), on_corrupt=corrupt_seen.append)
    frames = list(src)
    assert src.corrupt == len(corrupt_seen) >= 1
    assert len(frames) + src.corrupt <= 100
    assert status and status[0][0] is False and "does not decode" in status[0][1]
    assert (src.ended_early is not None) is ends_early
    assert any(ok for ok, _ in status) is restored
    if ends_early:
        assert status[-1] == (False, src.ended_early) and "ended early at frame" in status[-1][1]
    else:
        assert len(frames) + src.corrupt == 100
        idx = [f.index for f in frames]
        assert idx == sorted(idx) and idx[-1] == 99  # timestamps keep the file's clock across the gap
