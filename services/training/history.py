"""Turn the database's history into a feature table: feature rows labelled by recorded failures.

The fleet's own record is two tables: ``feature_vector`` (one row per window,
written by the features stage) and ``maintenance_event`` (failures, repairs,
replacements, written by people or by the simulator). Each machine's rows fall
into *lives*, cut by its failure, repair and replacement events: a row at or
before an event belongs to the life the event ends, a row after it to the
next life. A life that ends in a failure is labelled with the time left to
that failure (RUL, in hours); any other life is right-censored, since the
machine never failed while we watched it.

Censored lives are left out by default. With ``include_censored`` a censored
row is kept only when the machine is known to have run at least ``cap_hours``
longer (the last time it was seen, or the repair or replacement that ended the
life), where the capped target is known exactly; it is labelled ``inf``, like
a simulated healthy control.

Event time is wall-clock time. ``hours_per_second`` says how many RUL hours
pass per second of it: 1/3600 for a plant, ``speedup / 3600`` for data the
live simulator published with ``--speedup``.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from cbm import tables
from cbm.errors import ModelError
from cbm.maintenance import RESET_KINDS
from cbm.messages import from_micros, to_micros
from cbm.settings import FeaturesSettings
from services.features.extract import FEATURE_NAMES, FEATURE_SET_VERSION
from services.prognostics.events import EventKind
from services.prognostics.store import list_events
from services.training.dataset import FeatureTable, FleetConfig, concat_tables, simulate_table

LIFE_SEPARATOR: Final = "#"
FAILURE_KINDS: Final = (EventKind.FAILURE,)
# The kinds inference and the alerter also start a new life at (cbm.maintenance).
NEW_LIFE_KINDS: Final = tuple(EventKind(kind) for kind in RESET_KINDS)
FETCH_ROWS: Final = 20_000
_US_PER_S: Final = 1_000_000

Connect = Callable[[], psycopg.Connection[Any]]


def life_id(asset_id: str, life: int) -> str:
    """Return the unit id of one life of a machine, e.g. ``pump-1#2`` (lives count from 1)."""
    return f"{asset_id}{LIFE_SEPARATOR}{life}"


def machine_of(unit_id: str) -> str:
    """Return the machine of a recorded life (``pump-1#2`` -> ``pump-1``)."""
    return unit_id.rsplit(LIFE_SEPARATOR, 1)[0]


def is_life_id(unit_id: str) -> bool:
    """Return whether ``unit_id`` names a recorded life (asset ids never hold the separator)."""
    return LIFE_SEPARATOR in unit_id


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryConfig:
    """How to read and label the database's history."""

    hours_per_second: float = 1 / 3600
    include_censored: bool = False
    with_simulated: int = 0  # simulated assets added to the recorded lives

    def __post_init__(self) -> None:
        if not (np.isfinite(self.hours_per_second) and self.hours_per_second > 0):
            raise ValueError(f"hours_per_second must be > 0, got {self.hours_per_second!r}")
        if self.with_simulated < 0:
            raise ValueError(f"with_simulated must be >= 0, got {self.with_simulated}")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Labels:
    """The labelling of rows grouped by asset and in time order within each asset."""

    unit_id: npt.NDArray[np.str_]  # the life each row belongs to
    rul_hours: npt.NDArray[np.float64]  # inf: censored
    keep: npt.NDArray[np.bool_]  # rows that go into the table
    failed_lives: int
    censored_lives: int
    censored_rows: int  # rows of censored lives (kept or not)


