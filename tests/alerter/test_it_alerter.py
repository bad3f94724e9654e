"""The alerter against a real Mosquitto, a real PostgreSQL and a local Slack/PagerDuty receiver."""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from cbm.frames import FrameKind, encode_frame
from cbm.prediction import PredictionMessage, encode_prediction, encode_predictions
from cbm.settings import Settings
from cbm.topics import Topics, partition_of
from cbm.worker import Worker
from services.alerter.cli import ack_asset, list_alerts, show_asset
from services.alerter.stage import AlerterStage
from tests.support.mqtt import Publisher, Recorder, eventually
from tests.support.receiver import (
    NO_SERVICE,
    PAGERDUTY_PATH,
    SERVER_ERROR,
    WEBHOOK_PATH,
    Receiver,
    Reply,
    rate_limited,
)
from tests.support.workers import ProcessWorker

# The sequences below are written for the point estimate (rul_low is 0.7 x rul).
FAST = {"tick_s": 0.2, "delivery_interval_s": 0.1, "use_interval_bound": False}
PUMP = {"items": [{"id": "pump-1", "name": "Feed pump", "site": "north"}]}


def prediction(asset: str, t: datetime, rul: float, *, score: float = 0.5) -> PredictionMessage:
    return PredictionMessage(
        asset_id=asset,
        time=t,
        rul_hours=rul,
        rul_low=rul * 0.7,
        rul_high=rul * 1.4,
        health_index=min(1.0, rul / 100),
        anomaly_score=score,
        running=True,
        model_version="m-test",
        top_features=(("env_bpfo", 0.41), ("rms", 0.22)),
    )


class Feed:
    """Publish one prediction per minute of event time per asset, starting 10 minutes ago.

    As inference does: one frame per call on the asset's partition topic.

    Recent enough that no reminder (15 minutes at EMERGENCY) or staleness (30
    minutes) is due unless a test shortens those.
    """

    def __init__(self, broker: Any, settings: Settings) -> None:
        self.topics = Topics(settings.base_topic)
        self.partitions = settings.worker.partitions
        self.pub = Publisher(broker.host, broker.port)
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        self.sent: dict[str, int] = {}

    def ruls(self, asset: str, *values: float) -> None:
        batch = []
        for rul in values:
            n = self.sent[asset] = self.sent.get(asset, 0) + 1
            batch.append(prediction(asset, self.start + timedelta(minutes=n), rul))
        self.send(batch)

    def send(self, predictions: list[PredictionMessage]) -> None:
        self.raw(predictions[0].asset_id, encode_predictions(predictions))

    def topic(self, asset: str) -> str:
        return self.topics.rul(partition_of(asset, self.partitions))

    def raw(self, asset: str, payload: bytes) -> None:
        """Publish ``payload`` on the partition topic of ``asset``."""
        self.pub.send([(self.topic(asset), payload)])

    def close(self) -> None:
        self.pub.close()


def wait_online(broker: Any, settings: Settings, pid: int) -> None:
    """Wait for the worker's own online status: its subscription is in place by then."""
    rec = Recorder(broker.host, broker.port, Topics(settings.base_topic).status("alerter"))
    try:
        eventually(
            lambda: any(
                (doc := orjson.loads(m.payload))["state"] == "online" and doc["pid"] == pid
                for m in rec.messages
            ),
            timeout=20,
            message="alerter online",
        )
    finally:
        rec.close()


class AlerterThread:
    """The alerter's worker in a thread of the test process."""

    def __init__(self, settings: Settings, broker: Any) -> None:
        self.stage = AlerterStage(settings)
        self.worker: Worker[Any] = Worker(settings, self.stage)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()
        wait_online(broker, settings, os.getpid())

    def stop(self) -> None:
        self.worker.stop_event.set()
        self.thread.join(15)
        self.stage.close()
        assert not self.thread.is_alive(), "worker did not stop"


@pytest.fixture
def feed(broker, make_settings) -> Iterator[Feed]:
    f = Feed(broker, make_settings())
    yield f
    f.close()


