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
from datetime import timedelta
from typing import Any

import psycopg

from bench.harness import services
from tests.grafana.dashboards import all_queries
from tests.grafana.fleetdata import seed_fleet
from tests.grafana.macros import TimeRange, Variable, expand

GOAL_MS = 100.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--step-s", type=int, default=600, help="seconds between windows")
    parser.add_argument("--repeat", type=int, default=3)
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
        "timings": timings,
    }


if __name__ == "__main__":
    main()
