"""Seed a database with a plausible simulated fleet for dashboard tests and benchmarks.

Rows go straight into the tables the pipeline writes (asset, ingest_window,
temperature, feature_vector, prediction, dead_letter, alert, alert_state), so
a test gets days of history in a second. The bulk tables are generated in
SQL (generate_series); the few alert rows and states in Python, the states
through the alerter's own AssetAlertState so their JSON is the real format.

Each asset degrades linearly: its RUL falls one hour per hour and ends at a
value chosen by its index, so the fleet holds every severity at the end:

    index % 10 == 0  RUL 3 h   EMERGENCY      index % 10 == 1  RUL 12 h  CRITICAL
    index % 10 == 2  RUL 35 h  WARNING        index % 10 == 3  RUL 45 h  WARNING
                                              (no alert_state row: the level comes from the alerts)
    index % 10 == 7  healthy, but its data stops 3 h before the end (stale)
    otherwise        healthy (RUL 80 h and more)

Features rise as RUL falls, and so does what the predictions' explanations
name (top_features; spectral_kurtosis_x stands for a model input without an
engineer's phrase); about 1 window in 128 is missing (a sequence gap),
in every stage alike. Density: one window per asset every ``step_s`` seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cbm.settings import AlertingSettings
from services.alerter.levels import Channel, Level
from services.alerter.state import AssetAlertState, ChannelState

_ALERTING = AlertingSettings()  # the default thresholds the dashboards draw
THRESHOLDS = (
    (Level.WARNING, _ALERTING.warning_hours),
    (Level.CRITICAL, _ALERTING.critical_hours),
    (Level.EMERGENCY, _ALERTING.emergency_hours),
)
SITES = ("north-hall", "south-hall", "east-yard")
REASONS = ("bad_json", "missing_field", "non_finite", "duplicate", "stale_timestamp", "bad_frame")
MODEL_VERSION = "lstm-2024.06.1"
STALE_FOR = timedelta(hours=3)


@dataclass(frozen=True)
class Fleet:
    """What was seeded: the time span, the assets and their final RUL."""

    start: datetime
    end: datetime
    step: timedelta
    rul_end: dict[str, float]
    stale: tuple[str, ...]
    without_state: tuple[str, ...]
    alerts: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def assets(self) -> list[str]:
        return list(self.rul_end)


def final_rul(index: int) -> float:
    """Return the RUL (hours) asset number ``index`` ends with."""
    fixed = {0: 3.0, 1: 12.0, 2: 35.0, 3: 45.0}
    return fixed.get(index % 10, 80.0 + (index * 37) % 700)


def seed_fleet(
    conn: psycopg.Connection[Any],
    *,
    assets: int = 6,
    days: float = 3.0,
    step_s: int = 600,
    end: datetime | None = None,
    seed: int = 7,
) -> Fleet:
    """Fill the pipeline's tables with ``days`` of history for ``assets`` assets."""
    end = (end or datetime.now(UTC)).replace(microsecond=0)
    step = timedelta(seconds=step_s)
    start = end - timedelta(days=days)
    ids = [f"pump-{i:03d}" for i in range(assets)]
    rul_end = {asset: final_rul(i) for i, asset in enumerate(ids)}
    stale = tuple(a for i, a in enumerate(ids) if i % 10 == 7)
    without_state = tuple(a for i, a in enumerate(ids) if i % 10 == 3)
    params = {
        "ids": ids,
        "rul_end": [rul_end[a] for a in ids],
        "sites": [SITES[i % len(SITES)] for i in range(assets)],
        "stale": list(stale),
        "stale_for": STALE_FOR,
        "start": start,
        "end": end,
        "step": step,
        "model": MODEL_VERSION,
        "seed": (seed % 1000) / 1000.0,
    }
    rows: dict[str, int] = {}
    with conn.transaction():
        conn.execute("SELECT setseed(%(seed)s)", params)
        conn.execute(_SIM, params)
        for table, sql in _BULK.items():
            rows[table] = conn.execute(sql, params).rowcount
        rows["dead_letter"] = conn.execute(
            _DEAD_LETTERS,
            {**params, "n": max(10, int(assets * days * 3)), "reasons": list(REASONS)},
        ).rowcount
        conn.execute(_ASSETS, params)
        alerts = _seed_alerts(conn, rul_end, start=start, end=end, without_state=without_state)
        conn.execute("DROP TABLE sim")
    return Fleet(
        start=start,
        end=end,
        step=step,
        rul_end=rul_end,
        stale=stale,
        without_state=without_state,
        alerts=alerts,
        rows=rows,
    )