def texts(receiver: Receiver, path: str = WEBHOOK_PATH) -> list[str]:
    return [r.json()["text"] for r in receiver.delivered(path)]


def rows(db, columns: str, where: str = "true", *, mqtt: bool = False) -> list[tuple[Any, ...]]:
    """Outbox rows; those of the MQTT copy (every alert has one) only when asked."""
    if not mqtt:
        where = f"({where}) AND receiver <> 'mqtt'"
    return db.execute(f"SELECT {columns} FROM alert WHERE {where} ORDER BY id").fetchall()


def settled(db) -> None:
    """Wait until no outbox row is pending (a receiver answers before the row is marked)."""
    eventually(
        lambda: not rows(db, "id", "delivered_at IS NULL AND failed_at IS NULL"),
        message="outbox drained",
    )


def test_rul_sequence_sends_one_message_per_transition(
    make_settings, broker, db, receiver, feed
) -> None:
    settings = make_settings(
        alerting=FAST, assets=PUMP, secrets={"slack_webhook_url": receiver.webhook_url}
    )
    alerts = Recorder(broker.host, broker.port, Topics(settings.base_topic).stage_filter("alerts"))
    alerter = AlerterThread(settings, broker)
    try:
        feed.ruls("pump-1", 60, 45, 45, 15, 15, 3, 3)
        sent = eventually(
            lambda: len(texts(receiver)) == 3 and texts(receiver), message="three Slack messages"
        )
        assert [t.split(" Feed pump")[0] for t in sent] == [
            ":warning: WARNING",
            ":red_circle: CRITICAL",
            ":rotating_light: EMERGENCY",
        ]
        assert sent[0].startswith(":warning: WARNING Feed pump (pump-1, site north)")
        assert "RUL 45.0 h (31.5–63.0 h)" in sent[0]
        assert "RUL 3.0 h (2.1–4.2 h)" in sent[2]
        assert len(receiver.on(WEBHOOK_PATH)) == 3
        settled(db)
        # Every stored alert is delivered, so nothing else is on its way.
        assert rows(db, "kind, level, receiver, episode, attempts, delivered_at IS NOT NULL") == [
            ("raise", "WARNING", "slack", 1, 1, True),
            ("escalate", "CRITICAL", "slack", 1, 1, True),
            ("escalate", "EMERGENCY", "slack", 1, 1, True),
        ]
        published = eventually(
            lambda: (
                len(alerts.on(f"{settings.base_topic}/alerts/pump-1")) == 3
                and alerts.on(f"{settings.base_topic}/alerts/pump-1")
            ),
            message="three alerts on MQTT",
        )
        docs = [orjson.loads(m.payload) for m in published]
        assert [(d["kind"], d["level"]) for d in docs] == [
            ("raise", "WARNING"),
            ("escalate", "CRITICAL"),
            ("escalate", "EMERGENCY"),
        ]
        assert docs[2]["rul_low"] == pytest.approx(2.1) and docs[2]["episode"] == 1
        state = db.execute("SELECT state, version FROM alert_state").fetchone()
        assert state[0]["channels"]["rul"]["level"] == "EMERGENCY" and state[1] == 7
    finally:
        alerter.stop()
        alerts.close()


def test_malformed_predictions_are_dead_lettered(make_settings, broker, db, receiver, feed) -> None:
    settings = make_settings(alerting=FAST, secrets={"slack_webhook_url": receiver.webhook_url})
    alerter = AlerterThread(settings, broker)
    try:
        feed.raw("pump-2", b"{not a frame")
        bad = orjson.loads(encode_prediction(prediction("pump-2", feed.start, 40.0)))
        bad["rul_low"] = 90.0  # above the point estimate
        # One bad prediction in a frame: the good one beside it still counts (with the
        # debounce of 2, the alert below needs it).
        good = prediction("pump-2", feed.start + timedelta(seconds=1), 45.0)
        mixed = {"predictions": [bad, orjson.loads(encode_prediction(good))]}
        feed.raw("pump-2", encode_frame(FrameKind.PREDICTIONS, mixed))
        other = (partition_of("pump-2", feed.partitions) + 1) % feed.partitions
        wrong = encode_predictions([prediction("pump-2", feed.start, 40.0)])
        feed.pub.send([(feed.topics.rul(other), wrong)])  # another partition's topic
        feed.ruls("pump-2", 45)
        eventually(lambda: texts(receiver), message="the good predictions still alert")
        assert db.execute("SELECT reason, asset_id FROM dead_letter ORDER BY id").fetchall() == [
            ("bad_frame", None),
            ("bad_interval", "pump-2"),
            ("asset_mismatch", "pump-2"),
        ]
        assert alerter.thread.is_alive()
    finally:
        alerter.stop()


