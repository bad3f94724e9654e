"""The alert worker's SQL: per-asset state rows, acknowledgements applied, the alert outbox.

The worker loop and housekeeping (:mod:`services.alerter.stage`) load, save and
version the states and write outbox rows; the delivery loop
(:mod:`services.alerter.delivery`) claims the rows and records how sending went.
The facts a message quotes are in :mod:`services.alerter.facts`, the
``cbm alerts`` queries in :mod:`services.alerter.queries`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from cbm import tables
from services.alerter.levels import Channel, Kind, Level
from services.alerter.outbox import (
    AlertRow,
    Failed,
    Outcome,
    PendingAlert,
    Receiver,
    Retry,
    Routing,
    Sent,
    routes,
)
from services.alerter.state import AssetAlertState, ChannelState

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Tracked:
    """An asset's alert state with its version (bumped on every change)."""

    state: AssetAlertState
    version: int


@dataclass(frozen=True)
class AckRequest:
    """An acknowledgement asked for by ``cbm alerts ack`` and not applied yet."""

    asset_id: str
    by: str
    requested_at: datetime


# -- state -------------------------------------------------------------------


def load_states(conn: Conn) -> dict[str, Tracked]:
    """Return every asset's persisted state and version."""
    found: dict[str, Tracked] = {}
    rows = conn.execute(f"SELECT asset_id, state, version FROM {tables.ALERT_STATE}").fetchall()
    for asset_id, doc, version in rows:
        try:
            state = AssetAlertState.from_dict(doc)
        except ValueError as exc:
            # Starting this asset afresh beats refusing to alert on every asset;
            # episode numbers carry on so new alerts do not collide with old keys.
            log.error("alert state of %s is unreadable (%s); starting it afresh", asset_id, exc)
            state = _fresh_state(conn, str(asset_id))
        found[str(asset_id)] = Tracked(state, int(version))
    return found


def _fresh_state(conn: Conn, asset_id: str) -> AssetAlertState:
    episodes = dict(
        conn.execute(
            f"""SELECT channel, max(episode) FROM {tables.ALERT}
                WHERE asset_id = %s GROUP BY channel""",
            (asset_id,),
        ).fetchall()
    )
    channels = {c: ChannelState(episode=int(episodes.get(c.value) or 0)) for c in Channel}
    return AssetAlertState(asset_id=asset_id, channels=channels)


def save_states(conn: Conn, states: Mapping[str, Tracked]) -> None:
    """Upsert states; a row never goes back to an older version."""
    if not states:
        return
    # One statement for the batch, the documents serialised by orjson into one
    # JSON parameter: an executemany of per-row upserts with the stdlib JSON
    # encoder took half of the alerter's time per prediction. Sorted: one lock
    # order for every writer.
    rows = [{"a": a, "v": t.version, "d": t.state.to_dict()} for a, t in sorted(states.items())]
    conn.execute(
        f"""INSERT INTO {tables.ALERT_STATE} AS s (asset_id, state, version, updated_at)
            SELECT r.a, r.d, r.v, now()
            FROM jsonb_to_recordset(%s::jsonb) AS r(a text, d jsonb, v bigint)
            ON CONFLICT (asset_id) DO UPDATE
            SET state = excluded.state, version = excluded.version, updated_at = now()
            WHERE s.version < excluded.version""",
        (orjson.dumps(rows).decode(),),
    )


def read_versions(conn: Conn) -> tuple[dict[str, int], list[AckRequest]]:
    """Return every asset's committed version, and the acknowledgements waiting."""
    versions: dict[str, int] = {}
    acks: list[AckRequest] = []
    for asset_id, version, by, requested, applied in conn.execute(
        f"""SELECT asset_id, version, ack_by, ack_requested_at, ack_applied_at
            FROM {tables.ALERT_STATE}"""
    ):
        versions[str(asset_id)] = int(version)
        if isinstance(requested, datetime) and applied is None:
            acks.append(AckRequest(str(asset_id), str(by), requested))
    return versions, acks


