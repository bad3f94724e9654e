"""Present a backtest: text tables, a JSON document and a precision-recall plot."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.alerter.levels import Level
from services.alerter.policy import AlertRules
from services.prognostics.backtest import ALARM_LEVELS
from services.prognostics.results import AssetResult, Backtest, CostModel, Outcome, Totals
from services.prognostics.sweep import Sweep, SweepPoint

JSON_FILE = "backtest.json"
PNG_FILE = "precision_recall.png"


def asset_table(backtest: Backtest) -> list[str]:
    """Return one line per asset and failure: alarms, first level times, lead times."""
    header = (
        "ASSET",
        "PREDS",
        "FAILURE_H",
        "FIRST_WARN_H",
        "LEAD_WARN_H",
        "LEAD_CRIT_H",
        "LEAD_EMERG_H",
        "ALARMS",
        "FALSE",
        "PENDING",
        "MISSED",
        "NOTIFS",
    )
    rows: list[tuple[str, ...]] = []
    for asset in backtest.assets:
        counts = (
            str(len(asset.alarms)),
            str(asset.count(Outcome.FALSE)),
            str(asset.count(Outcome.PENDING)),
            str(asset.missed),
            str(asset.notifications),
        )
        first = _hours(asset.first_reached_hours[Level.WARNING])
        if not asset.failures:
            rows.append(
                (asset.asset_id, str(asset.predictions), "-", first, "-", "-", "-", *counts)
            )
        for index, failure in enumerate(asset.failures):
            leads = tuple(
                _hours(failure.lead_hours[level]) if failure.detected else "missed"
                for level in ALARM_LEVELS
            )
            own = (asset.asset_id, str(asset.predictions)) if index == 0 else ("", "")
            rows.append(
                (*own, _hours(failure.hours), first if index == 0 else "", *leads)
                + (counts if index == 0 else ("",) * len(counts))
            )
    return table(header, rows)


def summary(backtest: Backtest) -> list[str]:
    """Return the rules used and the fleet's scores in a few lines."""
    t, costs = backtest.totals, backtest.costs
    lines = [
        f"rules: {describe_rules(backtest.rules)}; horizon {backtest.horizon_hours:g} h",
        f"failures {t.failures}: detected {t.detected}, missed {t.missed}; alarms {t.alarms}:"
        f" true {t.true_alarms}, false {t.false_alarms}, pending {t.pending};"
        f" notifications {t.notifications}",
        f"precision {t.precision:.2f}, recall {t.recall:.2f}, F1 {t.f1:.2f};"
        f" expected cost {t.cost:,.0f} (miss {costs.miss:,.0f}, false alarm"
        f" {costs.false_alarm:,.0f})",
    ]
    if t.lead_hours:
        lines.append(
            f"WARNING lead time: median {t.median_lead_hours:.1f} h,"
            f" min {min(t.lead_hours):.1f} h, max {max(t.lead_hours):.1f} h"
        )
    return lines


def describe_rules(rules: AlertRules) -> str:
    """Return the rules' alarm-relevant settings in one phrase."""
    bound = "interval low bound" if rules.use_interval_bound else "point RUL"
    return (
        f"{bound} below {rules.warning_hours:g}/{rules.critical_hours:g}/"
        f"{rules.emergency_hours:g} h (warning/critical/emergency),"
        f" debounce {rules.debounce_count}, hysteresis {rules.hysteresis_hours:g} h"
    )


def sweep_table(sweep: Sweep) -> list[str]:
    """Return one line per threshold, the chosen ones marked."""
    header = (
        "THRESHOLD_H",
        "DETECTED",
        "MISSED",
        "FALSE",
        "PENDING",
        "PRECISION",
        "RECALL",
        "F1",
        "COST",
        "MEDIAN_LEAD_H",
        "",
    )
    rows = []
    for point in sweep.points:
        t = point.totals
        marks = [
            name
            for name, chosen in (("best F1", sweep.best_f1), ("min cost", sweep.cheapest))
            if chosen is point
        ]
        if not point.eligible:
            marks.append("cap")
        rows.append(
            (
                f"{point.threshold_hours:g}",
                str(t.detected),
                str(t.missed),
                str(t.false_alarms),
                str(t.pending),
                f"{t.precision:.2f}",
                f"{t.recall:.2f}",
                f"{t.f1:.2f}",
                f"{t.cost:,.0f}",
                _hours(t.median_lead_hours),
                "<- " + ", ".join(marks) if marks else "",
            )
        )
    return table(header, rows)