def test_rate_limited_alert_is_delivered_once_after_retry_after(
    make_settings, broker, db, receiver, feed
) -> None:
    settings = make_settings(alerting=FAST, secrets={"slack_webhook_url": receiver.webhook_url})
    receiver.script(rate_limited(1))
    alerter = AlerterThread(settings, broker)
    try:
        feed.ruls("pump-3", 45, 45)
        eventually(
            lambda: rows(db, "delivered_at", "delivered_at IS NOT NULL"), message="delivered"
        )
        calls = receiver.on(WEBHOOK_PATH)
        assert [c.status for c in calls] == [429, 200]
        assert calls[1].received_at - calls[0].received_at >= 1.0
        assert rows(db, "attempts, failed_at") == [(1, None)]
    finally:
        alerter.stop()


def test_server_errors_delay_but_never_lose_or_repeat(
    make_settings, broker, db, receiver, feed
) -> None:
    settings = make_settings(alerting=FAST, secrets={"slack_webhook_url": receiver.webhook_url})
    # Two failed attempts (the client retries a 500 once itself), then Slack is back.
    receiver.script(SERVER_ERROR, SERVER_ERROR, SERVER_ERROR, SERVER_ERROR)
    alerter = AlerterThread(settings, broker)
    try:
        feed.ruls("pump-4", 45, 45)
        eventually(lambda: rows(db, "attempts", "attempts >= 1"), message="a failed attempt")
        feed.ruls("pump-4", 15, 15)  # queued behind the raise while Slack is down
        eventually(lambda: len(texts(receiver)) == 2, timeout=20, message="both delivered")
        assert [t.split(" ")[1] for t in texts(receiver)] == ["WARNING", "CRITICAL"]
        assert [c.status for c in receiver.on(WEBHOOK_PATH)] == [500, 500, 500, 500, 200, 200]
        settled(db)
        (raise_row, escalate_row) = rows(db, "attempts, last_error, delivered_at IS NOT NULL")
        assert raise_row[0] == 3 and "HTTP 500" in raise_row[1] and raise_row[2]
        assert escalate_row == (1, None, True)
    finally:
        alerter.stop()


def test_permanent_failure_is_recorded_and_not_retried(
    make_settings, broker, db, receiver, feed
) -> None:
    settings = make_settings(alerting=FAST, secrets={"slack_webhook_url": receiver.webhook_url})
    receiver.default = NO_SERVICE
    alerter = AlerterThread(settings, broker)
    try:
        feed.ruls("pump-5", 45, 45)
        failed = eventually(
            lambda: rows(db, "attempts, last_error", "failed_at IS NOT NULL"),
            message="permanent failure recorded",
        )
        assert failed == [(1, "HTTP 404: no_service (permanent)")]
        receiver.default = None
        feed.ruls("pump-5", 15, 15)  # the failed raise does not block what follows
        eventually(lambda: texts(receiver), message="next alert delivered")
        assert [c.status for c in receiver.on(WEBHOOK_PATH)] == [404, 200]
        settled(db)
        assert rows(db, "kind, attempts, delivered_at IS NOT NULL, failed_at IS NOT NULL") == [
            ("raise", 1, False, True),
            ("escalate", 1, True, False),
        ]
    finally:
        alerter.stop()


