"""Deliver the alert outbox: one row at a time, oldest first, marked in the same transaction.

Each attempt is one transaction: lock the next due row (``FOR UPDATE SKIP
LOCKED``), gather the facts for the message, send, record the outcome, commit.
Nothing is sent before the row is locked, and the row is marked delivered
right after the receiver answered, so a row is sent again only if the process
dies in the window between the receiver taking the message and the commit (one
HTTP answer plus one UPDATE and COMMIT). That window cannot be closed from
here: Slack's webhooks and ``chat.postMessage`` take no idempotency key, so a
crash inside it means the message appears twice. PagerDuty's dedup key makes a
repeat harmless there. The alternative, marking before sending, would turn the
same crash into a lost alert, which is worse.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed

from cbm.db import TRANSIENT_ERRORS
from cbm.settings import Settings
from cbm.topics import Topics
from services.alerter import facts, store
from services.alerter.levels import Kind
from services.alerter.message import (
    MessageContext,
    RenderedMessage,
    biggest_shift,
    grafana_link,
    link_range,
    render,
)
from services.alerter.outbox import AlertRow, Failed, Outcome, Receiver, Retry, Sent, encode_alert
from services.alerter.pagerduty import PagerDuty, event
from services.alerter.policy import AlertRules
from services.alerter.slack import SlackWebApi, SlackWebhook

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0
_PAUSE_SLICE_S = 0.5

Publish = Callable[[str, bytes], Outcome]


@dataclass(frozen=True, kw_only=True)
class Senders:
    """The receivers this process can reach (None: not configured)."""

    slack_webhook: SlackWebhook | None = None
    slack_api: SlackWebApi | None = None
    pagerduty: PagerDuty | None = None
    mqtt: Publish | None = None


def senders_from_settings(settings: Settings, *, mqtt: Publish | None = None) -> Senders:
    """Build the configured receivers' clients from the settings and secrets."""
    secrets, alerting = settings.secrets, settings.alerting
    webhook = api = pagerduty = None
    if secrets.slack_webhook_url is not None:
        webhook = SlackWebhook(secrets.slack_webhook_url.get_secret_value())
    if secrets.slack_bot_token is not None and alerting.slack_channel is not None:
        api = SlackWebApi(
            secrets.slack_bot_token.get_secret_value(),
            alerting.slack_channel,
            base_url=alerting.slack_api_url,
        )
    if secrets.pagerduty_routing_key is not None:
        pagerduty = PagerDuty(
            alerting.pagerduty_url, secrets.pagerduty_routing_key.get_secret_value()
        )
    return Senders(slack_webhook=webhook, slack_api=api, pagerduty=pagerduty, mqtt=mqtt)


