"""Alembic environment of the station store.

The store runs migrations in code (``station.store.engine.migrate``) and hands over its connection in
``config.attributes["connection"]``; no alembic.ini is needed. To write a new numbered migration::

    from station.store.engine import alembic_config
    from alembic import command
    cfg = alembic_config(); cfg.set_main_option("sqlalchemy.url", "sqlite:///var/dev.db")
    command.revision(cfg, "what changed", autogenerate=True, rev_id="0002")
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from station.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: no connection and no sqlalchemy.url; set_main_option('sqlalchemy.url', …)")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    _run_online()