def test_kill_9_between_commit_and_send_sends_exactly_once(
    make_settings, broker, db, receiver, feed, tmp_path: Path
) -> None:
    """A stored alert survives kill -9 of the alerter and goes out once after the restart."""
    secrets = {"slack_webhook_url": receiver.webhook_url}
    # The delivery loop looks once at start, then not for a minute: the alert is
    # committed while nobody sends it.
    idle = make_settings(alerting={"tick_s": 0.2, "delivery_interval_s": 60}, secrets=secrets)
    alerter = ProcessWorker(idle, "alerter", tmp_path)
    try:
        feed.ruls("pump-6", 45, 45)
        eventually(lambda: rows(db, "key"), message="alert committed")
        assert receiver.requests == []
        alerter.kill()

        # Same instance, so the same MQTT session: only the delivery pace changes.
        alerter.reconfigure(
            make_settings(alerting=FAST, worker={"instance": idle.worker.instance}, secrets=secrets)
        )
        alerter.start()
        eventually(lambda: texts(receiver), timeout=20, message="sent after restart")
        feed.ruls("pump-6", 15, 15)  # the state was reloaded: an escalation, not a new raise
        eventually(lambda: len(texts(receiver)) == 2, message="escalation")
        assert [t.split(" ")[1] for t in texts(receiver)] == ["WARNING", "CRITICAL"]
        assert len(receiver.on(WEBHOOK_PATH)) == 2
        settled(db)
        assert rows(db, "kind, episode, attempts, delivered_at IS NOT NULL") == [
            ("raise", 1, 1, True),
            ("escalate", 1, 1, True),
        ]
    finally:
        if alerter.alive():
            assert alerter.terminate() == 0, alerter.output()


def test_kill_9_during_send_resends_the_alert(
    make_settings, broker, db, receiver, feed, tmp_path: Path
) -> None:
    """The window that cannot be closed: Slack took the message, the commit never came.

    Slack webhooks have no idempotency key, so the alert is sent again after
    the restart: at least once, never lost.
    """
    settings = make_settings(alerting=FAST, secrets={"slack_webhook_url": receiver.webhook_url})
    receiver.script(Reply(200, "ok", delay_s=30))
    alerter = ProcessWorker(settings, "alerter", tmp_path)
    try:
        feed.ruls("pump-7", 45, 45)
        eventually(lambda: receiver.requests, message="send in progress")
        alerter.kill()
        alerter.start()
        eventually(lambda: texts(receiver), timeout=20, message="sent again after restart")
        bodies = [r.body for r in receiver.on(WEBHOOK_PATH)]
        assert len(bodies) == 2 and bodies[0] == bodies[1]
        settled(db)
        assert rows(db, "attempts, delivered_at IS NOT NULL") == [(1, True)]
    finally:
        if alerter.alive():
            assert alerter.terminate() == 0, alerter.output()


def test_web_api_resolve_edits_the_original_message(
    make_settings, broker, db, receiver, feed
) -> None:
    settings = make_settings(
        alerting={**FAST, "slack_channel": "C0CBM", "slack_api_url": receiver.api_url},
        secrets={"slack_bot_token": "xoxb-test"},
    )
    alerter = AlerterThread(settings, broker)
    try:
        feed.ruls("pump-8", 45, 45, 70, 70)
        eventually(
            lambda: (
                receiver.delivered("chat.update")
                and len(receiver.delivered("chat.postMessage")) == 2
            ),
            message="resolve sent",
        )
        raised, resolved = receiver.delivered("chat.postMessage")
        ts = raised.answer["ts"]
        assert "thread_ts" not in raised.json()
        assert raised.json()["text"].startswith(":warning: WARNING")
        (update,) = receiver.delivered("chat.update")
        assert update.json()["ts"] == ts and update.json()["channel"] == "C0CBM"
        assert update.json()["text"].startswith(":white_check_mark: RESOLVED")
        assert resolved.json()["thread_ts"] == ts and resolved.json()["reply_broadcast"] is True
        settled(db)
        assert rows(db, "kind, via, slack_channel, slack_ts, slack_thread_ts") == [
            ("raise", "web_api", "C0CBM", ts, None),
            ("resolve", "web_api", "C0CBM", resolved.answer["ts"], ts),
        ]
    finally:
        alerter.stop()


