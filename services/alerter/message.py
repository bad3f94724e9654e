"""Render an alert for people: Slack Block Kit plus a one-line fallback text.

Pure: the facts (the outbox row, the asset, the trend, the feature that moved)
come in, text comes out. What the on-call engineer needs at a glance: how bad
(a level marker), which machine and where, how long it has left with the
model's uncertainty, whether it is getting worse, what in the vibration
changed, and one click to the asset's dashboard over the episode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from services.alerter.levels import Channel, Kind, Level
from services.alerter.outbox import AlertRow
from services.alerter.policy import AlertRules

MARKERS = {
    Level.EMERGENCY: ":rotating_light: EMERGENCY",
    Level.CRITICAL: ":red_circle: CRITICAL",
    Level.WARNING: ":warning: WARNING",
    Level.OK: ":white_check_mark: RESOLVED",
}

# Feature column -> (what an engineer calls it, the fault it hints at).
FEATURE_PHRASES: Mapping[str, tuple[str, str | None]] = {
    "env_bpfo": ("envelope amplitude at BPFO", "outer race?"),
    "env_bpfi": ("envelope amplitude at BPFI", "inner race?"),
    "env_bsf": ("envelope amplitude at BSF", "rolling element?"),
    "env_ftf": ("envelope amplitude at FTF", "cage?"),
    "spec_bpfo": ("spectrum amplitude at BPFO", "outer race?"),
    "spec_bpfi": ("spectrum amplitude at BPFI", "inner race?"),
    "spec_bsf": ("spectrum amplitude at BSF", "rolling element?"),
    "spec_ftf": ("spectrum amplitude at FTF", "cage?"),
    "rms": ("overall vibration (RMS)", "wear, looseness or imbalance?"),
    "kurtosis": ("kurtosis", "impacting: early bearing damage?"),
    "crest_factor": ("crest factor", "impacting?"),
    "peak": ("peak acceleration", None),
}
# Names for the model's other inputs when they appear as drivers of a prediction.
DRIVER_NAMES: Mapping[str, str] = {
    **{name: label for name, (label, _) in FEATURE_PHRASES.items()},
    "temperature_mean_c": "bearing temperature",
    "band_100_500_power": "vibration power 100-500 Hz",
    "band_1000_2000_power": "vibration power 1-2 kHz",
    "band_2000_5000_power": "vibration power 2-5 kHz",
    "clearance_factor": "clearance factor",
    "skewness": "skewness",
    "spectral_centroid_hz": "spectral centroid",
}
TEMPERATURE_FEATURE = "temperature_mean_c"
SHIFT_FEATURES: tuple[str, ...] = (*FEATURE_PHRASES, TEMPERATURE_FEATURE)
# A rise of this many kelvin weighs like a doubling of an amplitude: ratios of
# Celsius readings mean nothing, so temperature is compared by difference.
_KELVIN_PER_DOUBLING = 10.0
# Below this, no feature has moved enough to be worth a line.
MIN_SHIFT_SCORE = 1.5

_TREND_SPAN = timedelta(hours=24)
_LINK_LEAD = timedelta(hours=1)
_LINK_MAX_SPAN = timedelta(days=7)


@dataclass(frozen=True, kw_only=True)
class Trend:
    """RUL some time ago against RUL now."""

    then_time: datetime
    then_rul: float
    now_time: datetime
    now_rul: float


@dataclass(frozen=True, kw_only=True)
class FeatureShift:
    """The feature that moved most from the asset's healthy baseline, phrased."""

    feature: str
    baseline: float
    latest: float
    text: str


@dataclass(frozen=True, kw_only=True)
class MessageContext:
    """Facts about the asset beside the outbox row."""

    asset_name: str
    site: str
    rules: AlertRules
    grafana_url: str
    trend: Trend | None = None
    shift: FeatureShift | None = None


@dataclass(frozen=True, kw_only=True)
class RenderedMessage:
    """A Slack message: fallback text (notifications, logs) and Block Kit blocks."""

    text: str
    blocks: list[dict[str, Any]]
    summary: str  # plain, no markup: PagerDuty's summary, log lines


def render(row: AlertRow, ctx: MessageContext) -> RenderedMessage:
    """Return the message of one alert."""
    marker = MARKERS[row.level]
    name = ctx.asset_name or row.asset_id
    where = f"{name} ({row.asset_id}, site {ctx.site})"
    headline = _headline(row, ctx)
    rul = rul_text(row)
    url = grafana_link(ctx.grafana_url, row.asset_id, *link_range(row))
    summary = f"{marker.split(' ', 1)[1]} {where}: {headline} {rul}."
    text = f"{marker} {_esc(where)}: {_esc(headline)} {rul}. <{url}|Grafana>"

    fields = [
        f"*Asset*\n{_esc(name)} (`{row.asset_id}`), site {_esc(ctx.site)}",
        f"*Remaining useful life*\n{rul}",
    ]
    if ctx.trend is not None:
        fields.append(f"*Trend*\n{trend_text(ctx.trend)}")
    fields.append(
        f"*Anomaly score*\n{row.anomaly_score:.1f} (alert above {ctx.rules.anomaly_threshold:g})"
    )
    if row.episode_started_at is not None and row.kind != Kind.RAISE:
        fields.append(f"*Active since*\n{_when(row.episode_started_at)}")
    fields.append(f"*Model*\n`{_esc(row.model_version)}`")

    diagnosis = []
    if ctx.shift is not None:
        diagnosis.append(f"*Biggest change from baseline:* {ctx.shift.text}")
    if row.top_features:
        drivers = ", ".join(
            f"{_esc(DRIVER_NAMES.get(n, n))} (+{w:.1f} h if healthy)"
            for n, w in row.top_features[:3]
        )
        diagnosis.append(f"*What pulls RUL down:* {drivers}")

    footer = [f"<{url}|Open {_esc(name)} in Grafana>", f"episode {row.episode}", _when(row.time)]
    if row.level > Level.OK:
        footer.append(f"silence reminders: `cbm alerts ack {row.asset_id} --by <you>`")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{marker} {name}"[:150], "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _esc(headline)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if diagnosis:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(diagnosis)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(footer)}]})
    return RenderedMessage(text=text, blocks=blocks, summary=summary)