# One row per asset and window time; `rul` is the true RUL, the other tables add noise.
# The bulk inserts read it in its (time) order.
_SIM = """
CREATE TEMP TABLE sim ON COMMIT DROP AS
SELECT a.asset_id,
       t.time,
       (extract(epoch FROM t.time - %(start)s::timestamptz)
        / extract(epoch FROM %(step)s::interval))::bigint AS seq,
       a.rul_end + extract(epoch FROM %(end)s::timestamptz - t.time) / 3600.0 AS rul,
       random() > 0.05 AS running,
       t.time + (0.2 + 1.5 * random()) * interval '1 second' AS received_at
FROM unnest(%(ids)s::text[], %(rul_end)s::float8[]) AS a(asset_id, rul_end)
CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz, %(step)s::interval)
    AS t(time)
WHERE (hashtext(a.asset_id || t.time::text) & 127) <> 0
  AND NOT (a.asset_id = ANY(%(stale)s::text[])
           AND t.time > %(end)s::timestamptz - %(stale_for)s::interval)
-- Time order, as the pipeline writes: what BRIN indexes and chunks rely on.
ORDER BY t.time, a.asset_id
"""

_BULK = {
    "ingest_window": """
INSERT INTO ingest_window (asset_id, time, seq, received_at, sample_rate_hz, n_samples,
                           temperature_c, temperature_status)
SELECT asset_id, time, seq, received_at, 5000, 1000,
       CASE WHEN random() < 0.02 THEN 'NaN'::real
            ELSE 40 + 15 * exp(-rul / 60) + 2 * random() END,
       CASE WHEN random() < 0.02 THEN 'missing' ELSE 'span' END
FROM sim
""",
    "temperature": """
INSERT INTO temperature (asset_id, time, seq, temperature_c, received_at)
SELECT asset_id, time - interval '5 seconds', seq, 40 + 15 * exp(-rul / 60) + 2 * random(),
       received_at - interval '5 seconds'
FROM sim
""",
    "feature_vector": """
INSERT INTO feature_vector (asset_id, time, seq, received_at, computed_at, feature_set, running,
                            rms, peak, crest_factor, kurtosis, skewness,
                            env_bpfo, env_bpfi, env_bsf, env_ftf,
                            temperature_mean_c, temperature_std_c, temperature_slope_c_per_h,
                            shaft_hz, bpfo_hz, bpfi_hz, bsf_hz, ftf_hz,
                            sample_count, nan_share, clipping_share, flat_line)
SELECT asset_id, time, seq, received_at,
       received_at + (0.05 + 0.5 * random()) * interval '1 second', 'fs1', running,
       CASE WHEN running THEN 0.05 + 0.5 * exp(-rul / 50) + 0.01 * random() ELSE 0.001 END,
       CASE WHEN running THEN 0.2 + 2.5 * exp(-rul / 50) + 0.05 * random() ELSE 0.003 END,
       3 + 3 * exp(-rul / 40) + 0.2 * random(),
       3 + 10 * exp(-rul / 30) + 0.3 * random(),
       0.1 * (random() - 0.5),
       0.01 + 0.3 * exp(-rul / 40) + 0.005 * random(),
       0.008 + 0.1 * exp(-rul / 60) + 0.005 * random(),
       0.005 + 0.05 * exp(-rul / 80) + 0.005 * random(),
       0.004 + 0.002 * random(),
       40 + 15 * exp(-rul / 60) + random(), 0.3 + 0.2 * random(), 0.5 * (random() - 0.5),
       24.6, 88.2, 133.2, 57.9, 9.8,
       1000, 0, 0, 0
FROM sim
""",
    "prediction": """
INSERT INTO prediction (asset_id, time, received_at, created_at, rul_hours, rul_low, rul_high,
                        health_index, anomaly_score, running, model_version, top_features)
SELECT asset_id, time, received_at,
       received_at + (0.2 + 1.0 * random()) * interval '1 second',
       r, r * 0.8, r * 1.2 + 2,
       least(1.0, r / 500.0),
       0.5 + 3 * exp(-rul / 10) + 0.3 * random(),
       running, %(model)s,
       -- Explanations as inference writes them: none while stopped; the drivers
       -- (hours of RUL given back if healthy) change as the bearing wears.
       CASE WHEN NOT running THEN '[]'::jsonb
            WHEN rul > 300 THEN jsonb_build_array(
                jsonb_build_array('rms', round(2 + random()::numeric, 2)),
                jsonb_build_array('temperature_mean_c', round(1 + random()::numeric, 2)))
            WHEN rul > 50 THEN jsonb_build_array(
                jsonb_build_array('env_bpfo', round((400 / rul)::numeric, 2)),
                jsonb_build_array('rms', round((200 / rul)::numeric, 2)),
                jsonb_build_array('kurtosis', round((100 / rul)::numeric, 2)))
            ELSE jsonb_build_array(
                jsonb_build_array('env_bpfi', round((800 / (rul + 1))::numeric, 2)),
                jsonb_build_array('env_bpfo', round((300 / (rul + 1))::numeric, 2)),
                jsonb_build_array('spectral_kurtosis_x', 0.5))
       END
FROM (SELECT *, greatest(0.0, rul * (0.97 + 0.06 * random())) AS r FROM sim) noisy
""",
}

