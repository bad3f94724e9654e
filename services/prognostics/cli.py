"""``cbm events`` (maintenance history) and ``cbm backtest`` (score and tune the alert rules).

Heavy imports (the model runtime, the simulator, matplotlib) happen inside the
handlers, so registering the verbs costs nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cbm.settings import Settings
from services.argtypes import fleet_size, login_name, non_negative, positive, share
from services.prognostics.events import EventKind

if TYPE_CHECKING:
    from services.prognostics.sources import Source

DEFAULT_OUT: Final = Path("reports/backtest")
DEFAULT_SIMULATED_ASSETS: Final = 20
DEFAULT_THRESHOLDS: Final = "10:100:5"
# A recorded time may run ahead of this machine's clock by this much (clock skew).
_FUTURE_SLACK: Final = timedelta(minutes=5)
_KINDS: Final = [k.value for k in EventKind]


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``events`` command group and the ``backtest`` verb to the ``cbm`` command."""
    from services.prognostics.backtest import DEFAULT_HORIZON_HOURS  # noqa: PLC0415
    from services.prognostics.fleet import SimulatedFleet  # noqa: PLC0415
    from services.prognostics.results import CostModel  # noqa: PLC0415

    events = verbs.add_parser("events", help="record and list maintenance events")
    event_verbs = events.add_subparsers(title="events")
    add = event_verbs.add_parser("add", help="record a failure, repair, replacement or inspection")
    add.add_argument("asset")
    add.add_argument("--kind", required=True, choices=_KINDS)
    add.add_argument(
        "--time", default=None, help="when it happened, ISO 8601 with offset (default: now)"
    )
    add.add_argument("--note", default="", help="free text, e.g. what was found")
    add.add_argument("--by", default=None, help="who records it (default: your user name)")
    add.set_defaults(handler=add_event)
    listing = event_verbs.add_parser("list", help="the recorded events, oldest first")
    listing.add_argument("asset", nargs="?", default=None)
    listing.add_argument("--kind", action="append", choices=_KINDS, help="only these (repeatable)")
    listing.set_defaults(handler=list_events)

    fleet, costs = SimulatedFleet(), CostModel()
    bt = verbs.add_parser(
        "backtest",
        help="replay predictions through the alert rules against failures; tune the threshold",
    )
    source = bt.add_mutually_exclusive_group()
    source.add_argument(
        "--from-db",
        action="store_true",
        help="recorded predictions against recorded failure events (default: a simulated fleet)",
    )
    source.add_argument(
        "--simulate",
        type=fleet_size,
        metavar="N",
        default=None,
        help=f"simulate N assets through the real model (default {DEFAULT_SIMULATED_ASSETS})",
    )
    sim = bt.add_argument_group("simulated fleet")
    sim.add_argument("--seed", type=int, default=fleet.seed, help="(default: %(default)s)")
    sim.add_argument(
        "--life-mean-hours",
        type=positive,
        default=fleet.life_mean_hours,
        help="(default: %(default)s)",
    )
    sim.add_argument(
        "--healthy-share", type=share, default=fleet.healthy_share, help="(default: %(default)s)"
    )
    sim.add_argument(
        "--models-dir", type=Path, default=None, help="default: the settings' inference.models_dir"
    )
    db = bt.add_argument_group("recorded data (--from-db)")
    db.add_argument("--asset", action="append", default=[], help="only these assets (repeatable)")
    db.add_argument(
        "--failure-kind",
        action="append",
        choices=_KINDS,
        default=None,
        help="event kinds that end a life (repeatable; default: failure)",
    )
    scale = db.add_mutually_exclusive_group()
    scale.add_argument(
        "--hours-per-second",
        type=positive,
        default=None,
        help="RUL hours per second of event time (default 1/3600: real time)",
    )
    scale.add_argument(
        "--speedup",
        type=positive,
        default=None,
        help="the live simulator's --speedup the data was recorded at (3600: 1 h per second)",
    )
    score = bt.add_argument_group("scoring")
    score.add_argument(
        "--horizon-hours",
        type=positive,
        default=DEFAULT_HORIZON_HOURS,
        help="an alarm is true if a failure follows within this (default: %(default)s)",
    )
    score.add_argument(
        "--thresholds",
        type=thresholds_arg,
        default=DEFAULT_THRESHOLDS,
        help="warning thresholds to sweep: START:STOP:STEP or a comma list (default: %(default)s)",
    )
    score.add_argument(
        "--cost-miss", type=non_negative, default=costs.miss, help="(default: %(default)s)"
    )
    score.add_argument(
        "--cost-false-alarm",
        type=non_negative,
        default=costs.false_alarm,
        help="(default: %(default)s)",
    )
    score.add_argument(
        "--use-interval-bound",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compare the interval's lower bound, or (--no-...) the point estimate"
        " (default: alerting.use_interval_bound)",
    )
    bt.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report directory")
    bt.set_defaults(handler=backtest)