def test_emergency_pages_pagerduty_and_resolve_closes_the_incident(
    make_settings, broker, db, receiver, feed
) -> None:
    settings = make_settings(
        alerting={**FAST, "pagerduty_url": receiver.pagerduty_url},
        secrets={"slack_webhook_url": receiver.webhook_url, "pagerduty_routing_key": "R0UTING"},
    )
    alerter = AlerterThread(settings, broker)
    try:
        feed.ruls("pump-9", 45, 45, 3, 3, 80, 80)
        events = eventually(
            lambda: (
                len(receiver.delivered(PAGERDUTY_PATH)) == 2
                and [r.json() for r in receiver.delivered(PAGERDUTY_PATH)]
            ),
            message="trigger and resolve",
        )
        assert [(e["event_action"], e["dedup_key"]) for e in events] == [
            ("trigger", "cbm-pump-9-rul-1"),
            ("resolve", "cbm-pump-9-rul-1"),
        ]
        assert events[0]["routing_key"] == "R0UTING"
        assert events[0]["payload"]["summary"].startswith("EMERGENCY pump-9")
        eventually(lambda: len(texts(receiver)) == 3, message="three Slack messages")
        assert [t.split(" ")[1] for t in texts(receiver)] == ["WARNING", "EMERGENCY", "RESOLVED"]
    finally:
        alerter.stop()


def test_ack_silences_reminders(make_settings, broker, db, receiver, feed, capsys) -> None:
    settings = make_settings(
        alerting={
            "tick_s": 0.1,
            "delivery_interval_s": 0.05,
            "warning_repeat_s": 0.3,
            "rate_limit_s": 0,
        },
        secrets={"slack_webhook_url": receiver.webhook_url},
    )
    alerter = AlerterThread(settings, broker)

    def reminders(asset: str, after: datetime | None = None) -> int:
        return db.execute(
            "SELECT count(*) FROM alert WHERE asset_id = %s AND kind = 'reminder' "
            "AND receiver = 'slack' AND (%s::timestamptz IS NULL OR created_at > %s)",
            (asset, after, after),
        ).fetchone()[0]

    try:
        feed.ruls("pump-a", 45, 45)
        feed.ruls("pump-b", 45, 45)
        eventually(
            lambda: reminders("pump-a") >= 2 and reminders("pump-b") >= 2,
            message="reminders flowing",
        )
        capsys.readouterr()
        code = ack_asset(settings, argparse.Namespace(asset="pump-a", by="alice", wait=10.0))
        assert (code, capsys.readouterr().out) == (0, "pump-a: acknowledged rul by alice\n")
        applied = db.execute(
            "SELECT ack_applied_at FROM alert_state WHERE asset_id = 'pump-a'"
        ).fetchone()[0]
        # pump-b keeps getting reminders: proof that ticks ran since the ack.
        eventually(lambda: reminders("pump-b", applied) >= 3, message="pump-b reminded again")
        assert reminders("pump-a", applied) == 0
        assert (
            db.execute(
                "SELECT count(*) FROM alert WHERE asset_id = 'pump-a' AND acked_by = 'alice'"
            ).fetchone()[0]
            >= 1
        )

        assert list_alerts(settings, argparse.Namespace(all=False)) == 0
        listed = capsys.readouterr().out.splitlines()
        assert listed[0].split() == ["ASSET", "CHANNEL", "LEVEL", "SINCE", "ACKED"]
        assert listed[1].startswith("pump-a") and "WARNING" in listed[1] and "alice" in listed[1]
        assert listed[2].startswith("pump-b") and listed[2].endswith("no")
        assert show_asset(settings, argparse.Namespace(asset="pump-a")) == 0
        shown = capsys.readouterr().out
        assert "last prediction" in shown and "reminder" in shown and "acked by alice" in shown

        assert ack_asset(settings, argparse.Namespace(asset="pump-z", by="bob", wait=1.0)) == 1
        assert "no alert state for pump-z" in capsys.readouterr().err
    finally:
        alerter.stop()