_DEAD_LETTERS = """
INSERT INTO dead_letter (time, stage, reason, detail, topic, asset_id, payload_size,
                         payload_excerpt)
SELECT %(start)s::timestamptz + random() * (%(end)s::timestamptz - %(start)s::timestamptz),
       CASE WHEN random() < 0.8 THEN 'ingest' ELSE 'features' END,
       (%(reasons)s::text[])[1 + floor(random() * array_length(%(reasons)s::text[], 1))::int],
       'seeded for the dashboards',
       'cbm/raw/' || a.asset_id || '/vibration',
       CASE WHEN random() < 0.9 THEN a.asset_id END,
       512, '\\x7b226261'::bytea
FROM generate_series(1, %(n)s) AS g(n)
CROSS JOIN LATERAL (
    SELECT (%(ids)s::text[])[1 + floor(random() * array_length(%(ids)s::text[], 1))::int]
           AS asset_id, g.n AS n
) AS a
"""

_ASSETS = """
INSERT INTO asset (asset_id, name, site, listed, first_seen, last_seen, last_received_at,
                   last_seq, windows_accepted, temperature_readings, dead_letters, gaps)
SELECT w.asset_id, 'Pump ' || right(w.asset_id, 3), s.site, true,
       w.first_seen, w.last_seen, w.last_received_at, w.last_seq, w.windows, w.windows,
       coalesce(d.dead, 0), w.last_seq + 1 - w.windows
FROM (SELECT asset_id, min(time) AS first_seen, max(time) AS last_seen,
             max(received_at) AS last_received_at, max(seq) AS last_seq, count(*) AS windows
      FROM sim GROUP BY asset_id) AS w
JOIN unnest(%(ids)s::text[], %(sites)s::text[]) AS s(asset_id, site) USING (asset_id)
LEFT JOIN (SELECT asset_id, count(*) AS dead FROM dead_letter GROUP BY asset_id) AS d
    USING (asset_id)
"""

_ALERT = """
INSERT INTO alert (key, receiver, asset_id, channel, kind, level, previous_level, episode,
                   episode_started_at, time, prediction_time, rul_hours, rul_low, rul_high,
                   anomaly_score, model_version, created_at, next_attempt_at, attempts,
                   last_error, delivered_at, failed_at, via, acked_by, acked_at)
VALUES (%(key)s, %(receiver)s, %(asset_id)s, %(channel)s, %(kind)s, %(level)s, %(previous)s,
        %(episode)s, %(episode_started_at)s, %(time)s, %(time)s, %(rul)s, %(rul)s * 0.8,
        %(rul)s * 1.2 + 2, %(anomaly)s, %(model)s, %(time)s, %(next_attempt_at)s, %(attempts)s,
        %(last_error)s, %(delivered_at)s, %(failed_at)s, %(via)s, %(acked_by)s, %(acked_at)s)
"""


