"""Rendering of alert messages, and the outbox's routing: pure functions, no I/O."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from services.alerter.events import Notification
from services.alerter.levels import Channel, Kind, Level
from services.alerter.message import (
    MessageContext,
    Trend,
    biggest_shift,
    grafana_link,
    render,
)
from services.alerter.outbox import (
    AlertRow,
    Failed,
    PendingAlert,
    Receiver,
    Retry,
    Routing,
    classify_http,
    routes,
)
from services.alerter.policy import AlertRules

T = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
STARTED = T - timedelta(hours=30)


def row(**changes: object) -> AlertRow:
    base = AlertRow(
        id=1,
        key="k",
        receiver=Receiver.SLACK,
        asset_id="pump-001",
        channel=Channel.RUL,
        kind=Kind.ESCALATE,
        level=Level.EMERGENCY,
        previous_level=Level.CRITICAL,
        episode=3,
        episode_started_at=STARTED,
        time=T,
        prediction_time=T,
        rul_hours=4.2,
        rul_low=2.9,
        rul_high=6.0,
        anomaly_score=3.7,
        model_version="m-3f2a9c1b",
        top_features=(("env_bpfo", 0.41), ("rms", 0.22)),
        attempts=0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def context(**changes: object) -> MessageContext:
    base = MessageContext(
        asset_name="Feed pump 1",
        site="north",
        rules=AlertRules(),
        grafana_url="https://grafana.example/",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def everything(message) -> str:
    return message.text + "\n" + json.dumps(message.blocks, ensure_ascii=False)


def test_emergency_shows_marker_asset_site_and_rul_interval() -> None:
    message = render(row(), context())
    assert message.text.startswith(":rotating_light: EMERGENCY Feed pump 1 (pump-001, site north)")
    assert "RUL 4.2 h (2.9–6.0 h)" in message.text
    assert "Escalated from CRITICAL to EMERGENCY" in message.text
    assert message.blocks[0]["type"] == "header"
    assert message.blocks[0]["text"]["text"] == ":rotating_light: EMERGENCY Feed pump 1"
    text = everything(message)
    assert "`m-3f2a9c1b`" in text
    assert "envelope amplitude at BPFO (+0.4 h if healthy)" in text
    assert "cbm alerts ack pump-001" in text
    assert message.summary.startswith("EMERGENCY Feed pump 1 (pump-001, site north)")
    assert ":" not in message.summary.split(" ")[0]


def test_grafana_link_is_a_mrkdwn_link_over_the_episode() -> None:
    message = render(row(), context())
    url = grafana_link("https://grafana.example/", "pump-001", STARTED, T + timedelta(hours=1))
    assert f"<{url}|" in message.text
    assert f"<{url}|Open Feed pump 1 in Grafana>" in json.dumps(message.blocks)
    parts = urlsplit(url)
    assert parts.path == "/d/cbm-asset/asset"
    query = parse_qs(parts.query)
    assert query["var-asset"] == ["pump-001"]
    assert int(query["from"][0]) == int(STARTED.timestamp() * 1000)
    assert int(query["to"][0]) == int((T + timedelta(hours=1)).timestamp() * 1000)
    assert not any(b["type"] == "actions" for b in message.blocks)  # a link, not a button


def test_short_episode_still_links_the_last_day() -> None:
    message = render(row(episode_started_at=T - timedelta(minutes=5)), context())
    day_ago = int((T - timedelta(hours=24)).timestamp() * 1000)
    assert f"from={day_ago}&" in message.text


@pytest.mark.parametrize(
    ("kind", "level", "previous", "marker", "phrase"),
    [
        (
            Kind.RAISE,
            Level.WARNING,
            Level.OK,
            ":warning: WARNING",
            "Remaining useful life fell below 50 h",
        ),
        (
            Kind.ESCALATE,
            Level.CRITICAL,
            Level.WARNING,
            ":red_circle: CRITICAL",
            "Escalated from WARNING to CRITICAL",
        ),
        (
            Kind.DOWNGRADE,
            Level.WARNING,
            Level.CRITICAL,
            ":warning: WARNING",
            "Eased from CRITICAL to WARNING",
        ),
        (
            Kind.REMINDER,
            Level.CRITICAL,
            Level.CRITICAL,
            ":red_circle: CRITICAL",
            "Reminder: still CRITICAL since 2026-12-03 04:00 UTC",
        ),
        (
            Kind.RESOLVE,
            Level.OK,
            Level.CRITICAL,
            ":white_check_mark: RESOLVED",
            "Back to normal (was CRITICAL)",
        ),
        (
            Kind.RENEWED,
            Level.OK,
            Level.EMERGENCY,
            ":white_check_mark: RESOLVED",
            "Closed (was EMERGENCY): a repair or replacement was recorded",
        ),
    ],
)
def test_each_kind_is_phrased(kind, level, previous, marker, phrase) -> None:
    message = render(row(kind=kind, level=level, previous_level=previous), context())
    assert message.text.startswith(marker)
    assert phrase in message.text


def test_resolve_has_no_ack_hint_and_stale_names_the_gap() -> None:
    resolved = render(row(kind=Kind.RESOLVE, level=Level.OK), context())
    assert "cbm alerts ack" not in everything(resolved)
    stale = render(
        row(
            channel=Channel.STALE,
            kind=Kind.RAISE,
            level=Level.WARNING,
            previous_level=Level.OK,
            prediction_time=T - timedelta(hours=2),
        ),
        context(),
    )
    assert "No predictions since 2026-12-04 08:00 UTC" in stale.text


def test_trend_and_feature_shift_are_shown_when_known() -> None:
    trend = Trend(then_time=T - timedelta(hours=24), then_rul=30.1, now_time=T, now_rul=4.2)
    shift = biggest_shift({"env_bpfo": 0.5, "rms": 1.0}, {"env_bpfo": 3.05, "rms": 1.2})
    text = everything(render(row(), context(trend=trend, shift=shift)))
    assert "30.1 h → 4.2 h over 24 h (−25.9 h)" in text
    assert "envelope amplitude at BPFO 6.1× baseline — outer race?" in text


def test_asset_name_is_escaped_for_mrkdwn() -> None:
    message = render(row(), context(asset_name="Pump <A&B>"))
    assert "Pump &lt;A&amp;B&gt;" in message.text


def test_biggest_shift_picks_the_largest_rise_and_ignores_small_or_missing() -> None:
    assert biggest_shift({"rms": 1.0, "kurtosis": 3.0}, {"rms": 1.2, "kurtosis": 3.3}) is None
    assert biggest_shift({}, {"rms": 9.0}) is None
    assert biggest_shift({"rms": 0.0}, {"rms": 9.0}) is None  # no baseline to compare with
    found = biggest_shift(
        {"rms": 1.0, "kurtosis": 3.0, "env_bpfi": None},
        {"rms": 2.0, "kurtosis": 12.0, "env_bpfi": 50.0},
    )
    assert found is not None and found.feature == "kurtosis"
    assert found.text == "kurtosis 4.0× baseline — impacting: early bearing damage?"
    hot = biggest_shift({"temperature_mean_c": 40.0}, {"temperature_mean_c": 58.0})
    assert hot is not None and hot.text.startswith("bearing temperature +18.0 °C over baseline")


def _pending(kind: Kind, level: Level) -> PendingAlert:
    n = Notification(
        asset_id="a",
        channel=Channel.RUL,
        kind=kind,
        level=level,
        previous_level=Level.OK,
        time=T,
        episode=1,
        rul_hours=1,
        rul_low=1,
        rul_high=1,
        anomaly_score=0,
        model_version="m",
        key="k",
    )
    return PendingAlert(notification=n, prediction_time=T, episode_started_at=T)


def test_routes_send_only_emergencies_and_their_end_to_pagerduty() -> None:
    both = Routing(slack=True, pagerduty=True)
    names = lambda alert, r=both: [(x.receiver, x.needs_incident) for x in routes(alert, r)]  # noqa: E731
    mqtt = (Receiver.MQTT, False)
    assert names(_pending(Kind.RAISE, Level.WARNING)) == [(Receiver.SLACK, False), mqtt]
    assert names(_pending(Kind.ESCALATE, Level.EMERGENCY)) == [
        (Receiver.SLACK, False),
        (Receiver.PAGERDUTY, False),
        mqtt,
    ]
    assert names(_pending(Kind.REMINDER, Level.EMERGENCY)) == [(Receiver.SLACK, False), mqtt]
    for ending in (Kind.RESOLVE, Kind.RENEWED):
        assert names(_pending(ending, Level.OK)) == [
            (Receiver.SLACK, False),
            (Receiver.PAGERDUTY, True),
            mqtt,
        ]
    assert names(_pending(Kind.REMINDER, Level.WARNING), Routing(slack=False, pagerduty=False)) == [
        (Receiver.LOG, False),
        mqtt,
    ]


def test_http_answers_are_classified() -> None:
    assert classify_http(429, "rate_limited", retry_after="7") == Retry(
        error="HTTP 429: rate_limited", after_s=7.0
    )
    assert isinstance(classify_http(503, "", retry_after=None), Retry)
    assert isinstance(classify_http(408, "", retry_after=None), Retry)
    for status in (400, 403, 404, 410):
        assert isinstance(classify_http(status, "no_service", retry_after=None), Failed)