def rul_text(row: AlertRow) -> str:
    """Return e.g. ``RUL 4.2 h (2.9–6.0 h)``."""
    return f"RUL {row.rul_hours:.1f} h ({row.rul_low:.1f}–{row.rul_high:.1f} h)"


def trend_text(trend: Trend) -> str:
    """Return e.g. ``30.1 h → 4.2 h over 24 h (−25.9 h)``."""
    span_h = (trend.now_time - trend.then_time).total_seconds() / 3600
    change = trend.now_rul - trend.then_rul
    sign = "+" if change >= 0 else "−"
    return (
        f"{trend.then_rul:.1f} h → {trend.now_rul:.1f} h over {span_h:.0f} h"
        f" ({sign}{abs(change):.1f} h)"
    )


def link_range(row: AlertRow) -> tuple[datetime, datetime]:
    """Return the dashboard's time range: the episode and the last day, up to now."""
    start = row.time - _TREND_SPAN
    if row.episode_started_at is not None:
        start = min(start, row.episode_started_at)
    start = max(start, row.time - _LINK_MAX_SPAN)
    return start, row.time + _LINK_LEAD


def grafana_link(base_url: str, asset_id: str, start: datetime, end: datetime) -> str:
    """Return the link to the asset's Grafana dashboard over ``start``..``end``."""
    return (
        f"{base_url.rstrip('/')}/d/cbm-asset/asset?var-asset={quote(asset_id)}"
        f"&from={_millis(start)}&to={_millis(end)}"
    )


def biggest_shift(
    baseline: Mapping[str, float | None], latest: Mapping[str, float | None]
) -> FeatureShift | None:
    """Return the feature that rose most above its baseline, or None if none rose much."""
    best: tuple[float, FeatureShift] | None = None
    for feature in SHIFT_FEATURES:
        before, now = baseline.get(feature), latest.get(feature)
        if before is None or now is None:
            continue
        if feature == TEMPERATURE_FEATURE:
            rise = now - before
            score = 1 + rise / _KELVIN_PER_DOUBLING
            text = f"bearing temperature +{rise:.1f} °C over baseline — lubrication or load?"
        else:
            if before <= 0 or now <= 0:
                continue
            score = now / before
            label, hint = FEATURE_PHRASES[feature]
            text = f"{label} {score:.1f}× baseline" + (f" — {hint}" if hint else "")
        if score >= MIN_SHIFT_SCORE and (best is None or score > best[0]):
            best = (score, FeatureShift(feature=feature, baseline=before, latest=now, text=text))
    return None if best is None else best[1]


def _headline(row: AlertRow, ctx: MessageContext) -> str:
    level, previous, kind = row.level.name, row.previous_level.name, row.kind
    if kind == Kind.RENEWED:
        return (
            f"Closed (was {previous}): a repair or replacement was recorded for"
            f" {_when(row.time)}; tracking starts again with the renewed bearing."
        )
    if kind == Kind.REMINDER:
        since = _when(row.episode_started_at) if row.episode_started_at else "earlier"
        return f"Reminder: still {level} since {since} and not acknowledged."
    if row.channel == Channel.STALE:
        last = _when(row.prediction_time) if row.prediction_time else "never"
        if kind == Kind.RESOLVE:
            return "Predictions are arriving again."
        return f"No predictions since {last}: check the sensor, the edge gateway and the pipeline."
    if row.channel == Channel.ANOMALY:
        if kind == Kind.RESOLVE:
            return f"Anomaly cleared: score back to {row.anomaly_score:.1f}."
        return (
            f"Unusual vibration: anomaly score {row.anomaly_score:.1f} is above"
            f" {ctx.rules.anomaly_threshold:g} while the remaining life still looks healthy."
        )
    if kind == Kind.RAISE:
        return f"Remaining useful life fell below {ctx.rules.threshold(row.level):g} h ({level})."
    if kind == Kind.ESCALATE:
        return (
            f"Escalated from {previous} to {level}: remaining useful life below"
            f" {ctx.rules.threshold(row.level):g} h."
        )
    if kind == Kind.DOWNGRADE:
        return f"Eased from {previous} to {level}; the alert stays open."
    return f"Back to normal (was {previous}): remaining useful life is above the alert levels."


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _millis(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def _esc(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
