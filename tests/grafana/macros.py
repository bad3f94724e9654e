"""Expand a Grafana PostgreSQL query the way Grafana does before it reaches the database.

Two passes, as in Grafana: the frontend replaces template variables (``$asset``,
``${asset:sqlstring}``, ``[[asset]]``, ``$__interval``, ``$__interval_ms``, ...)
with the SQL datasource's quoting rules; the backend then replaces the macros
(``$__timeFilter(col)``, ``$__timeGroupAlias(col, 1m)``, ...) with the SQL of
the PostgreSQL datasource (pkg/tsdb/grafana-postgresql-datasource/macros.go):
``time_bucket`` when the datasource has TimescaleDB on, epoch arithmetic (a
number, which Grafana turns into a time) when it has not.

Anything unknown fails loudly: an undefined variable or an unknown macro is a
broken panel, and the tests exist to find those.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

# Grafana's template variable syntax: $name, [[name:format]], ${name.field:format}.
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)
# The backend's macro syntax (same expression as Grafana's macros.go).
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|M|y)$")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "M": 30 * 86400,
    "y": 365 * 86400,
}
# rangeutil.roundInterval: upper bound (ms, exclusive) -> the interval Grafana picks.
_ROUNDING = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
# Variables Grafana defines itself that a query may use.
BUILTIN_VARIABLES = frozenset(
    {"__interval", "__interval_ms", "__from", "__to", "__range", "__range_s", "__range_ms"}
)


class ExpansionError(ValueError):
    """A query uses a variable or macro Grafana would not expand."""


@dataclass(frozen=True)
class Variable:
    """The current value(s) of a dashboard variable."""

    values: tuple[str, ...]
    multi: bool = False
    include_all: bool = False


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range and the interval Grafana derives from it."""

    start: datetime
    end: datetime
    interval: timedelta

    @classmethod
    def last(
        cls,
        span: timedelta,
        *,
        end: datetime,
        max_data_points: int = 1000,
        min_interval: timedelta = timedelta(minutes=1),
    ) -> TimeRange:
        """Return the range ``end - span .. end`` with the interval Grafana would use."""
        start = end - span
        return cls(start, end, grafana_interval(span, max_data_points, min_interval))


def grafana_interval(span: timedelta, max_data_points: int, min_interval: timedelta) -> timedelta:
    """Return $__interval: the span over the data points, rounded, not below the minimum."""
    raw_ms = span / timedelta(milliseconds=1) / max_data_points
    rounded = next((value for bound, value in _ROUNDING if raw_ms < bound), 31_536_000_000)
    return max(timedelta(milliseconds=rounded), min_interval)