def finish_ack(conn: Conn, request: AckRequest, result: str) -> None:
    """Record the answer to an acknowledgement request (unless a newer one replaced it)."""
    conn.execute(
        f"""UPDATE {tables.ALERT_STATE} SET ack_applied_at = now(), ack_result = %s
            WHERE asset_id = %s AND ack_requested_at = %s""",
        (result, request.asset_id, request.requested_at),
    )


def mark_acked(conn: Conn, asset_id: str, channel: Channel, episode: int, by: str) -> None:
    """Note the acknowledgement on the episode's alert rows (for people reading the table)."""
    conn.execute(
        f"""UPDATE {tables.ALERT} SET acked_by = %s, acked_at = now()
            WHERE asset_id = %s AND channel = %s AND episode = %s AND acked_at IS NULL""",
        (by, asset_id, channel.value, episode),
    )


# -- outbox: writing ------------------------------------------------------------

# The kinds that close an episode, as SQL literals (from Kind.ends_episode).
_ENDING = ", ".join(f"'{k.value}'" for k in Kind if k.ends_episode)
_INSERT_ALERT = f"""
INSERT INTO {tables.ALERT}
    (key, receiver, asset_id, channel, kind, level, previous_level, episode,
     episode_started_at, time, prediction_time, rul_hours, rul_low, rul_high,
     anomaly_score, model_version, top_features)
SELECT %(key)s, %(receiver)s, %(asset_id)s, %(channel)s, %(kind)s, %(level)s,
       %(previous_level)s, %(episode)s, %(episode_started_at)s, %(time)s,
       %(prediction_time)s, %(rul_hours)s, %(rul_low)s, %(rul_high)s,
       %(anomaly_score)s, %(model_version)s, %(top_features)s
WHERE NOT %(needs_incident)s OR EXISTS (
    SELECT 1 FROM {tables.ALERT}
    WHERE asset_id = %(asset_id)s AND channel = %(channel)s AND episode = %(episode)s
      AND receiver = 'pagerduty' AND kind NOT IN ({_ENDING}))
ON CONFLICT (key, receiver) DO NOTHING
"""


def insert_alerts(conn: Conn, alerts: Sequence[PendingAlert], routing: Routing) -> None:
    """Write the outbox rows of notifications, in order; a repeated key is skipped."""
    params: list[dict[str, Any]] = []
    for alert in alerts:
        n = alert.notification
        for route in routes(alert, routing):
            params.append(
                {
                    "key": n.key,
                    "receiver": route.receiver.value,
                    "asset_id": n.asset_id,
                    "channel": n.channel.value,
                    "kind": n.kind.value,
                    "level": n.level.name,
                    "previous_level": n.previous_level.name,
                    "episode": n.episode,
                    "episode_started_at": alert.episode_started_at,
                    "time": n.time,
                    "prediction_time": alert.prediction_time,
                    "rul_hours": n.rul_hours,
                    "rul_low": n.rul_low,
                    "rul_high": n.rul_high,
                    "anomaly_score": n.anomaly_score,
                    "model_version": n.model_version,
                    "top_features": Jsonb([list(t) for t in alert.top_features]),
                    "needs_incident": route.needs_incident,
                }
            )
    if params:
        with conn.cursor() as cur:
            # executemany runs them in order: a resolve sees its episode's trigger row.
            cur.executemany(_INSERT_ALERT, params)


# -- outbox: delivering -----------------------------------------------------------

_ROW_COLUMNS = """a.id, a.key, a.receiver, a.asset_id, a.channel, a.kind, a.level,
    a.previous_level, a.episode, a.episode_started_at, a.time, a.prediction_time,
    a.rul_hours, a.rul_low, a.rul_high, a.anomaly_score, a.model_version,
    a.top_features, a.attempts"""