class DeliveryLoop:
    """Drain the outbox until stopped (the target of the alerter's delivery thread)."""

    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool,
        *,
        senders: Senders,
        rules_for: Callable[[str], AlertRules],
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.base_topic)
        self._pool = pool
        self._senders = senders
        self._rules_for = rules_for
        self._stop = stop

    def stopping(self) -> bool:
        """Return whether to finish: asked to, or the worker closed the pool."""
        return self._stop.is_set() or self._pool.closed

    def run(self) -> None:
        """Deliver due rows; sleep ``delivery_interval_s`` when there are none."""
        interval = self.settings.alerting.delivery_interval_s
        delay = interval
        while not self.stopping():
            try:
                if self.deliver_one():
                    delay = interval
                    continue
            except PoolClosed:
                break
            except TRANSIENT_ERRORS as exc:
                log.warning("alert delivery paused: database unavailable (%s)", exc)
                delay = min(delay * 2, self.settings.worker.retry_max_s)
                self._pause(delay)
                continue
            except Exception:
                log.exception("alert delivery failed; trying again shortly")
            self._pause(interval)

    def _pause(self, seconds: float) -> None:
        # In slices: a closed pool (the worker stopping) sets no event to wake us.
        deadline = time.monotonic() + seconds
        while not self.stopping():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._stop.wait(min(remaining, _PAUSE_SLICE_S))

    def deliver_one(self) -> bool:
        """Deliver the next due row; return False if there was none."""
        with self._pool.connection() as conn, conn.transaction():
            row = store.claim_next(conn)
            if row is None:
                return False
            try:
                outcome = self._send(conn, row)
            except psycopg.Error:
                raise
            except Exception as exc:
                # A bug must not pin the row: count it as a failed attempt.
                log.exception("sending alert %s to %s failed", row.key, row.receiver)
                outcome = Retry(error=f"internal error: {exc!r}"[:500])
            alerting = self.settings.alerting
            backoff = min(alerting.delivery_interval_s * 2**row.attempts, MAX_BACKOFF_S)
            store.record_outcome(
                conn,
                row,
                outcome,
                max_attempts=alerting.max_attempts,
                backoff_s=backoff,
            )
        _log_outcome(row, outcome)
        return True

    def _send(self, conn: store.Conn, row: AlertRow) -> Outcome:
        if row.receiver == Receiver.MQTT:
            if self._senders.mqtt is None:
                return Failed(error="no MQTT publisher in this process")
            payload = encode_alert(row.notification(), row.top_features)
            return self._senders.mqtt(self.topics.alerts(row.asset_id), payload)
        message = render(row, self._context(conn, row))
        if row.receiver == Receiver.LOG:
            log.warning("ALERT %s", message.summary)
            return Sent(via="log")
        if row.receiver == Receiver.PAGERDUTY:
            pagerduty = self._senders.pagerduty
            if pagerduty is None:
                return Failed(error="PagerDuty is not configured in this process")
            link = grafana_link(self.settings.alerting.grafana_url, row.asset_id, *link_range(row))
            site = self.settings.assets.resolve(row.asset_id).site
            body = event(row, message, routing_key=pagerduty.routing_key, link=link, site=site)
            return pagerduty.send(body)
        if self._senders.slack_api is not None:
            return self._to_slack_api(conn, row, message, self._senders.slack_api)
        if self._senders.slack_webhook is not None:
            return self._senders.slack_webhook.post(message)
        return Failed(error="Slack is not configured in this process")

    def _to_slack_api(
        self, conn: store.Conn, row: AlertRow, message: RenderedMessage, api: SlackWebApi
    ) -> Outcome:
        """Start an episode's thread with its raise; edit the raise and reply in its thread later.

        The top message always shows the episode's latest state (escalations,
        downgrades and the resolve edit it in place); the thread keeps the
        history, and escalations, reminders and the resolve are also broadcast
        to the channel so nobody misses them. The edit goes first: it is
        idempotent, so only the reply, sent last, can repeat after a crash.
        """
        anchor = None if row.kind == Kind.RAISE else store.slack_anchor(conn, row)
        if anchor is None:
            return api.post(message)
        channel, ts = anchor
        note = None
        if row.kind in (Kind.ESCALATE, Kind.DOWNGRADE) or row.kind.ends_episode:
            edited = api.update(channel, ts, message)
            if isinstance(edited, Retry):
                return edited
            if isinstance(edited, Failed):
                note = f"original message not edited: {edited.error}"
        reply = api.post(
            message, channel=channel, thread_ts=ts, broadcast=row.kind != Kind.DOWNGRADE
        )
        if isinstance(reply, Sent) and note is not None:
            return dataclasses.replace(reply, note=note)
        return reply

    def _context(self, conn: store.Conn, row: AlertRow) -> MessageContext:
        asset = self.settings.assets.resolve(row.asset_id)
        at = row.prediction_time or row.time
        # Trend and feature shift are Slack fields only: the log line and
        # PagerDuty carry the summary, so their rows skip those queries.
        slack = row.receiver == Receiver.SLACK
        levels = facts.feature_levels(conn, row.asset_id, at) if slack else None
        return MessageContext(
            asset_name=asset.name or asset.id,
            site=asset.site,
            rules=self._rules_for(row.asset_id),
            grafana_url=self.settings.alerting.grafana_url,
            trend=facts.trend(conn, row.asset_id, at, row.rul_hours) if slack else None,
            shift=None if levels is None else biggest_shift(*levels),
        )


def _log_outcome(row: AlertRow, outcome: Outcome) -> None:
    if isinstance(outcome, Sent):
        log.info("alert %s delivered to %s via %s", row.key, row.receiver, outcome.via)
        if outcome.note:
            log.warning("alert %s: %s", row.key, outcome.note)
    elif isinstance(outcome, Retry):
        log.warning(
            "alert %s to %s not delivered (attempt %d): %s",
            row.key,
            row.receiver,
            row.attempts + 1,
            outcome.error,
        )
    else:
        log.error("alert %s to %s failed for good: %s", row.key, row.receiver, outcome.error)
