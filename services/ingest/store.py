"""Ingest's SQL: idempotent batched writes and the state it reloads at start."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg

from cbm import tables
from cbm.messages import RawTemperature, Window, to_micros
from cbm.settings import AssetSettings
from services.ingest.core import AssetTally, IngestState, temperature_horizon_s

# Windows and readings go in with ON CONFLICT DO NOTHING, and the asset's
# counters grow only by the rows that were really inserted (RETURNING), so a
# redelivered batch leaves every count exact.
_INSERT_DATA = f"""
WITH new_window AS (
    INSERT INTO {tables.INGEST_WINDOW}
        (asset_id, time, seq, received_at, sample_rate_hz, n_samples,
         temperature_c, temperature_status)
    SELECT * FROM unnest(%(w_asset)b::text[], %(w_time)b::timestamptz[], %(w_seq)b::bigint[],
                         %(w_received)b::timestamptz[], %(w_rate)b::real[], %(w_n)b::int[],
                         %(w_temp)b::real[], %(w_status)b::text[])
    ON CONFLICT DO NOTHING
    RETURNING asset_id, time
), new_temperature AS (
    INSERT INTO {tables.TEMPERATURE} (asset_id, time, seq, temperature_c, received_at)
    SELECT * FROM unnest(%(t_asset)b::text[], %(t_time)b::timestamptz[], %(t_seq)b::bigint[],
                         %(t_value)b::real[], %(t_received)b::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING asset_id
), delta AS (
    SELECT asset_id, count(time) AS windows, count(*) - count(time) AS readings,
           min(time) AS first_seen, max(time) AS last_seen
    FROM (SELECT asset_id, time FROM new_window
          UNION ALL SELECT asset_id, NULL::timestamptz FROM new_temperature) AS inserted
    GROUP BY asset_id
)
INSERT INTO {tables.ASSET} AS a
    (asset_id, name, windows_accepted, temperature_readings, first_seen, last_seen)
SELECT asset_id, asset_id, windows, readings, first_seen, last_seen FROM delta
ON CONFLICT (asset_id) DO UPDATE SET
    windows_accepted = a.windows_accepted + excluded.windows_accepted,
    temperature_readings = a.temperature_readings + excluded.temperature_readings,
    first_seen = least(a.first_seen, excluded.first_seen),
    last_seen = greatest(a.last_seen, excluded.last_seen),
    updated_at = now()
"""

_UPDATE_TALLY = f"""
INSERT INTO {tables.ASSET} AS a (asset_id, name, gaps, last_seq, dead_letters, last_received_at)
SELECT asset_id, asset_id, gaps, last_seq, dead, received
FROM unnest(%(asset)b::text[], %(gaps)b::bigint[], %(last_seq)b::bigint[], %(dead)b::bigint[],
            %(received)b::timestamptz[]) AS t(asset_id, gaps, last_seq, dead, received)
ON CONFLICT (asset_id) DO UPDATE SET
    gaps = a.gaps + excluded.gaps,
    last_seq = coalesce(excluded.last_seq, a.last_seq),
    dead_letters = a.dead_letters + excluded.dead_letters,
    last_received_at = greatest(a.last_received_at, excluded.last_received_at),
    updated_at = now()
"""


def write_batch(
    conn: psycopg.Connection[Any],
    windows: Sequence[Window],
    temperatures: Sequence[RawTemperature],
    tallies: dict[str, AssetTally],
) -> None:
    """Write one batch's windows, readings and asset bookkeeping (caller's transaction)."""
    params: dict[str, Any] = {
        "w_asset": [w.asset_id for w in windows],
        "w_time": [w.time for w in windows],
        "w_seq": [w.seq for w in windows],
        "w_received": [w.received_at for w in windows],
        "w_rate": [w.sample_rate_hz for w in windows],
        "w_n": [int(w.samples.size) for w in windows],
        "w_temp": [None if math.isnan(w.temperature_c) else w.temperature_c for w in windows],
        "w_status": [w.temperature_status.value for w in windows],
        "t_asset": [t.asset_id for t in temperatures],
        "t_time": [t.time for t in temperatures],
        "t_seq": [t.seq for t in temperatures],
        "t_value": [t.temperature_c for t in temperatures],
        "t_received": [t.received_at for t in temperatures],
    }
    names = sorted(tallies)
    tally_params: dict[str, Any] = {
        "asset": names,
        "gaps": [tallies[n].gaps for n in names],
        "last_seq": [tallies[n].last_seq for n in names],
        "dead": [tallies[n].dead_letters for n in names],
        "received": [tallies[n].last_received_at for n in names],
    }
    with conn.pipeline(), conn.cursor() as cur:
        if windows or temperatures:
            cur.execute(_INSERT_DATA, params)
        if names:
            cur.execute(_UPDATE_TALLY, tally_params)


def register_assets(conn: psycopg.Connection[Any], assets: Iterable[AssetSettings]) -> None:
    """Upsert the listed assets' names and sites."""
    rows = [(a.id, a.name or a.id, a.site) for a in assets]
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            f"""INSERT INTO {tables.ASSET} AS a (asset_id, name, site, listed)
                VALUES (%s, %s, %s, true)
                ON CONFLICT (asset_id) DO UPDATE
                SET name = excluded.name, site = excluded.site, listed = true""",
            rows,
        )


def load_state(
    conn: psycopg.Connection[Any], state: IngestState, *, now: datetime, max_age_s: float
) -> None:
    """Reload what a restarted ingest needs: last sequence numbers, recent temperatures."""
    for asset_id, last_seq, last_seen in conn.execute(
        f"SELECT asset_id, last_seq, last_seen FROM {tables.ASSET} WHERE last_seq IS NOT NULL"
    ):
        track = state.track(str(asset_id))
        track.last_seq = int(str(last_seq))
        if isinstance(last_seen, datetime):
            track.last_time_us = to_micros(last_seen)
    horizon_s = temperature_horizon_s(max_age_s)
    horizon_us = round(horizon_s * 1_000_000)
    since = now - timedelta(seconds=horizon_s)
    for asset_id, time, value in conn.execute(
        f"SELECT asset_id, time, temperature_c FROM {tables.TEMPERATURE} "
        "WHERE time > %s ORDER BY time",
        (since,),
    ):
        assert isinstance(time, datetime)
        state.track(str(asset_id)).add_temperature(to_micros(time), float(str(value)), horizon_us)
