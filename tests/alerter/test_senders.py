"""The Slack and PagerDuty clients against a real local HTTP server (no broker, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.alerter.levels import Channel, Kind, Level
from services.alerter.message import RenderedMessage
from services.alerter.outbox import AlertRow, Failed, Retry, Sent
from services.alerter.outbox import Receiver as Dest
from services.alerter.pagerduty import PagerDuty, event
from services.alerter.slack import SlackWebApi, SlackWebhook
from services.broker.local import free_port
from tests.support.receiver import (
    API_PATH,
    NO_SERVICE,
    PAGERDUTY_PATH,
    SERVER_ERROR,
    WEBHOOK_PATH,
    Receiver,
    Reply,
    rate_limited,
)

MESSAGE = RenderedMessage(
    text="hello",
    blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}],
    summary="hello",
)
T = datetime(2026, 12, 4, 10, tzinfo=UTC)


def test_webhook_ok_posts_text_and_blocks(receiver: Receiver) -> None:
    assert SlackWebhook(receiver.webhook_url).post(MESSAGE) == Sent(via="webhook")
    (request,) = receiver.on(WEBHOOK_PATH)
    assert request.json() == {"text": "hello", "blocks": MESSAGE.blocks}


def test_webhook_short_rate_limit_is_retried_in_process(receiver: Receiver) -> None:
    receiver.script(rate_limited(1))
    assert SlackWebhook(receiver.webhook_url).post(MESSAGE) == Sent(via="webhook")
    assert [r.status for r in receiver.on(WEBHOOK_PATH)] == [429, 200]
    first, second = receiver.on(WEBHOOK_PATH)
    assert second.received_at - first.received_at >= 1.0


def test_webhook_long_rate_limit_is_left_to_the_outbox(receiver: Receiver) -> None:
    receiver.script(rate_limited(120))
    outcome = SlackWebhook(receiver.webhook_url).post(MESSAGE)
    assert outcome == Retry(error="HTTP 429: rate_limited", after_s=120.0)
    assert len(receiver.on(WEBHOOK_PATH)) == 1


def test_webhook_server_error_is_retried_once_then_reported(receiver: Receiver) -> None:
    receiver.script(SERVER_ERROR, SERVER_ERROR)
    outcome = SlackWebhook(receiver.webhook_url).post(MESSAGE)
    assert isinstance(outcome, Retry) and "500" in outcome.error
    assert len(receiver.on(WEBHOOK_PATH)) == 2


def test_webhook_no_service_is_permanent(receiver: Receiver) -> None:
    receiver.script(NO_SERVICE)
    assert SlackWebhook(receiver.webhook_url).post(MESSAGE) == Failed(error="HTTP 404: no_service")
    assert len(receiver.on(WEBHOOK_PATH)) == 1


def test_webhook_unreachable_is_transient(no_proxy: None) -> None:
    outcome = SlackWebhook(f"http://127.0.0.1:{free_port()}/hook").post(MESSAGE)
    assert isinstance(outcome, Retry) and "unreachable" in outcome.error


def test_web_api_posts_replies_and_updates(receiver: Receiver) -> None:
    api = SlackWebApi("xoxb-test", "C0CBM", base_url=receiver.api_url)
    first = api.post(MESSAGE)
    assert isinstance(first, Sent) and first.slack_channel == "C0CBM" and first.slack_ts
    assert first.slack_thread_ts is None
    reply = api.post(MESSAGE, thread_ts=first.slack_ts, broadcast=True)
    assert isinstance(reply, Sent) and reply.slack_thread_ts == first.slack_ts
    assert api.update("C0CBM", first.slack_ts, MESSAGE) == Sent(
        via="web_api", slack_channel="C0CBM", slack_ts=first.slack_ts
    )
    posted = receiver.on("chat.postMessage")
    assert posted[0].headers["Authorization"] == "Bearer xoxb-test"
    assert posted[1].json()["thread_ts"] == first.slack_ts
    assert posted[1].json()["reply_broadcast"] is True
    assert receiver.on("chat.update")[0].json()["ts"] == first.slack_ts


def test_web_api_errors_are_classified(receiver: Receiver) -> None:
    api = SlackWebApi("xoxb-test", "C0CBM", base_url=receiver.api_url)
    receiver.script(Reply(200, {"ok": False, "error": "channel_not_found"}))
    assert api.post(MESSAGE) == Failed(error="chat.postMessage: channel_not_found")
    receiver.script(Reply(200, {"ok": False, "error": "internal_error"}))
    assert isinstance(api.post(MESSAGE), Retry)
    receiver.script(Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "60"}))
    assert api.update("C0CBM", "1.2", MESSAGE) == Retry(
        error="chat.update HTTP 429: ratelimited", after_s=60.0
    )


def _row(kind: Kind, level: Level) -> AlertRow:
    return AlertRow(
        id=1,
        key="k",
        receiver=Dest.PAGERDUTY,
        asset_id="pump-9",
        channel=Channel.RUL,
        kind=kind,
        level=level,
        previous_level=Level.CRITICAL,
        episode=2,
        episode_started_at=T,
        time=T,
        prediction_time=T,
        rul_hours=3,
        rul_low=2,
        rul_high=4,
        anomaly_score=1,
        model_version="m",
        top_features=(),
        attempts=0,
    )


def test_pagerduty_trigger_and_resolve_share_the_episode_key(receiver: Receiver) -> None:
    pd = PagerDuty(receiver.pagerduty_url, "R0UTING")
    trigger = event(
        _row(Kind.ESCALATE, Level.EMERGENCY),
        MESSAGE,
        routing_key="R0UTING",
        link="http://g",
        site="north",
    )
    resolve = event(
        _row(Kind.RESOLVE, Level.OK), MESSAGE, routing_key="R0UTING", link="http://g", site="north"
    )
    assert pd.send(trigger) == Sent(via="events_v2")
    assert pd.send(resolve) == Sent(via="events_v2")
    sent = [r.json() for r in receiver.on(PAGERDUTY_PATH)]
    assert [(d["event_action"], d["dedup_key"]) for d in sent] == [
        ("trigger", "cbm-pump-9-rul-2"),
        ("resolve", "cbm-pump-9-rul-2"),
    ]
    assert sent[0]["payload"]["severity"] == "critical"
    assert sent[0]["routing_key"] == "R0UTING"


def test_pagerduty_answers_are_classified(receiver: Receiver) -> None:
    pd = PagerDuty(receiver.pagerduty_url, "R0UTING")
    body = {"routing_key": "R0UTING", "event_action": "resolve", "dedup_key": "x"}
    receiver.script(Reply(400, {"status": "invalid event"}))
    assert isinstance(pd.send(body), Failed)
    receiver.script(Reply(429, {"status": "throttled"}))
    assert isinstance(pd.send(body), Retry)
    receiver.script(SERVER_ERROR)
    assert isinstance(pd.send(body), Retry)
    assert len(receiver.on(API_PATH)) == 0
