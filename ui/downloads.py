"""Downloads: private temporary folders, and who may fetch what through Gradio's file route.

Folders (dataset exports, CSVs, reports) are private (0700, as ``mkdtemp`` makes them) and removed once older
than ``KEEP_S``, swept each time a new one is made and when the console mounts. The console's own API removes
an export as soon as it is sent.

A console handler that hands a file to Gradio for download registers it in ``Offers`` first (its owner, and
whether it goes after the first download). Gradio copies it into its cache and serves the copy at
``/ui/gradio_api/file=<cache path>``; ``DownloadGate`` admits a request for that route only from the
logged-in user the file was made for, refuses every other file there (403), and removes a one-time file
(and the folder it was made in) once it has been sent. Gradio's copies left behind go with its
``delete_cache`` after ``KEEP_S``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

PREFIXES = ("sortloop-export-", "sortloop-corrections-", "sortloop-report-", "sortloop-audit-")
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


FILE_ROUTES = ("/ui/gradio_api/file=", "/ui/gradio_api/file/")  # Gradio's file route (and its older form)


def _cache_key(path: Path) -> tuple[str, str]:
    """Where Gradio's cache keeps a copy of ``path``: (folder named by its content hash, file name)."""
    from gradio.processing_utils import hash_file
    from gradio_client.utils import strip_invalid_filename_characters

    return hash_file(path), strip_invalid_filename_characters(path.name)


@dataclass
class Offer:
    """A file handed to Gradio for download: who may fetch it, and whether it goes after one download."""

    source: Path
    owners: set[str]
    once: bool
    at: float = field(default_factory=time.time)


class Offers:
    """The files console handlers handed to Gradio, by the cache location Gradio serves them from."""

    def __init__(self, keep_s: float = KEEP_S) -> None:
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self._offers: dict[tuple[str, str], Offer] = {}

    def offer(self, path: Path, username: str, *, once: bool) -> str:
        """Register ``path`` as ``username``'s download; returns what the handler gives Gradio."""
        key = _cache_key(path)
        with self._lock:
            self._expire()
            held = self._offers.get(key)
            if held is None:
                self._offers[key] = Offer(path, {username}, once)
            else:  # the same file made again (same content and name): one more owner
                held.owners.add(username)
                held.at, held.once, held.source = time.time(), held.once and once, path
        return str(path)

    def find(self, served: str) -> Offer | None:
        """The offer a path on Gradio's file route is a copy of (None: not a download made for anyone)."""
        path = Path(served)
        with self._lock:
            self._expire()
            return self._offers.get((path.parent.name, path.name))

    def sent(self, served: str) -> None:
        """A file was sent whole: a one-time offer goes, with Gradio's copy and the folder it was made in."""
        path = Path(served)
        with self._lock:
            offer = self._offers.get((path.parent.name, path.name))
            if offer is None or not offer.once:
                return
            del self._offers[(path.parent.name, path.name)]
        _remove(path)
        folder = offer.source.parent
        if folder.name.startswith(PREFIXES):
            shutil.rmtree(folder, ignore_errors=True)
        else:
            _remove(offer.source)
        log.info("download %s sent once and removed", path.name)

    def _expire(self) -> None:
        cutoff = time.time() - self.keep_s
        for key in [k for k, o in self._offers.items() if o.at < cutoff]:
            del self._offers[key]


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
        path.parent.rmdir()  # Gradio's per-file folder, when it is empty now
    except OSError:
        pass


def served_path(path: str) -> str | None:
    """The file a request on Gradio's file route asks for (None: another route)."""
    for prefix in FILE_ROUTES:
        if path.startswith(prefix):
            return path[len(prefix):]
    return None


class DownloadGate:
    """ASGI gate on Gradio's file route: a file is sent only to the user it was made for, and a one-time file
    is removed once sent. A caller without a console session passes on to the access policy (401/403)."""

    def __init__(self, app: ASGIApp, offers: Offers, user_of: Callable[[Request], str | None]) -> None:
        self.app, self.offers, self.user_of = app, offers, user_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        served = served_path(scope.get("path", "")) if scope["type"] == "http" else None
        if served is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        username = await run_in_threadpool(self.user_of, request)
        if username is None:
            await self.app(scope, receive, send)  # the policy answers 401 or 403
            return
        offer = await run_in_threadpool(self.offers.find, served)
        if offer is None or username not in offer.owners:
            why = "not a download made for you" if offer is not None else "not a download of this console"
            detail = f"forbidden (403): {Path(served).name} is {why}; make your own from the console"
            log.warning("download refused to %s: %s", username, served)
            await JSONResponse({"detail": detail, "reason": "download"}, status_code=403)(scope, receive, send)
            return
        whole = scope.get("method") == "GET" and "range" not in request.headers
        status = [0]

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body") and status[0] == 200 \
                    and whole:  # the last chunk is read already: the file goes before the answer ends
                await run_in_threadpool(self.offers.sent, served)
            await send(message)

        await self.app(scope, receive, watch)
