"""The facts an alert message quotes, read from other stages' tables: RUL trend, feature levels.

Each query runs in a savepoint and is optional: a missing table or column, or a
failing query, leaves its line out of the message rather than holding up the
delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from cbm import tables
from services.alerter.message import SHIFT_FEATURES, Trend

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
T = TypeVar("T")

_BASELINE_ROWS = 20  # the asset's earliest feature vectors: its healthy baseline
_LATEST_ROWS = 5  # averaged, so one noisy window does not make the headline
_TREND_SPAN = timedelta(hours=24)
_TREND_MIN_SPAN = timedelta(minutes=15)


def trend(conn: Conn, asset_id: str, at: datetime, rul_now: float) -> Trend | None:
    """Return RUL about a day before ``at`` (or the oldest within the day) against now."""

    def query() -> Trend | None:
        if not _table_exists(conn, tables.PREDICTION):
            return None
        then = conn.execute(
            f"""SELECT time, rul_hours FROM {tables.PREDICTION}
                WHERE asset_id = %s AND time <= %s ORDER BY time DESC LIMIT 1""",
            (asset_id, at - _TREND_SPAN),
        ).fetchone()
        if then is None or then[0] < at - _TREND_SPAN * 1.5:
            then = conn.execute(
                f"""SELECT time, rul_hours FROM {tables.PREDICTION}
                    WHERE asset_id = %s AND time > %s AND time < %s ORDER BY time LIMIT 1""",
                (asset_id, at - _TREND_SPAN, at),
            ).fetchone()
        if then is None or at - then[0] < _TREND_MIN_SPAN:
            return None
        return Trend(then_time=then[0], then_rul=float(then[1]), now_time=at, now_rul=rul_now)

    return _optional(conn, "trend", query)


def feature_levels(
    conn: Conn, asset_id: str, at: datetime
) -> tuple[dict[str, float | None], dict[str, float | None]] | None:
    """Return the asset's baseline (earliest rows) and latest feature averages.

    Only the columns that exist are read: the feature table is another stage's
    and may be missing or older than this code.
    """

    def query() -> tuple[dict[str, float | None], dict[str, float | None]] | None:
        present = {
            str(name)
            for (name,) in conn.execute(
                """SELECT column_name FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = %s""",
                (tables.FEATURE_VECTOR,),
            )
        }
        wanted = [c for c in SHIFT_FEATURES if c in present]
        if not wanted or not {"asset_id", "time"} <= present:
            return None
        averages = sql.SQL(", ").join(
            sql.SQL("avg({})::float8").format(sql.Identifier(c)) for c in wanted
        )
        picked = sql.SQL(", ").join(sql.Identifier(c) for c in wanted)
        table = sql.Identifier(tables.FEATURE_VECTOR)
        # A machine at rest vibrates less: compare running windows only.
        running = sql.SQL(" AND running" if "running" in present else "")
        levels = []
        for order, limit in ((sql.SQL("ASC"), _BASELINE_ROWS), (sql.SQL("DESC"), _LATEST_ROWS)):
            query = sql.SQL(
                "SELECT count(*), {averages} FROM (SELECT {picked} FROM {table}"
                " WHERE asset_id = %s AND time <= %s{running} ORDER BY time {order} LIMIT %s) AS w"
            ).format(averages=averages, picked=picked, table=table, running=running, order=order)
            found = conn.execute(query, (asset_id, at, limit)).fetchone()
            if found is None or int(found[0]) == 0:
                return None
            levels.append(
                {
                    c: (None if v is None else float(v))
                    for c, v in zip(wanted, found[1:], strict=True)
                }
            )
        return levels[0], levels[1]

    return _optional(conn, "feature baseline", query)


def _table_exists(conn: Conn, name: str) -> bool:
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(found and found[0])


def _optional(conn: Conn, what: str, query: Callable[[], T]) -> T | None:
    # A savepoint, so a failing query costs the message one line, not the delivery.
    try:
        with conn.transaction():
            return query()
    except psycopg.Error as exc:
        if conn.broken:
            raise
        log.warning("left the %s out of an alert message: %s", what, exc)
        return None