def _seed_alerts(
    conn: psycopg.Connection[Any],
    rul_end: dict[str, float],
    *,
    start: datetime,
    end: datetime,
    without_state: tuple[str, ...],
) -> int:
    """Insert the RUL alerts the fleet's history implies, plus states; return the alert count."""
    rng = random.Random(11)
    count = 0
    newest: tuple[str, datetime] | None = None
    for index, (asset, rul) in enumerate(rul_end.items()):
        previous = Level.OK
        episode_start: datetime | None = None
        channel_state = ChannelState()
        for level, hours in THRESHOLDS:
            if rul >= hours:
                continue
            crossed = end - timedelta(hours=hours - rul)
            if crossed < start:
                previous = level
                continue
            episode_start = episode_start or crossed
            acked = level is Level.CRITICAL and index % 2 == 1
            receivers = ["slack"] + (["pagerduty"] if level is Level.EMERGENCY else [])
            for receiver in receivers:
                row = _alert_row(
                    asset, level, previous, crossed, episode_start, receiver, hours - 0.1
                )
                if acked:
                    row["acked_by"], row["acked_at"] = "alice", crossed + timedelta(minutes=20)
                conn.execute(_ALERT, {**row, "anomaly": 0.5 + rng.random(), "model": MODEL_VERSION})
                count += 1
            if newest is None or crossed > newest[1]:
                newest = (asset, crossed)
            channel_state = ChannelState(
                level=level,
                episode=1,
                episode_started_at=episode_start,
                acked_by="alice" if acked else None,
                acked_at=crossed + timedelta(minutes=20) if acked else None,
                last_sent_at=crossed,
            )
            previous = level
        if asset not in without_state:
            channels = {channel: ChannelState() for channel in Channel}
            channels[Channel.RUL] = channel_state
            state = AssetAlertState(asset_id=asset, channels=channels)
            conn.execute(
                "INSERT INTO alert_state (asset_id, state, version, updated_at) "
                "VALUES (%s, %s, 1, %s)",
                (asset, Jsonb(state.to_dict()), end),
            )
    if newest is not None:
        # The newest notification is still on its way: one receiver failing, retried.
        conn.execute(
            "UPDATE alert SET delivered_at = NULL, attempts = 3, last_error = 'HTTP 503', "
            "next_attempt_at = %s WHERE asset_id = %s AND time = %s AND receiver = 'slack'",
            (end + timedelta(minutes=1), *newest),
        )
        # And one PagerDuty notification that failed for good.
        conn.execute(
            "UPDATE alert SET delivered_at = NULL, failed_at = time + interval '10 minutes', "
            "attempts = 20, last_error = 'HTTP 400: invalid routing key' "
            "WHERE id = (SELECT min(id) FROM alert WHERE receiver = 'pagerduty')"
        )
    return count


def _alert_row(
    asset: str,
    level: Level,
    previous: Level,
    time: datetime,
    episode_start: datetime,
    receiver: str,
    rul: float,
) -> dict[str, Any]:
    kind = "raise" if previous is Level.OK else "escalate"
    return {
        "key": f"{asset}:rul:1:{kind}:{level.name}:{time.isoformat()}",
        "receiver": receiver,
        "asset_id": asset,
        "channel": "rul",
        "kind": kind,
        "level": level.name,
        "previous": previous.name,
        "episode": 1,
        "episode_started_at": episode_start,
        "time": time,
        "rul": rul,
        "next_attempt_at": time,
        "attempts": 1,
        "last_error": None,
        "delivered_at": time + timedelta(seconds=2),
        "failed_at": None,
        "via": "webhook" if receiver == "slack" else "events_v2",
        "acked_by": None,
        "acked_at": None,
    }