def thresholds_arg(text: str) -> tuple[float, ...]:
    """Parse ``START:STOP:STEP`` or ``a,b,c`` into thresholds in hours."""
    from services.prognostics.sweep import thresholds_between  # noqa: PLC0415

    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            return thresholds_between(start, stop, step)
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad thresholds {text!r}: {exc}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"thresholds must be positive hours, got {text!r}")
    return values


def add_event(settings: Settings, args: argparse.Namespace) -> int:
    """Record one maintenance event (a repeat of the same one changes nothing)."""
    from cbm.db import connect  # noqa: PLC0415 - keep `cbm --help` light
    from services.prognostics import store  # noqa: PLC0415
    from services.prognostics.events import MaintenanceEvent, parse_time  # noqa: PLC0415

    now = datetime.now(UTC)
    try:
        at = now if args.time is None else parse_time(args.time)
    except ValueError as exc:
        print(f"cbm events add: {exc}", file=sys.stderr)
        return 2
    if at > now + _FUTURE_SLACK:
        print(
            f"cbm events add: {at.isoformat()} is in the future; record what has happened",
            file=sys.stderr,
        )
        return 2
    event = MaintenanceEvent(
        asset_id=args.asset,
        time=at,
        kind=EventKind(args.kind),
        note=args.note,
        recorded_by=args.by or login_name(),
    )
    with connect(settings, autocommit=True) as conn:
        added = store.add_event(conn, event)
    what = f"{event.kind.value} of {event.asset_id} at {_when(event.time)}"
    print(f"recorded {what}" if added else f"already recorded: {what} (unchanged)")
    return 0


def list_events(settings: Settings, args: argparse.Namespace) -> int:
    """Print the recorded events, oldest first."""
    from cbm.db import connect  # noqa: PLC0415
    from cbm.topics import validate_asset_id  # noqa: PLC0415
    from services.prognostics import store  # noqa: PLC0415
    from services.prognostics.report import table  # noqa: PLC0415

    asset_id = None if args.asset is None else validate_asset_id(args.asset)
    kinds = [EventKind(k) for k in args.kind or ()]
    with connect(settings, autocommit=True) as conn:
        events = store.list_events(conn, asset_id=asset_id, kinds=kinds)
    if not events:
        print("no maintenance events")
        return 0
    header = ("TIME", "ASSET", "KIND", "NOTE", "RECORDED BY", "RECORDED AT")
    rows = [
        (
            _when(e.time),
            e.asset_id,
            e.kind.value,
            e.note,
            e.recorded_by,
            _when(e.recorded_at),
        )
        for e in events
    ]
    _print_lines(table(header, rows))
    return 0