# The oldest due row whose asset has nothing older pending at the same receiver:
# a raise is never overtaken by its own resolve, even while the raise waits for
# a retry. SKIP LOCKED lets several delivery loops share the table.
_CLAIM = f"""
SELECT {_ROW_COLUMNS} FROM {tables.ALERT} AS a
WHERE a.delivered_at IS NULL AND a.failed_at IS NULL AND a.next_attempt_at <= now()
  AND NOT EXISTS (
    SELECT 1 FROM {tables.ALERT} AS b
    WHERE b.asset_id = a.asset_id AND b.receiver = a.receiver AND b.id < a.id
      AND b.delivered_at IS NULL AND b.failed_at IS NULL)
ORDER BY a.id
LIMIT 1
FOR UPDATE OF a SKIP LOCKED
"""


def claim_next(conn: Conn) -> AlertRow | None:
    """Lock and return the next row to deliver (inside the caller's transaction)."""
    found = conn.execute(_CLAIM).fetchone()
    return None if found is None else _alert_row(found)


def _alert_row(r: Sequence[Any]) -> AlertRow:
    return AlertRow(
        id=int(r[0]),
        key=str(r[1]),
        receiver=Receiver(r[2]),
        asset_id=str(r[3]),
        channel=Channel(r[4]),
        kind=Kind(r[5]),
        level=Level[r[6]],
        previous_level=Level[r[7]],
        episode=int(r[8]),
        episode_started_at=r[9],
        time=r[10],
        prediction_time=r[11],
        rul_hours=float(r[12]),
        rul_low=float(r[13]),
        rul_high=float(r[14]),
        anomaly_score=float(r[15]),
        model_version=str(r[16]),
        top_features=tuple((str(name), float(w)) for name, w in r[17] or ()),
        attempts=int(r[18]),
    )


def record_outcome(
    conn: Conn, row: AlertRow, outcome: Outcome, *, max_attempts: int, backoff_s: float
) -> None:
    """Write how a delivery attempt went: delivered, to be retried, or failed for good.

    A delivered row keeps the error of its last failed attempt, as a record of
    why it was late.
    """
    attempts = row.attempts + 1
    if isinstance(outcome, Sent):
        conn.execute(
            f"""UPDATE {tables.ALERT}
                SET delivered_at = clock_timestamp(), attempts = %s, via = %s,
                    last_error = coalesce(%s, last_error),
                    slack_channel = %s, slack_ts = %s, slack_thread_ts = %s
                WHERE id = %s""",
            (
                attempts,
                outcome.via,
                outcome.note,
                outcome.slack_channel,
                outcome.slack_ts,
                outcome.slack_thread_ts,
                row.id,
            ),
        )
        return
    if isinstance(outcome, Retry) and attempts < max_attempts:
        delay = outcome.after_s if outcome.after_s is not None else backoff_s
        conn.execute(
            f"""UPDATE {tables.ALERT}
                SET attempts = %s, last_error = %s,
                    next_attempt_at = clock_timestamp() + make_interval(secs => %s)
                WHERE id = %s""",
            (attempts, outcome.error, delay, row.id),
        )
        return
    error = outcome.error
    if isinstance(outcome, Retry):
        error = f"{error} (gave up after {attempts} attempts)"
    elif isinstance(outcome, Failed):
        error = f"{error} (permanent)"
    conn.execute(
        f"""UPDATE {tables.ALERT}
            SET attempts = %s, last_error = %s, failed_at = clock_timestamp() WHERE id = %s""",
        (attempts, error, row.id),
    )


def slack_anchor(conn: Conn, row: AlertRow) -> tuple[str, str] | None:
    """Return (channel, ts) of the episode's first top-level Slack message, if any."""
    found = conn.execute(
        f"""SELECT slack_channel, slack_ts FROM {tables.ALERT}
            WHERE asset_id = %s AND channel = %s AND episode = %s AND receiver = 'slack'
              AND slack_ts IS NOT NULL AND slack_thread_ts IS NULL AND id <> %s
            ORDER BY id LIMIT 1""",
        (row.asset_id, row.channel.value, row.episode, row.id),
    ).fetchone()
    return None if found is None else (str(found[0]), str(found[1]))