def to_document(
    backtest: Backtest, sweep: Sweep | None, *, source: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the whole report as JSON-ready data."""
    return {
        "source": dict(source),
        "horizon_hours": backtest.horizon_hours,
        "costs": dataclasses.asdict(backtest.costs),
        "rules": rules_document(backtest.rules),
        "totals": totals_document(backtest.totals),
        "assets": [asset_document(a) for a in backtest.assets],
        "sweep": None if sweep is None else sweep_document(sweep),
    }


def rules_document(rules: AlertRules) -> dict[str, Any]:
    """Return the rules with intervals in seconds."""
    return {
        name: value.total_seconds() if isinstance(value, timedelta) else value
        for name, value in dataclasses.asdict(rules).items()
    }


def totals_document(t: Totals) -> dict[str, Any]:
    """Return the totals with their derived scores."""
    return {
        **{k: v for k, v in dataclasses.asdict(t).items() if k != "lead_hours"},
        "missed": t.missed,
        "precision": t.precision,
        "recall": t.recall,
        "f1": t.f1,
        "median_lead_hours": t.median_lead_hours,
        "lead_hours": list(t.lead_hours),
    }


def asset_document(asset: AssetResult) -> dict[str, Any]:
    """Return one asset's alarms and failures."""
    return {
        "asset_id": asset.asset_id,
        "predictions": asset.predictions,
        "notifications": asset.notifications,
        "unobserved_failures": asset.unobserved_failures,
        "first_reached_hours": _by_level(asset.first_reached_hours),
        "alarms": [
            {
                "episode": a.episode,
                "time": a.time.isoformat(),
                "hours": a.hours,
                "level": a.level.name,
                "outcome": a.outcome.value,
                "failure_hours": a.failure_hours,
                "lead_hours": a.lead_hours,
            }
            for a in asset.alarms
        ],
        "failures": [
            {"hours": f.hours, "detected": f.detected, "lead_hours": _by_level(f.lead_hours)}
            for f in asset.failures
        ],
    }


def sweep_document(sweep: Sweep) -> dict[str, Any]:
    """Return the sweep's points and choices."""
    return {
        "use_interval_bound": sweep.use_interval_bound,
        "cap_hours": sweep.cap_hours,
        "best_f1_threshold_hours": sweep.best_f1.threshold_hours,
        "min_cost_threshold_hours": sweep.cheapest.threshold_hours,
        "points": [
            {
                "threshold_hours": p.threshold_hours,
                "eligible": p.eligible,
                **totals_document(p.totals),
            }
            for p in sweep.points
        ],
    }


def write_reports(
    out_dir: Path, document: Mapping[str, Any], sweep: Sweep | None
) -> tuple[Path, Path | None]:
    """Write the JSON document (and the precision-recall plot of a sweep) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_FILE
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    png_path = None
    if sweep is not None:
        png_path = out_dir / PNG_FILE
        plot_precision_recall(png_path, sweep)
    return json_path, png_path


def plot_precision_recall(path: Path, sweep: Sweep) -> None:
    """Write a PNG of precision against recall over the thresholds, both choices marked."""
    import matplotlib  # noqa: PLC0415 - only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 7))
    for f1 in (0.2, 0.4, 0.6, 0.8):
        iso_recall = [r / 100 for r in range(1, 101) if r / 100 > f1 / 2]
        iso_precision = [f1 * r / (2 * r - f1) for r in iso_recall]
        ax.plot(iso_recall, iso_precision, color="0.85", lw=0.8, zorder=0)
        ax.annotate(f"F1={f1:g}", (1.0, iso_precision[-1]), fontsize=7, color="0.6")
    recalls = [p.totals.recall for p in sweep.points]
    precisions = [p.totals.precision for p in sweep.points]
    ax.plot(recalls, precisions, "-", color="tab:blue", lw=1.2, label="RUL threshold")
    ax.plot(
        [p.totals.recall for p in sweep.points if p.eligible],
        [p.totals.precision for p in sweep.points if p.eligible],
        "o",
        color="tab:blue",
        ms=4,
    )
    capped = [p for p in sweep.points if not p.eligible]
    if capped:
        ax.plot(
            [p.totals.recall for p in capped],
            [p.totals.precision for p in capped],
            "o",
            mfc="white",
            mec="0.5",
            ms=5,
            label="alarm could never resolve (model's RUL cap)",
        )
    for label, spot in _labels(sweep.points):
        ax.annotate(label, spot, textcoords="offset points", xytext=(4, 4), fontsize=7)
    best, cheap = sweep.best_f1, sweep.cheapest
    ax.plot(
        best.totals.recall,
        best.totals.precision,
        "*",
        color="tab:red",
        ms=16,
        label=f"best F1: {best.threshold_hours:g} h (F1 {best.totals.f1:.2f})",
    )
    ax.plot(
        cheap.totals.recall,
        cheap.totals.precision,
        "D",
        mfc="none",
        mec="tab:green",
        mew=2,
        ms=12,
        label=f"min cost: {cheap.threshold_hours:g} h ({_cost_label(sweep.costs)})",
    )
    ax.set_xlim(-0.02, 1.12)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("recall (failures alarmed within the horizon)")
    ax.set_ylabel("precision (detections / (detections + false alarms))")
    bound = "interval low bound" if sweep.use_interval_bound else "point RUL"
    ax.set_title(f"Alarm threshold sweep ({bound}, horizon {sweep.horizon_hours:g} h)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, ncol=1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _labels(points: Sequence[SweepPoint]) -> list[tuple[str, tuple[float, float]]]:
    """Return one label per run of neighbouring thresholds at the same spot, e.g. "15–55 h"."""
    runs: list[tuple[list[float], tuple[float, float]]] = []
    for point in points:
        spot = (point.totals.recall, point.totals.precision)
        if runs and runs[-1][1] == spot:
            runs[-1][0].append(point.threshold_hours)
        else:
            runs.append(([point.threshold_hours], spot))
    return [
        (f"{hours[0]:g} h" if len(hours) == 1 else f"{hours[0]:g}–{hours[-1]:g} h", spot)
        for hours, spot in runs
    ]


def _cost_label(costs: CostModel) -> str:
    return f"miss {costs.miss:,.0f} vs false {costs.false_alarm:,.0f}"


def _by_level(values: Mapping[Level, float | None]) -> dict[str, float | None]:
    return {level.name: values[level] for level in ALARM_LEVELS}


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Return the rows as left-aligned columns under the header."""
    body = [list(r) for r in rows]
    widths = [max(len(x) for x in column) for column in zip(header, *body, strict=True)]
    return [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in [list(header), *body]
    ]
