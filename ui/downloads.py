"""Temporary folders for downloads (dataset exports, CSVs, reports): private (0700, as ``mkdtemp`` makes them)
and removed once older than ``KEEP_S``, swept each time a new one is made and when the console mounts. The
console's own API removes an export as soon as it is sent; Gradio's copies go with ``delete_cache``."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PREFIXES = ("sortloop-export-", "sortloop-corrections-", "sortloop-report-")
KEEP_S = 3600.0  # long enough to download a report, short enough that exports do not pile up


def sweep(max_age_s: float = KEEP_S, root: Path | None = None, now: float | None = None) -> int:
    """Remove download folders older than ``max_age_s``; returns how many went."""
    base = Path(root or tempfile.gettempdir())
    cutoff = (time.time() if now is None else now) - max_age_s
    gone = 0
    for folder in base.iterdir():
        try:
            old = folder.name.startswith(PREFIXES) and folder.is_dir() and folder.stat().st_mtime < cutoff
        except OSError:
            continue  # went meanwhile
        if old:
            shutil.rmtree(folder, ignore_errors=True)
            gone += 1
    if gone:
        log.info("removed %d download folders older than %.0f s", gone, max_age_s)
    return gone


def download_dir(prefix: str) -> Path:
    """A fresh private folder for a download (after sweeping the old ones)."""
    if not prefix.startswith(PREFIXES):
        raise ValueError(f"download folder prefix {prefix!r} is not one of {PREFIXES}")
    sweep()
    return Path(tempfile.mkdtemp(prefix=prefix))