def backtest(settings: Settings, args: argparse.Namespace) -> int:
    """Score the alert rules on recorded or simulated predictions and sweep the threshold."""
    from services.alerter.config import check_overrides, rules_for  # noqa: PLC0415
    from services.prognostics import report, sources  # noqa: PLC0415
    from services.prognostics.backtest import run_backtest  # noqa: PLC0415
    from services.prognostics.fleet import SimulatedFleet  # noqa: PLC0415
    from services.prognostics.results import CostModel  # noqa: PLC0415
    from services.prognostics.sweep import sweep_thresholds  # noqa: PLC0415

    alerting = settings.alerting
    check_overrides(alerting)
    bound = (
        alerting.use_interval_bound if args.use_interval_bound is None else args.use_interval_bound
    )
    rules = dataclasses.replace(rules_for(alerting, ""), use_interval_bound=bound)
    overrides = {
        asset_id: dataclasses.replace(rules_for(alerting, asset_id), use_interval_bound=bound)
        for asset_id in alerting.overrides
    }
    costs = CostModel(miss=args.cost_miss, false_alarm=args.cost_false_alarm)

    started = time.monotonic()
    if args.from_db:
        loaded = _recorded(settings, args)
        if loaded is None:
            return 1
    else:
        fleet = SimulatedFleet(
            n_assets=DEFAULT_SIMULATED_ASSETS if args.simulate is None else args.simulate,
            seed=args.seed,
            life_mean_hours=args.life_mean_hours,
            healthy_share=args.healthy_share,
        )
        models_dir = args.models_dir or settings.inference.models_dir
        loaded = sources.simulated(settings, fleet, models_dir=models_dir)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    series = loaded.series
    result = run_backtest(
        series, rules, overrides=overrides, horizon_hours=args.horizon_hours, costs=costs
    )
    swept = sweep_thresholds(
        series,
        rules,
        args.thresholds,
        horizon_hours=args.horizon_hours,
        costs=costs,
        cap_hours=loaded.cap_hours,
    )
    source = {**loaded.facts, "seconds": round(time.monotonic() - started, 2)}

    print(f"backtest of {len(series)} assets: {loaded.description}")
    print()
    _print_lines(report.asset_table(result))
    print()
    _print_lines(report.summary(result))
    print()
    print("threshold sweep (warning threshold; critical and emergency scaled with it):")
    _print_lines(report.sweep_table(swept))
    print()
    print(
        f"best F1: {swept.best_f1.threshold_hours:g} h (F1 {swept.best_f1.totals.f1:.2f});"
        f" min expected cost: {swept.cheapest.threshold_hours:g} h"
        f" (cost {swept.cheapest.totals.cost:,.0f})"
    )
    if swept.cap_hours is not None:
        _cap_notes(swept.cap_hours, args.thresholds, rules.hysteresis_hours)
    document = report.to_document(result, swept, source=source)
    json_path, png_path = report.write_reports(args.out, document, swept)
    print(f"report: {json_path}" + (f", {png_path}" if png_path else ""))
    return 0


def _cap_notes(cap: float, thresholds: tuple[float, ...], hysteresis: float) -> None:
    """Warn about thresholds the model's RUL cap makes meaningless or one-way."""
    above = [t for t in thresholds if t >= cap]
    stuck = [t for t in thresholds if t < cap <= t + hysteresis]
    if above:
        print(
            f"note: the model never predicts more than {cap:g} h, so from {min(above):g} h"
            " on every running asset alarms at once (marked 'cap', never chosen)"
        )
    if stuck:
        print(
            f"note: at {', '.join(f'{t:g}' for t in stuck)} h an alarm could never resolve:"
            f" that needs RUL above threshold + hysteresis ({hysteresis:g} h), which the"
            " cap forbids (marked 'cap', never chosen)"
        )


def _recorded(settings: Settings, args: argparse.Namespace) -> Source | None:
    from cbm.db import connect  # noqa: PLC0415
    from services.prognostics import sources  # noqa: PLC0415

    if args.speedup is not None:
        hours_per_second = args.speedup / 3600.0
    elif args.hours_per_second is not None:
        hours_per_second = args.hours_per_second
    else:
        hours_per_second = 1 / 3600.0
    kinds = [EventKind(k) for k in args.failure_kind or [EventKind.FAILURE.value]]
    with connect(settings, autocommit=True) as conn:
        found = sources.recorded(
            conn, asset_ids=args.asset, failure_kinds=kinds, hours_per_second=hours_per_second
        )
    if found is None:
        scope = " for those assets" if args.asset else ""
        print(f"cbm backtest: no predictions in the database{scope}", file=sys.stderr)
    return found


def _when(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line)
