"""How long every dashboard query takes on a month of a hundred assets.

Seeds a scratch database with ``--days`` of ``--assets`` assets at one window
per asset every ``--step-s`` seconds (default 600 s: 432,000 rows each in
ingest_window, temperature, feature_vector and prediction for 30 days x 100
assets), then runs every panel, annotation and variable query of the
provisioned dashboards as Grafana would send it (tests/grafana/macros.py), as
the read-only role, for the whole span and for the last 24 hours. Each query
runs once to warm the cache, then ``--repeat`` times; the median counts. Goal:
every query under 100 ms.
Run: ``python -m bench.bench_dashboards [--assets 100 --days 30]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.harness import services
from services.features.store import write_vectors
from services.inference.store import write_predictions
from services.ingest.store import write_batch
from tests.grafana.dashboards import all_queries
from tests.grafana.fleetdata import seed_fleet
from tests.grafana.macros import TimeRange, Variable, expand
from tests.grafana.stagewrites import StageBatch, stage_batch

GOAL_MS = 100.0
# Writer of each raw table that carries rollup triggers, called as its stage calls it.
WRITERS: dict[str, Callable[[psycopg.Connection[Any], StageBatch], object]] = {
    "ingest_window": lambda conn, b: write_batch(conn, b.windows, [], {}),
    "feature_vector": lambda conn, b: write_vectors(conn, b.vectors),
    "prediction": lambda conn, b: write_predictions(conn, b.predictions, b.received_at),
}


def write_cost(
    conn: psycopg.Connection[Any], *, assets: int, batches: int
) -> dict[str, dict[str, float]]:
    """Return µs per row of each writer, rollup triggers on and off, new rows and replays."""
    samples: dict[str, dict[str, list[float]]] = {table: {} for table in WRITERS}
    start = datetime.now(UTC) + timedelta(days=400)  # buckets of their own
    for k in range(batches):
        # Alternate the order so drift in machine load falls on both modes alike.
        for mode in ("on", "off") if k % 2 else ("off", "on"):
            action = "ENABLE" if mode == "on" else "DISABLE"
            for table in WRITERS:
                conn.execute(f"ALTER TABLE {table} {action} TRIGGER USER")
            batch = stage_batch(start, assets=assets, k=2 * k + (mode == "on"))
            for phase in ("new", "replayed"):
                for table, writer in WRITERS.items():
                    t0 = time.perf_counter()
                    with conn.transaction():
                        writer(conn, batch)
                    us = (time.perf_counter() - t0) * 1e6 / assets
                    samples[table].setdefault(f"{phase}, triggers {mode}", []).append(us)
    for table in WRITERS:
        conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    return {
        table: {key: round(statistics.median(v), 1) for key, v in sorted(by_key.items())}
        for table, by_key in samples.items()
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--step-s", type=int, default=600, help="seconds between windows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--write-batches", type=int, default=20, help="batches per mode for the write cost"
    )
    args = parser.parse_args(argv)
    with services() as svc, psycopg.connect(svc.db_url, autocommit=True) as conn:
        started = time.perf_counter()
        fleet = seed_fleet(conn, assets=args.assets, days=args.days, step_s=args.step_s)
        conn.execute("VACUUM ANALYZE")
        seed_s = time.perf_counter() - started
        row = conn.execute("SELECT cbm_has_timescaledb()").fetchone()
        timescaledb = bool(row and row[0])
        conn.execute("SET ROLE cbm_grafana")
        sites = tuple(r[0] for r in conn.execute("SELECT DISTINCT site FROM asset ORDER BY 1"))
        variables = {
            "asset": Variable((fleet.assets[0],)),  # the most urgent one: alerts and acks
            "site": Variable(sites, multi=True, include_all=True),
        }
        spans = {f"{args.days:g}d": timedelta(days=args.days), "24h": timedelta(hours=24)}
        timings: list[dict[str, Any]] = []
        for query in all_queries():
            for span_name, span in spans.items():
                sql = expand(
                    query.sql,
                    TimeRange.last(span, end=fleet.end),
                    variables,
                    timescaledb=timescaledb,
                )
                conn.execute(sql)  # warm-up
                runs = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    conn.execute(sql).fetchall()
                    runs.append((time.perf_counter() - t0) * 1000)
                timings.append(
                    {"query": query.id, "range": span_name, "ms": round(statistics.median(runs), 2)}
                )
        conn.execute("RESET ROLE")
        writes = (
            {} if timescaledb else write_cost(conn, assets=args.assets, batches=args.write_batches)
        )
    timings.sort(key=lambda t: -float(t["ms"]))
    print(
        f"seeded {args.assets} assets x {args.days:g} days, one window per asset every "
        f"{args.step_s} s: {sum(fleet.rows.values()):,} rows in {seed_s:.1f} s "
        f"(timescaledb={timescaledb})"
    )
    print(f"{len(timings)} query runs; slowest:")
    for t in timings[:8]:
        print(f"  {t['ms']:8.1f} ms  {t['range']:>4}  {t['query']}")
    over = [t for t in timings if float(t["ms"]) >= GOAL_MS]
    print(f"{len(over)} over the {GOAL_MS:.0f} ms goal")
    if writes:
        print(
            f"write cost, µs per row ({args.assets}-row batches, median of "
            f"{args.write_batches}), rollup triggers on / off:"
        )
        for table, by_key in writes.items():
            print(
                f"  {table:<15} new {by_key['new, triggers on']:7.1f} / "
                f"{by_key['new, triggers off']:7.1f}   replayed (duplicates) "
                f"{by_key['replayed, triggers on']:7.1f} / {by_key['replayed, triggers off']:7.1f}"
            )
    return {
        "assets": args.assets,
        "days": args.days,
        "step_s": args.step_s,
        "rows": fleet.rows,
        "seed_s": round(seed_s, 1),
        "timescaledb": timescaledb,
        "goal_ms": GOAL_MS,
        "over_goal": len(over),
        "slowest": timings[:8],
        "write_us_per_row": writes,
        "timings": timings,
    }


if __name__ == "__main__":
    main()