def format_interval(interval: timedelta) -> str:
    """Format an interval the way Grafana writes $__interval (``30s``, ``1m``, ``1d``)."""
    ms = round(interval / timedelta(milliseconds=1))
    for unit, size in (
        ("y", 31_536_000_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_interval(text: str) -> timedelta:
    """Parse an interval argument of a macro (``1m``, ``'30s'``, ``1h``)."""
    match = _INTERVAL.match(text.strip().strip("'"))
    if match is None:
        raise ExpansionError(f"error parsing interval {text}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def expand(
    sql: str,
    time_range: TimeRange,
    variables: Mapping[str, Variable] | None = None,
    *,
    timescaledb: bool = False,
) -> str:
    """Return ``sql`` as the database receives it from Grafana."""
    return expand_macros(
        interpolate_variables(sql, time_range, variables or {}), time_range, timescaledb=timescaledb
    )


def used_variables(sql: str) -> set[str]:
    """Return the names of the template variables a query refers to (built-ins excluded)."""
    names = set()
    for match in _VARIABLE.finditer(sql):
        name = match.group(1) or match.group(2) or match.group(4)
        if match.group(1) and _is_macro_call(sql, match.end()):
            continue
        if name not in BUILTIN_VARIABLES:
            names.add(name)
    return names


def interpolate_variables(
    sql: str, time_range: TimeRange, variables: Mapping[str, Variable]
) -> str:
    """Replace template variables as Grafana's frontend does for an SQL datasource."""
    builtins = _builtins(time_range)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if match.group(5):
            raise ExpansionError(f"field path in {match.group(0)} is not supported here")
        if match.group(1) and _is_macro_call(sql, match.end()):
            return match.group(0)  # a macro such as $__timeFilter(...): the backend's job
        if name in builtins:
            return builtins[name]
        if name not in variables:
            raise ExpansionError(f"variable {match.group(0)} is not defined")
        return _format(variables[name], fmt, match.group(0))

    return _VARIABLE.sub(replace, sql)


def expand_macros(sql: str, time_range: TimeRange, *, timescaledb: bool) -> str:
    """Replace the PostgreSQL datasource's macros as Grafana's backend does."""

    def replace(match: re.Match[str]) -> str:
        name, raw_args = match.group(1), match.group(2)
        args = [a.strip() for a in raw_args.split(",")]
        # Grafana: $__timeGroup directly followed by ',' gets the alias (pre-5.3 compatibility).
        if name == "__timeGroup" and sql[match.end() : match.end() + 1] == ",":
            name = "__timeGroupAlias"
        return _macro(name, args, time_range, timescaledb)

    return _MACRO.sub(replace, sql)


def _macro(name: str, args: Sequence[str], tr: TimeRange, timescaledb: bool) -> str:
    start, end = tr.start.astimezone(UTC), tr.end.astimezone(UTC)
    if name in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter") and not args[0]:
        raise ExpansionError(f"missing time column argument for macro {name}")
    if name == "__time":
        return f'{args[0]} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "__timeFilter":
        return f"{args[0]} BETWEEN '{_rfc3339(start)}' AND '{_rfc3339(end)}'"
    if name == "__timeFrom":
        return f"'{_rfc3339(start)}'"
    if name == "__timeTo":
        return f"'{_rfc3339(end)}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        if len(args) < 2:
            raise ExpansionError(f"macro {name} needs time column and interval")
        seconds = parse_interval(args[1]).total_seconds()
        if timescaledb:
            group = f"time_bucket('{seconds:.3f}s',{args[0]})"
        else:
            group = (
                f"floor(extract(epoch from {args[0]})/{_go_float(seconds)})*{_go_float(seconds)}"
            )
        return f'{group} AS "time"' if name == "__timeGroupAlias" else group
    if name == "__unixEpochFilter":
        return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
    if name == "__unixEpochFrom":
        return str(int(start.timestamp()))
    if name == "__unixEpochTo":
        return str(int(end.timestamp()))
    raise ExpansionError(f"unknown macro {name!r}")


def _builtins(tr: TimeRange) -> dict[str, str]:
    span = tr.end - tr.start
    return {
        "__interval": format_interval(tr.interval),
        "__interval_ms": str(round(tr.interval / timedelta(milliseconds=1))),
        "__from": str(int(tr.start.timestamp() * 1000)),
        "__to": str(int(tr.end.timestamp() * 1000)),
        "__range_s": str(int(span.total_seconds())),
        "__range_ms": str(int(span.total_seconds() * 1000)),
        "__range": f"{int(span.total_seconds())}s",
    }


def _format(variable: Variable, fmt: str | None, text: str) -> str:
    values = variable.values
    if fmt is None:
        # The SQL datasources' interpolateVariable: a multi-value or "all" variable
        # is quoted and comma-joined; a single value goes in as is, quotes doubled.
        if variable.multi or variable.include_all:
            return ",".join(_quote(v) for v in values)
        if len(values) != 1:
            raise ExpansionError(f"{text}: a single-value variable needs exactly one value")
        return values[0].replace("'", "''")
    if fmt == "sqlstring":
        return ",".join(_quote(v) for v in values)
    if fmt in ("raw", "csv"):
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    raise ExpansionError(f"{text}: format {fmt!r} is not handled by this expander")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_macro_call(sql: str, end: int) -> bool:
    return sql[end : end + 1] == "("


def _rfc3339(moment: datetime) -> str:
    # Go's time.RFC3339Nano: fractional seconds without trailing zeros, "Z" for UTC.
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _go_float(value: float) -> str:
    # Go's %v of a float64: shortest digits, exponent form from 1e6 up (1800, 2.592e+06).
    number = Decimal(repr(value)).normalize()
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    magnitude = len(digits) + exponent - 1
    if magnitude < -4 or magnitude >= 6:
        mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
        return (
            f"{'-' if sign else ''}{mantissa}e{'+' if magnitude >= 0 else '-'}{abs(magnitude):02d}"
        )
    return format(number, "f")
