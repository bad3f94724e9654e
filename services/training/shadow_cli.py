"""``cbm shadow``: start, watch, promote or stop a candidate model running in shadow."""

from __future__ import annotations

import argparse
import json
import math
from datetime import UTC, datetime
from typing import Any

from cbm.settings import Settings
from services.argtypes import login_name, positive


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``shadow`` command group to the ``cbm`` command."""
    shadow = verbs.add_parser(
        "shadow", help="run a candidate model beside the live one (no alerts), then decide"
    )
    sub = shadow.add_subparsers(title="shadow")
    start = sub.add_parser("start", help="run VERSION (a folder in models/) in shadow")
    start.add_argument("version")
    start.set_defaults(handler=_start)
    stop = sub.add_parser("stop", help="end shadow mode (the rows stay)")
    stop.set_defaults(handler=_stop)
    for name, text in (
        ("status", "compare the shadow with the live model on the rows both made"),
        ("promote", "make the shadow live if it beat the live model (or with --force)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--speedup",
            type=positive,
            default=1.0,
            help="operating hours per hour of event time (the simulator's --speedup)",
        )
        p.add_argument("--json", action="store_true", help="print the comparison as JSON")
        if name == "promote":
            p.add_argument("--by", default=None, help="who decides (default: your user name)")
            p.add_argument(
                "--force", action="store_true", help="promote even if not shown to be better"
            )
        p.set_defaults(handler=_status if name == "status" else _promote)


def _start(settings: Settings, args: argparse.Namespace) -> int:
    from services.training import shadow  # noqa: PLC0415 - loads the model runtime

    shadow.start(settings.inference.models_dir, args.version)
    print(
        f"{args.version} runs in shadow from the inference stage's next check"
        f" (every {settings.inference.reload_check_s:g} s); rows go to shadow_prediction"
    )
    return 0


def _stop(settings: Settings, _args: argparse.Namespace) -> int:
    from services.training import shadow  # noqa: PLC0415

    version = shadow.stop(settings.inference.models_dir)
    print(f"shadow mode ended for {version}" if version else "no model was in shadow")
    return 0


def _status(settings: Settings, args: argparse.Namespace) -> int:
    found = _compare(settings, args)
    if found is None:
        return 1
    _, comparison = found
    if args.json:
        print(json.dumps(comparison.report(), indent=2))
    else:
        print(_table(comparison))
    return 0


def _promote(settings: Settings, args: argparse.Namespace) -> int:
    from cbm.db import connect  # noqa: PLC0415
    from services.training import shadow  # noqa: PLC0415
    from services.training.promotion import (  # noqa: PLC0415
        Decision,
        Metric,
        Outcome,
        record_decision,
    )

    found = _compare(settings, args)
    if found is None:
        return 1
    version, comparison = found
    better = comparison.shadow_is_better()
    if not better and not args.force:
        why = (
            "no paired row has a recorded failure after it, so neither model can be scored"
            if better is None
            else f"RMSE {comparison.shadow.rmse:.2f} h is not below {comparison.live.rmse:.2f} h"
        )
        print(f"{version} stays in shadow: {why}. Use --force to promote on judgement.")
        return 1
    by = args.by or login_name()
    before = shadow.promote(settings.inference.models_dir, version)
    outcome = Outcome(
        decision=Decision.PROMOTED,
        candidate=version,
        current=before,
        metric=Metric.RMSE,
        candidate_value=comparison.shadow.rmse,
        current_value=comparison.live.rmse,
        report={"shadow": comparison.report(), "forced": bool(args.force and not better)},
        report_path=None,
        recorded=False,
    )
    recorded = record_decision(lambda: connect(settings), outcome, datetime.now(UTC), by)
    print(
        f"{version} is live (was {before}); the inference stage switches within"
        f" {settings.inference.reload_check_s:g} s"
        + ("" if recorded else "; the decision could not be recorded in model_promotion")
    )
    return 0


def _compare(settings: Settings, args: argparse.Namespace) -> tuple[str, Any] | None:
    from cbm.db import connect  # noqa: PLC0415
    from services.alerter.config import check_overrides, rules_for  # noqa: PLC0415
    from services.inference.model import current_version, shadow_version  # noqa: PLC0415
    from services.training import shadow  # noqa: PLC0415

    models_dir = settings.inference.models_dir
    version = shadow_version(models_dir)
    if version is None:
        print("no model is in shadow; start one with `cbm shadow start VERSION`")
        return None
    alerting = settings.alerting
    check_overrides(alerting)
    with connect(settings) as conn:
        comparison = shadow.compare(
            conn,
            version,
            rules=rules_for(alerting, ""),
            overrides={a: rules_for(alerting, a) for a in alerting.overrides},
            cap_hours=shadow.caps(models_dir, version, current_version(models_dir)),
            hours_per_second=args.speedup / 3600,
        )
    return version, comparison


def _table(c: Any) -> str:
    def num(value: float | None, unit: str = "") -> str:
        return "-" if value is None or math.isnan(value) else f"{value:.2f}{unit}"

    live, shadow = c.live.summary(), c.shadow.summary()
    span = f"{c.first:%Y-%m-%d %H:%M} to {c.last:%Y-%m-%d %H:%M} UTC" if c.first else "no rows yet"
    lines = [
        f"shadow {shadow['version']} beside live {live['version']}:"
        f" {c.pairs} paired predictions of {c.assets} assets, {span}",
        f"mean |RUL difference| while running: {num(c.mean_abs_diff_hours, ' h')};"
        f" {c.scored} pairs scored against recorded failures",
        f"{'':24}{'live':>12}{'shadow':>12}",
    ]
    rows = [
        ("RMSE", num(live["rmse"], " h"), num(shadow["rmse"], " h")),
        (
            "failures warned",
            f"{live['warned']}/{live['failures']}",
            f"{shadow['warned']}/{shadow['failures']}",
        ),
        ("false alarms", str(live["false_alarms"]), str(shadow["false_alarms"])),
        ("precision", num(live["precision"]), num(shadow["precision"])),
        (
            "median WARNING lead",
            num(live["median_warning_lead_hours"], " h"),
            num(shadow["median_warning_lead_hours"], " h"),
        ),
    ]
    lines += [f"{name:24}{a:>12}{b:>12}" for name, a, b in rows]
    return "\n".join(lines)