def test_message_names_the_trend_and_the_feature_that_moved(
    make_settings, broker, db, receiver, feed
) -> None:
    settings = make_settings(alerting=FAST, secrets={"slack_webhook_url": receiver.webhook_url})
    at = feed.start + timedelta(minutes=2)  # the time of the second prediction below
    db.execute(
        "INSERT INTO prediction (asset_id, time, received_at, rul_hours, rul_low, rul_high,"
        " health_index, anomaly_score, running, model_version)"
        " VALUES ('pump-f', %s, %s, 80.2, 60, 100, 0.8, 0.2, true, 'm-test')",
        (at - timedelta(hours=24), at - timedelta(hours=24)),
    )
    vectors = [(at - timedelta(hours=48) + timedelta(minutes=i), 0.5, 1.0) for i in range(30)]
    vectors += [(at - timedelta(minutes=10 - i), 3.05, 1.1) for i in range(5)]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO feature_vector (asset_id, time, seq, received_at, feature_set, running,"
            " env_bpfo, rms) VALUES ('pump-f', %s, 0, %s, 'fs1', true, %s, %s)",
            [(t, t, env, rms) for t, env, rms in vectors],
        )
    alerter = AlerterThread(settings, broker)
    try:
        feed.ruls("pump-f", 45, 45)
        (message,) = eventually(lambda: receiver.delivered(WEBHOOK_PATH), message="alert sent")
        blocks = str(message.json()["blocks"])
        assert "80.2 h → 45.0 h over 24 h (−35.2 h)" in blocks
        assert "envelope amplitude at BPFO 6.1× baseline — outer race?" in blocks
        assert "envelope amplitude at BPFO (+0.4 h if healthy)" in blocks

        # Without the other stages' tables the same asset's next message just
        # has fewer lines: the trend and the feature shift it had are gone.
        db.execute("DROP TABLE feature_vector, prediction CASCADE")
        feed.ruls("pump-f", 15, 15)
        eventually(lambda: len(receiver.delivered(WEBHOOK_PATH)) == 2, message="escalation")
        bare = str(receiver.delivered(WEBHOOK_PATH)[1].json()["blocks"])
        assert "Escalated from WARNING to CRITICAL" in bare and "RUL 15.0 h" in bare
        assert "baseline" not in bare and "Trend" not in bare
    finally:
        alerter.stop()


def test_silent_asset_goes_stale_on_slack_and_mqtt(make_settings, broker, db, receiver, feed):
    settings = make_settings(
        alerting={**FAST, "stale_after_s": 300},
        secrets={"slack_webhook_url": receiver.webhook_url},
    )
    topics = Topics(settings.base_topic)
    alerts = Recorder(broker.host, broker.port, topics.stage_filter("alerts"))
    alerter = AlerterThread(settings, broker)
    try:
        feed.ruls("pump-s", 90)  # 9 minutes old: silent for longer than 5 minutes
        (stale,) = eventually(lambda: texts(receiver), message="stale alert")
        assert stale.startswith(":warning: WARNING pump-s") and "No predictions since" in stale
        # Alerts reach MQTT through the outbox, tick alerts included.
        (raised,) = eventually(lambda: alerts.on(topics.alerts("pump-s")), message="on MQTT")
        doc = orjson.loads(raised.payload)
        assert (doc["channel"], doc["kind"], doc["level"]) == ("stale", "raise", "WARNING")
        settled(db)
        assert rows(db, "receiver, via", "channel = 'stale'", mqtt=True) == [
            ("slack", "webhook"),
            ("mqtt", "mqtt"),
        ]
        feed.send([prediction("pump-s", datetime.now(UTC), 90.0)])
        eventually(lambda: len(texts(receiver)) == 2, message="resolved")
        assert texts(receiver)[1].startswith(":white_check_mark: RESOLVED pump-s")
        assert "Predictions are arriving again" in texts(receiver)[1]
        resolved = eventually(
            lambda: (
                len(alerts.on(topics.alerts("pump-s"))) == 2
                and alerts.on(topics.alerts("pump-s"))[1]
            ),
            message="resolve on MQTT",
        )
        assert orjson.loads(resolved.payload)["kind"] == "resolve"
    finally:
        alerter.stop()
        alerts.close()
