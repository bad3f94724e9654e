"""The test-side Grafana expander gives what Grafana's PostgreSQL datasource gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.grafana.macros import (
    ExpansionError,
    TimeRange,
    Variable,
    expand,
    format_interval,
    grafana_interval,
    parse_interval,
    used_variables,
)

# The range of Grafana's own macro tests: 2018-04-12 18:00 to 18:05 UTC.
START = datetime(2018, 4, 12, 18, 0, tzinfo=UTC)
RANGE = TimeRange(START, START + timedelta(minutes=5), timedelta(minutes=1))


@pytest.mark.parametrize(
    ("sql", "plain", "timescale"),
    [
        (
            "GROUP BY $__timeGroup(time_column,'5m')",
            "GROUP BY floor(extract(epoch from time_column)/300)*300",
            "GROUP BY time_bucket('300.000s',time_column)",
        ),
        (
            "SELECT $__timeGroupAlias(time_column, 1h)",
            'SELECT floor(extract(epoch from time_column)/3600)*3600 AS "time"',
            "SELECT time_bucket('3600.000s',time_column) AS \"time\"",
        ),
        (
            # Pre-5.3 compatibility: a comma right after $__timeGroup adds the alias.
            "SELECT $__timeGroup(time_column,'5m'), value",
            'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value',
            "SELECT time_bucket('300.000s',time_column) AS \"time\", value",
        ),
        (
            "WHERE $__timeFilter(time_column)",
            "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'",
            "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'",
        ),
        (
            "select $__timeFrom(), $__timeTo()",
            "select '2018-04-12T18:00:00Z', '2018-04-12T18:05:00Z'",
            "select '2018-04-12T18:00:00Z', '2018-04-12T18:05:00Z'",
        ),
        (
            "WHERE $__unixEpochFilter(time)",
            "WHERE time >= 1523556000 AND time <= 1523556300",
            "WHERE time >= 1523556000 AND time <= 1523556300",
        ),
        (
            "select $__time(time_column), $__timeEpoch(time_column)",
            'select time_column AS "time", extract(epoch from time_column) as "time"',
            'select time_column AS "time", extract(epoch from time_column) as "time"',
        ),
    ],
)
def test_macros_expand_like_grafana(sql: str, plain: str, timescale: str) -> None:
    assert expand(sql, RANGE) == plain
    assert expand(sql, RANGE, timescaledb=True) == timescale


def test_large_buckets_are_written_like_go_writes_floats() -> None:
    month = TimeRange(START, START + timedelta(days=30), timedelta(days=30))
    assert expand("$__timeGroup(t, $__interval)", month) == (
        "floor(extract(epoch from t)/2.592e+06)*2.592e+06"
    )


def test_interval_follows_grafanas_rounding() -> None:
    minute = timedelta(minutes=1)
    assert grafana_interval(timedelta(hours=24), 1000, minute) == minute
    assert grafana_interval(timedelta(days=30), 1000, minute) == timedelta(minutes=30)
    assert grafana_interval(timedelta(days=7), 1000, minute) == timedelta(minutes=10)
    assert grafana_interval(timedelta(hours=1), 1000, timedelta(0)) == timedelta(seconds=5)
    assert [format_interval(timedelta(seconds=s)) for s in (30, 60, 1800, 3600, 86400)] == [
        "30s", "1m", "30m", "1h", "1d",
    ]  # fmt: skip
    assert parse_interval("'5m'") == timedelta(minutes=5)
    with pytest.raises(ExpansionError):
        parse_interval("5 minutes")


def test_interval_variables() -> None:
    sql = "SELECT $__interval_ms, '$__interval', $__timeGroup(t, $__interval)"
    assert expand(sql, RANGE) == "SELECT 60000, '1m', floor(extract(epoch from t)/60)*60"


def test_variables_are_quoted_like_the_sql_datasources_do() -> None:
    asset = {"asset": Variable(("pump'1",))}
    sites = {"site": Variable(("north", "south"), multi=True, include_all=True)}
    assert expand("a = '$asset'", RANGE, asset) == "a = 'pump''1'"
    assert expand("a = '${asset}'", RANGE, asset) == "a = 'pump''1'"
    assert expand("a = ${asset:sqlstring}", RANGE, asset) == "a = 'pump''1'"
    assert expand("a = '[[asset]]'", RANGE, asset) == "a = 'pump''1'"
    assert expand("s IN ($site)", RANGE, sites) == "s IN ('north','south')"
    assert expand("s IN (${site:sqlstring})", RANGE, sites) == "s IN ('north','south')"
    assert expand("'${site:csv}'", RANGE, sites) == "'north,south'"


def test_unknown_variables_and_macros_fail() -> None:
    with pytest.raises(ExpansionError, match=r"\$nope"):
        expand("x = $nope", RANGE)
    with pytest.raises(ExpansionError, match="unknown macro"):
        expand("$__timeWarp(x)", RANGE)
    with pytest.raises(ExpansionError, match="missing time column"):
        expand("$__timeFilter()", RANGE)


def test_used_variables_ignores_builtins_and_macros() -> None:
    sql = "$__timeFilter(t) AND a = ${asset:sqlstring} AND s IN ($site) AND $__interval_ms > 0"
    assert used_variables(sql) == {"asset", "site"}
