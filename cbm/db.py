"""Open connections and pools to PostgreSQL from the settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from cbm.settings import DatabaseSettings, Settings

# What a database outage looks like to a caller: back off and try again.
TRANSIENT_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


def conninfo(settings: Settings) -> str:
    """Return the connection string; the password comes from the secrets."""
    extra: dict[str, str] = {}
    password = settings.secrets.database_password
    if password is not None:
        extra["password"] = password.get_secret_value()
    return psycopg.conninfo.make_conninfo(settings.database.url, **extra)


def connect(
    settings: Settings, *, autocommit: bool = False
) -> psycopg.Connection[tuple[object, ...]]:
    """Open one connection (for commands and migrations)."""
    return psycopg.connect(
        conninfo(settings),
        autocommit=autocommit,
        options=_options(settings.database),
    )


def open_pool(
    settings: Settings,
    *,
    name: str,
    configure: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> ConnectionPool:
    """Open a pool whose connections are checked before each use.

    ``configure`` runs once on every new connection (and must leave it idle,
    i.e. commit what it did): the place for per-session setup such as a
    staging table, instead of repeating it in every transaction.

    ``open=True`` waits for the first connection only up to ``timeout``; when
    the database is down the worker starts anyway and its writes retry.

    No wait here outlasts the worker's back-off ceiling (``worker.retry_max_s``).
    Left alone, the pool retries a lost connection with a pause that doubles
    for up to 5 minutes, and a worker waits up to 30 s for a connection: after
    a 20 s outage the pipeline resumed 9-10 s after the database was back, and
    the lag grows with the outage. With both bounded, a series of reconnects
    ends after ``retry_max_s`` and the worker's next request starts a new one
    at a 1 s pause (the same outage: resumed within a second).
    """
    db = settings.database
    pool = ConnectionPool(
        conninfo(settings),
        min_size=db.pool_min,
        max_size=max(db.pool_min, db.pool_max),
        kwargs={"options": _options(db), "application_name": f"cbm-{name}"},
        check=ConnectionPool.check_connection,
        configure=configure,
        timeout=settings.worker.retry_max_s,
        reconnect_timeout=settings.worker.retry_max_s,
        name=name,
        open=False,
    )
    pool.open(wait=False)
    return pool


def _options(db: DatabaseSettings) -> str:
    return f"-c statement_timeout={db.statement_timeout_ms}"