def label_lives(
    asset_ids: npt.NDArray[np.str_],
    time_us: npt.NDArray[np.int64],
    events: dict[str, list[tuple[int, EventKind]]],
    *,
    hours_per_second: float,
    include_censored: bool = False,
    cap_hours: float = np.inf,
) -> Labels:
    """Label rows with their life and RUL; rows must be grouped by asset, in time order within.

    ``events`` holds per asset its (time in µs, kind) failure, repair and
    replacement events. Pure: no database, no clock.
    """
    n = asset_ids.size
    units = np.empty(n, dtype=object)
    rul = np.full(n, np.inf)
    keep = np.zeros(n, dtype=bool)
    failed = censored = censored_rows = 0
    changes = np.flatnonzero(asset_ids[1:] != asset_ids[:-1]) + 1
    starts: list[int] = [0, *changes.tolist()] if n else []
    for start, stop in zip(starts, [*starts[1:], n], strict=True):
        asset = str(asset_ids[start])
        times = time_us[start:stop]
        ends = sorted(events.get(asset, []))
        end_times = np.array([t for t, _ in ends], dtype=np.int64)
        # Life k (from 1) holds the rows after event k-1 up to and including event k.
        life = np.searchsorted(end_times, times, side="left")
        for index in np.unique(life):
            rows = np.flatnonzero(life == index) + start
            units[rows] = life_id(asset, int(index) + 1)
            end = ends[index] if index < len(ends) else None
            if end is not None and end[1] in FAILURE_KINDS:
                failed += 1
                rul[rows] = (end[0] - time_us[rows]) / _US_PER_S * hours_per_second
                keep[rows] = True
                continue
            censored += 1
            censored_rows += rows.size
            if include_censored:
                seen_until = end[0] if end is not None else int(time_us[rows[-1]])
                known = (seen_until - time_us[rows]) / _US_PER_S * hours_per_second
                keep[rows] = known >= cap_hours
    return Labels(
        unit_id=units.astype(str) if n else np.empty(0, dtype="<U1"),
        rul_hours=rul,
        keep=keep,
        failed_lives=failed,
        censored_lives=censored,
        censored_rows=censored_rows,
    )


def read_events(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[int, EventKind]]]:
    """Return per asset the events that end a life, as (time in µs, kind): one query."""
    out: dict[str, list[tuple[int, EventKind]]] = defaultdict(list)
    for event in list_events(conn, kinds=(*FAILURE_KINDS, *NEW_LIFE_KINDS)):
        out[event.asset_id].append((to_micros(event.time), event.kind))
    return dict(out)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FeatureRows:
    """Every stored feature row of one feature set, grouped by asset and in time order."""

    asset_id: npt.NDArray[np.str_]
    time_us: npt.NDArray[np.int64]
    running: npt.NDArray[np.bool_]
    values: npt.NDArray[np.float64]


def read_feature_rows(
    conn: psycopg.Connection[Any], *, feature_set: str = FEATURE_SET_VERSION
) -> FeatureRows:
    """Read ``feature_vector`` in one query through a server-side cursor, in chunks."""
    values = sql.SQL(", ").join(
        sql.SQL("coalesce({}, 'NaN')").format(sql.Identifier(name)) for name in FEATURE_NAMES
    )
    query = sql.SQL(
        "SELECT asset_id, (extract(epoch FROM time) * 1000000)::bigint, running, {values}"
        " FROM {table} WHERE feature_set = %s ORDER BY asset_id, time"
    ).format(values=values, table=sql.Identifier(tables.FEATURE_VECTOR))
    ids: list[str] = []
    times: list[npt.NDArray[np.int64]] = []
    running: list[npt.NDArray[np.bool_]] = []
    blocks: list[npt.NDArray[np.float64]] = []
    with conn.transaction(), conn.cursor(name="cbm_training_history") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(query, (feature_set,))
        while chunk := cur.fetchmany(FETCH_ROWS):
            ids.extend(str(row[0]) for row in chunk)
            times.append(np.fromiter((row[1] for row in chunk), np.int64, len(chunk)))
            running.append(np.fromiter((row[2] for row in chunk), np.bool_, len(chunk)))
            blocks.append(np.array([row[3:] for row in chunk], dtype=np.float64))
    return FeatureRows(
        asset_id=np.array(ids, dtype=str) if ids else np.empty(0, dtype="<U1"),
        time_us=np.concatenate(times) if times else np.empty(0, dtype=np.int64),
        running=np.concatenate(running) if running else np.empty(0, dtype=bool),
        values=np.concatenate(blocks) if blocks else np.empty((0, len(FEATURE_NAMES))),
    )


