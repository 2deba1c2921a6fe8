"""Engine set-up and migrations: SQLite (WAL, synchronous=FULL, busy timeout) or PostgreSQL.

Migrations run at open, under a lock so that two processes opening a fresh database do not both create
it: a file lock beside a SQLite file, an advisory lock on PostgreSQL.
"""

from __future__ import annotations

import fcntl
import logging
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import Float

from station.store.records import StoreError

if TYPE_CHECKING:
    from station.config import StationConfig

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 10_000
_PG_LOCK_KEY = zlib.crc32(b"sortloop.migrations")


class floor_nonneg(GenericFunction[float]):
    """``floor(x)`` for x ≥ 0, portable: SQLite may lack ``floor``, where a cast truncates the same way."""

    type = Float()
    inherit_cache = True


@compiles(floor_nonneg)
def _floor_default(element: floor_nonneg, compiler: SQLCompiler, **kw: Any) -> str:
    return f"floor({compiler.process(element.clauses, **kw)})"


@compiles(floor_nonneg, "sqlite")
def _floor_sqlite(element: floor_nonneg, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


def parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"store url {url!r} is not a database URL; use sqlite:///path/to/file.db or "
                         "postgresql+psycopg://user@host/db") from exc


def try_store(config: StationConfig) -> None:
    """Try the configured store without changing it: connect (PostgreSQL) or check that the SQLite file's
    folder can be written. Raises ConfigError naming store.url and the fix."""
    from station.config import ConfigError

    url = parse_url(config.store.url)
    path = sqlite_file(url)
    if url.get_backend_name() == "sqlite":
        if path is None:
            return
        path = path if path.is_absolute() else config.resolve(str(path))
        folder = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("/"))
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(f"store.url: database file {path} is not readable and writable by this user; fix "
                              "its permissions or point store.url elsewhere")
        if not path.exists() and not (folder.is_dir() and os.access(folder, os.W_OK)):
            raise ConfigError(f"store.url: cannot create {path} ({folder} is not a writable folder); create the "
                              "folder or point store.url elsewhere")
        return
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error: report it with the fix
        raise ConfigError(f"store.url: cannot connect to {url.render_as_string(hide_password=True)}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; check the server, "
                          "the credentials and that the driver is installed") from None
    finally:
        engine.dispose()


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL (None for in-memory or other backends)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database))


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()
    return on_connect


def make_engine(url: URL, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    """An engine for ``url``; SQLite connections get WAL, synchronous=FULL, busy_timeout, foreign keys."""
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    path = sqlite_file(url)
    if path is None:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": busy_timeout_ms / 1000})
    event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
    return engine


PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700


def make_private(url: URL, evidence_dir: Path) -> None:
    """Only the station's user may read the database (and its WAL and lock files) and the evidence folder: it
    holds password hashes, session hashes and images of what was on the belt."""
    path = sqlite_file(url)
    files = [] if path is None else [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", ".migrate.lock"))]
    for f, mode in [*((f, PRIVATE_FILE) for f in files), (evidence_dir, PRIVATE_DIR)]:
        if not f.exists():
            continue
        if f.stat().st_uid != os.getuid():
            log.warning("%s belongs to another user: its mode stays %o; give it to the station's user", f,
                        f.stat().st_mode & 0o777)
            continue
        os.chmod(f, mode)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config built in code (no alembic.ini); pass ``connection`` to migrate through it."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.with_name(path.name + ".migrate.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest migration (a no-op when it is already there)."""
    path = sqlite_file(engine.url)
    with _file_lock(path) if path is not None else nullcontext(), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        command.upgrade(alembic_config(conn), "head")
    log.info("store at the newest schema: %s", engine.url.render_as_string(hide_password=True))
