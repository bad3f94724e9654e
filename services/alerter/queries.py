"""The SQL behind ``cbm alerts``: states and recent outbox rows, acknowledgement requests.

The command never writes a state itself: it records an acknowledgement request
on the asset's row and reads back the answer the running alerter writes
(see :mod:`services.alerter.cli`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from cbm import tables
from services.alerter.levels import CHANNELS
from services.alerter.state import AssetAlertState

Conn = psycopg.Connection[Any]


def list_states(conn: Conn) -> list[tuple[AssetAlertState, str | None, str | None]]:
    """Return every asset's state with the pending or last ack request's answer."""
    found = []
    for doc, by, result in conn.execute(
        f"SELECT state, ack_by, ack_result FROM {tables.ALERT_STATE} ORDER BY asset_id"
    ):
        found.append((AssetAlertState.from_dict(doc), by, result))
    return found


def recent_alerts(conn: Conn, asset_id: str, limit: int) -> list[tuple[Any, ...]]:
    """Return the asset's latest outbox rows, newest first."""
    return conn.execute(
        f"""SELECT time, channel, kind, level, episode, receiver, attempts,
                   delivered_at, failed_at, last_error, acked_by
            FROM {tables.ALERT} WHERE asset_id = %s ORDER BY id DESC LIMIT %s""",
        (asset_id, limit),
    ).fetchall()


def request_ack(
    conn: Conn, asset_id: str, by: str
) -> tuple[AssetAlertState | None, datetime | None]:
    """Ask the alerter to acknowledge an asset's active alerts; return the state seen.

    The request is only written when something is active. The returned time
    identifies the request for :func:`ack_answer`.
    """
    with conn.transaction():
        found = conn.execute(
            f"SELECT state FROM {tables.ALERT_STATE} WHERE asset_id = %s FOR UPDATE", (asset_id,)
        ).fetchone()
        if found is None:
            return None, None
        state = AssetAlertState.from_dict(found[0])
        if not any(state.channel(c).active for c in CHANNELS):
            return state, None
        requested = conn.execute(
            f"""UPDATE {tables.ALERT_STATE}
                SET ack_by = %s, ack_requested_at = clock_timestamp(),
                    ack_applied_at = NULL, ack_result = NULL
                WHERE asset_id = %s RETURNING ack_requested_at""",
            (by, asset_id),
        ).fetchone()
    assert requested is not None
    return state, requested[0]


def ack_answer(conn: Conn, asset_id: str, requested_at: datetime) -> str | None:
    """Return the alerter's answer to an ack request, or None while it is pending."""
    with conn.transaction():
        found = conn.execute(
            f"""SELECT ack_result FROM {tables.ALERT_STATE}
                WHERE asset_id = %s AND ack_requested_at = %s AND ack_applied_at IS NOT NULL""",
            (asset_id, requested_at),
        ).fetchone()
    return None if found is None else str(found[0])