def history_table(
    conn: psycopg.Connection[Any], config: HistoryConfig, *, cap_hours: float
) -> FeatureTable:
    """Return the recorded lives of the database as a feature table (two queries)."""
    rows = read_feature_rows(conn)
    events = read_events(conn)
    labels = label_lives(
        rows.asset_id,
        rows.time_us,
        events,
        hours_per_second=config.hours_per_second,
        include_censored=config.include_censored,
        cap_hours=cap_hours,
    )
    keep = labels.keep
    rul = labels.rul_hours[keep]
    return FeatureTable(
        asset_id=labels.unit_id[keep],
        time_us=rows.time_us[keep],
        values=rows.values[keep],
        running=rows.running[keep],
        rul_hours=rul,
        fault_mode=np.where(np.isfinite(rul), "unknown", "none"),
        meta=describe(conn, config, rows, labels, events, cap_hours=cap_hours),
        machine_id=rows.asset_id[keep],
    )


def database_table(
    config: HistoryConfig,
    connect: Connect,
    *,
    cap_hours: float,
    fleet: FleetConfig,
    features: FeaturesSettings,
) -> FeatureTable:
    """Return the database's recorded lives, plus ``with_simulated`` assets of ``fleet``."""
    with connect() as conn:
        table = history_table(conn, config, cap_hours=cap_hours)
    if not np.isfinite(table.rul_hours).any():
        raise ModelError(
            f"the database {table.meta['database']} holds no feature rows up to a recorded "
            f"failure ({table.meta['failures_recorded']} failures, {table.meta['rows_read']} "
            f"{FEATURE_SET_VERSION} feature rows); record failures (`cbm events add`, or "
            "`cbm simulate --record-failures`) or train on a simulated fleet"
        )
    if not config.with_simulated:
        return table
    simulated_fleet = dataclasses.replace(fleet, n_assets=config.with_simulated)
    simulated = simulate_table(simulated_fleet, settings=features)
    meta = {**table.meta, "source": "database+simulated", "simulated": simulated_fleet.describe()}
    try:
        return concat_tables([table, simulated], meta=meta)
    except ValueError as exc:
        raise ModelError(f"recorded and simulated assets cannot be told apart: {exc}") from exc


def describe(
    conn: psycopg.Connection[Any],
    config: HistoryConfig,
    rows: FeatureRows,
    labels: Labels,
    events: dict[str, list[tuple[int, EventKind]]],
    *,
    cap_hours: float,
) -> dict[str, Any]:
    """Return the data description of a history table: where it came from, what was left out."""
    info = conn.info
    kept_censored = int((labels.keep & ~np.isfinite(labels.rul_hours)).sum())
    if config.include_censored:
        policy = (
            f"rows of censored lives kept only where the machine ran at least {cap_hours:g} h "
            f"longer ({kept_censored} of {labels.censored_rows}), labelled at the cap"
        )
    else:
        policy = "left out of training"
    with_rows = set(rows.asset_id.tolist())
    failures = sum(kind in FAILURE_KINDS for kinds in events.values() for _, kind in kinds)
    unseen = sum(
        kind in FAILURE_KINDS
        for asset, kinds in events.items()
        if asset not in with_rows
        for _, kind in kinds
    )
    return {
        "source": "database",
        "database": f"{info.host}:{info.port}/{info.dbname}",
        "feature_set": FEATURE_SET_VERSION,
        "hours_per_second": config.hours_per_second,
        "failure_kinds": [k.value for k in FAILURE_KINDS],
        "new_life_kinds": [k.value for k in NEW_LIFE_KINDS],
        "rows_read": int(rows.time_us.size),
        "first_time": _iso(rows.time_us.min()) if rows.time_us.size else None,
        "last_time": _iso(rows.time_us.max()) if rows.time_us.size else None,
        "machines": len(with_rows),
        "failures_recorded": failures,
        "failures_without_rows": unseen,
        "lives": {
            "failed": labels.failed_lives,
            "censored": labels.censored_lives,
            "censored_rows": labels.censored_rows,
            "censored_policy": f"right-censored (no recorded failure): {policy}",
        },
    }


def _iso(time_us: np.int64) -> str:
    return from_micros(int(time_us)).isoformat()
