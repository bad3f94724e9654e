"""The alerter's shell: predictions in, alert state and outbox committed, alerts delivered.

Predictions arrive batched, one frame per partition and inference batch on
``{base}/rul/{partition}``; a malformed prediction in a frame is dead-lettered
on its own and the others count. Three threads share the per-asset state held
in memory:

- the worker loop (``compute`` + ``persist``): each prediction goes through the
  rules core; the new state and its notifications are written in the worker's
  transaction, which commits before the input is acknowledged;
- the housekeeping thread: applies acknowledgements requested with
  ``cbm alerts ack`` and, every ``alerting.tick_s``, lets time pass
  (staleness, reminders), writing state and notifications in one transaction;
- the delivery thread (:mod:`services.alerter.delivery`) drains the outbox.

A lock keeps the first two from stepping the same state at once. One more rule
keeps every committed state paired with its committed notifications: the
housekeeping thread leaves alone any asset whose latest change in memory is
not committed yet. Every change bumps the asset's version, in memory and in
its row, so "memory version == row version" means "nothing of this asset is
in flight". Otherwise housekeeping could commit a state that contains a raise
whose outbox row sits in the worker's still-open transaction; a crash then
would lose the raise for good, as the redelivered prediction would be ignored
as already seen.

Alerts also go out as JSON on ``{base}/alerts/{asset}``, through the outbox
(receiver ``mqtt``) like Slack: a copy is not lost to a crash after the commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg_pool import ConnectionPool, PoolClosed

from cbm.db import TRANSIENT_ERRORS
from cbm.errors import ContractError, PublishRefusedError
from cbm.maintenance import latest_resets
from cbm.messages import DeadLetter
from cbm.mqtt import Inbound, MqttLink, Outbound
from cbm.prediction import PredictionMessage, decode_predictions
from cbm.settings import Settings
from cbm.topics import Topics, partition_of, validate_asset_id
from cbm.worker import Effects
from services.alerter import store
from services.alerter.config import check_overrides, routing, rules_for
from services.alerter.delivery import DeliveryLoop, Senders, senders_from_settings
from services.alerter.events import Ack, Notification, Prediction
from services.alerter.levels import CHANNELS
from services.alerter.outbox import (
    Outcome,
    PendingAlert,
    Retry,
    Sent,
    TopFeatures,
)
from services.alerter.policy import AlertRules
from services.alerter.rules import step_ack, step_prediction, step_renewal, step_tick
from services.alerter.state import AssetAlertState
from services.alerter.store import Tracked

log = logging.getLogger(__name__)

_ACK_POLL_S = 1.0  # how soon a `cbm alerts ack` takes effect
_PUBLISH_TIMEOUT_S = 10.0
_JOIN_TIMEOUT_S = 30.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AlerterEffects(Effects):
    """Effects of a prediction batch: new states and the notifications to store."""

    alerts: list[PendingAlert] = field(default_factory=list)
    states: dict[str, Tracked] = field(default_factory=dict)
    batch: int = 0

    def extend(self, other: Effects) -> None:
        """Add another batch's effects (a later state of the same asset wins)."""
        super().extend(other)
        if isinstance(other, AlerterEffects):
            self.alerts.extend(other.alerts)
            self.states.update(other.states)
            self.batch = max(self.batch, other.batch)


class AlerterStage:
    """Turn predictions into severity-graded alerts, stored before they are sent."""

    service = "alerter"
    record_kind = "alert"
    uses_database = True

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = _utc_now,
        senders: Senders | None = None,
    ) -> None:
        check_overrides(settings.alerting)
        self.settings = settings
        self.topics = Topics(settings.base_topic)
        self._clock = clock
        self._senders = senders
        self._routing = routing(settings)
        self._rules: dict[str, AlertRules] = {}
        self._lock = threading.Lock()
        self._states: dict[str, Tracked] = {}
        self._top_features: dict[str, TopFeatures] = {}
        # Undo record of the latest batch: if persist() never finished for it
        # (the worker quarantined it), its changes are rolled back in memory.
        self._batch = 0
        self._persisted = 0
        self._before: dict[str, Tracked | None] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool: ConnectionPool | None = None
        self._publisher: MqttLink | None = None

    # -- the Stage protocol ---------------------------------------------------

    def subscriptions(self) -> Sequence[str]:
        """Return the per-asset prediction filter."""
        return (self.topics.stage_filter("rul"),)

    def prepare(self, pool: ConnectionPool | None) -> None:
        """Load every asset's state, then start the housekeeping and delivery threads."""
        assert pool is not None
        with pool.connection() as conn:
            states = store.load_states(conn)
        with self._lock:
            self._states = states
            self._before = {}
            self._batch = self._persisted = 0
        log.info("alert state loaded for %d assets", len(states))
        self._pool = pool
        if not self._threads:
            self._start_threads(pool)

    def compute(self, batch: Sequence[Inbound]) -> AlerterEffects:
        """Step each prediction through the rules; bad input becomes a dead letter."""
        effects = AlerterEffects()
        with self._lock:
            self._undo_unpersisted()
            self._batch += 1
            effects.batch = self._batch
            self._before = {}
            for message in batch:
                try:
                    items = decode_predictions(message.payload)
                except ContractError as exc:
                    effects.dead_letters.append(self._dead(message, message.payload, exc, None))
                    continue
                for raw, item in items:
                    if isinstance(item, ContractError):
                        effects.dead_letters.append(
                            self._dead(message, raw, item, _claimed_asset(raw))
                        )
                        continue
                    try:
                        self._step(message, item, effects)
                    except ContractError as exc:
                        effects.dead_letters.append(self._dead(message, raw, exc, item.asset_id))
                    except Exception as exc:
                        # A bug on one prediction must not hold up the others' alerts.
                        log.exception("alerter failed on a prediction from %s", message.topic)
                        failed = ContractError("internal_error", repr(exc)[:500])
                        effects.dead_letters.append(self._dead(message, raw, failed, item.asset_id))
        return effects

    def persist(self, conn: psycopg.Connection[Any], effects: AlerterEffects) -> None:
        """Write the batch's new states and outbox rows in the worker's transaction."""
        store.save_states(conn, effects.states)
        store.insert_alerts(conn, effects.alerts, self._routing)
        self._persisted = effects.batch

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Stop the threads after their current step (the worker should call this on stop)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(_JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("%s did not stop within %.0fs", thread.name, _JOIN_TIMEOUT_S)

    def rules_for(self, asset_id: str) -> AlertRules:
        """Return (and cache) the rules of one asset."""
        found = self._rules.get(asset_id)
        if found is None:
            found = self._rules[asset_id] = rules_for(self.settings.alerting, asset_id)
        return found

    def housekeep(self, *, tick: bool) -> None:
        """Apply acknowledgements, repairs and, if ``tick``, let time pass for every asset."""
        pool = self._pool
        assert pool is not None
        # Take the connection before the lock: waiting for one must not stall compute().
        with pool.connection() as conn, self._lock:
            changed: dict[str, Tracked] = {}
            with conn.transaction():
                versions, acks = store.read_versions(conn)

                def settled(asset_id: str) -> Tracked | None:
                    mine = self._states.get(asset_id)
                    if mine is None or versions.get(asset_id, 0) != mine.version:
                        return None  # not ours, or a change of it is still in flight
                    return changed.get(asset_id, mine)

                for request in acks:
                    current = settled(request.asset_id)
                    if current is not None:
                        changed.update(self._apply_ack(conn, current, request))
                alerts: list[PendingAlert] = []
                for asset_id, at in latest_resets(conn).items():
                    current = settled(asset_id)
                    if current is None:
                        continue
                    state, notes = step_renewal(current.state, at)
                    if state != current.state:
                        changed[asset_id] = Tracked(state, self._states[asset_id].version + 1)
                        log.info("%s was repaired or replaced at %s: alerts reset", asset_id, at)
                    alerts.extend(self._pending(n, state) for n in notes)
                if tick:
                    now = self._clock()
                    for asset_id in list(self._states):
                        current = settled(asset_id)
                        if current is None:
                            continue
                        state, notes = step_tick(current.state, now, self.rules_for(asset_id))
                        if state != current.state:
                            changed[asset_id] = Tracked(state, self._states[asset_id].version + 1)
                        alerts.extend(self._pending(n, state) for n in notes)
                store.save_states(conn, changed)
                store.insert_alerts(conn, alerts, self._routing)
            # Committed: only now may memory move on.
            self._states.update(changed)

    # -- internals ----------------------------------------------------------------

    def _step(self, message: Inbound, p: PredictionMessage, effects: AlerterEffects) -> None:
        partition = partition_of(p.asset_id, self.settings.worker.partitions)
        if message.topic != self.topics.rul(partition):
            raise ContractError("asset_mismatch", f"prediction of {p.asset_id} on {message.topic}")
        # Ingest bounds every event time by this much; a later one would become
        # the asset's "last prediction" and every real one after it would be
        # ignored as old: its alerts silenced for good.
        ahead = timedelta(seconds=self.settings.ingest.max_future_s)
        if p.time > self._clock() + ahead:
            raise ContractError("future_timestamp", f"prediction at {p.time.isoformat()}")
        try:
            prediction = Prediction(
                asset_id=p.asset_id,
                time=p.time,
                rul_hours=p.rul_hours,
                rul_low=p.rul_low,
                rul_high=p.rul_high,
                anomaly_score=p.anomaly_score,
                running=p.running,
                model_version=p.model_version,
            )
        except ValueError as exc:
            raise ContractError("bad_interval", str(exc)[:200]) from None
        effects.lags_s.append((message.received_at - p.time).total_seconds())
        tracked = self._states.get(p.asset_id)
        before = None if tracked is None else tracked.state
        state, notes = step_prediction(before, prediction, self.rules_for(p.asset_id))
        if tracked is not None and state == tracked.state:
            return  # a repeat or late prediction: nothing moves
        if p.asset_id not in self._before:
            self._before[p.asset_id] = tracked
        updated = Tracked(state, 1 if tracked is None else tracked.version + 1)
        self._states[p.asset_id] = effects.states[p.asset_id] = updated
        self._top_features[p.asset_id] = p.top_features
        for n in notes:
            effects.alerts.append(self._pending(n, state))
            effects.records += 1

    def _undo_unpersisted(self) -> None:
        if self._batch == self._persisted or not self._before:
            return
        log.warning(
            "the previous batch was never stored; undoing its changes to %s",
            ", ".join(sorted(self._before)),
        )
        for asset_id, tracked in self._before.items():
            if tracked is None:
                self._states.pop(asset_id, None)
            else:
                self._states[asset_id] = tracked

    def _apply_ack(
        self, conn: psycopg.Connection[Any], current: Tracked, request: store.AckRequest
    ) -> dict[str, Tracked]:
        asset_id = request.asset_id
        ack = Ack(asset_id=asset_id, now=request.requested_at, by=request.by)
        state, had_active = step_ack(current.state, ack)
        if not had_active:
            store.finish_ack(conn, request, "nothing active to acknowledge")
            return {}
        active = [c for c in CHANNELS if state.channel(c).active]
        for channel in active:
            store.mark_acked(conn, asset_id, channel, state.channel(channel).episode, request.by)
        names = ", ".join(c.value for c in active)
        store.finish_ack(conn, request, f"acknowledged {names} by {request.by}")
        log.info("alerts of %s (%s) acknowledged by %s", asset_id, names, request.by)
        if state == current.state:
            return {}
        return {asset_id: Tracked(state, self._states[asset_id].version + 1)}

    def _pending(self, notification: Notification, state: AssetAlertState) -> PendingAlert:
        last = state.last_prediction
        return PendingAlert(
            notification=notification,
            prediction_time=None if last is None else last.time,
            episode_started_at=state.channel(notification.channel).episode_started_at,
            top_features=self._top_features.get(notification.asset_id, ()),
        )

    def _dead(
        self, message: Inbound, payload: bytes, exc: ContractError, asset_id: str | None
    ) -> DeadLetter:
        """Return the dead letter of a whole frame, or of one prediction in it (``payload``)."""
        log.warning("invalid prediction on %s (%s): %.200r", message.topic, exc.reason, payload)
        return DeadLetter.of(
            self.service,
            exc,
            topic=message.topic,
            payload=payload,
            received_at=message.received_at,
            asset_id=asset_id,
        )

    def _start_threads(self, pool: ConnectionPool) -> None:
        instance = self.settings.worker.instance
        self._publisher = MqttLink(self.settings, client_id=f"cbm-alerter-{instance}-out")
        self._publisher.start()
        senders = self._senders or senders_from_settings(self.settings)
        senders = dataclasses.replace(senders, mqtt=senders.mqtt or self._publish)
        delivery = DeliveryLoop(
            self.settings, pool, senders=senders, rules_for=self.rules_for, stop=self._stop
        )
        # Not daemons: at exit Python waits for them, so a send in progress is
        # recorded before the process ends; they stop once the pool is closed.
        self._threads = [
            threading.Thread(target=self._run_delivery, args=(delivery,), name="alert-delivery"),
            threading.Thread(target=self._run_housekeeping, name="alert-housekeeping"),
        ]
        for thread in self._threads:
            thread.start()

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._pool is None or self._pool.closed

    def _run_delivery(self, delivery: DeliveryLoop) -> None:
        try:
            delivery.run()
        finally:
            if self._publisher is not None:
                self._publisher.stop()

    def _run_housekeeping(self) -> None:
        alerting = self.settings.alerting
        poll = min(_ACK_POLL_S, alerting.tick_s)
        # The first tick waits a period: right after a restart the broker is
        # still handing over the predictions it queued, and ticking before
        # they are in would call every asset stale.
        next_tick = time.monotonic() + alerting.tick_s
        while not self._stopping():
            started = time.monotonic()
            due = started >= next_tick
            try:
                self.housekeep(tick=due)
                if due:
                    next_tick = started + alerting.tick_s
            except PoolClosed:
                break
            except TRANSIENT_ERRORS as exc:
                log.warning("alert housekeeping skipped: database unavailable (%s)", exc)
            except Exception:
                log.exception("alert housekeeping failed; trying again next round")
            self._stop.wait(poll)

    def _publish(self, topic: str, payload: bytes) -> Outcome:
        link = self._publisher
        if link is None or not link.connected:
            return Retry(error="MQTT broker not connected", after_s=1.0)
        # publish() waits for the PUBACK; give up after a while if the link drops.
        give_up = threading.Event()
        timer = threading.Timer(_PUBLISH_TIMEOUT_S, give_up.set)
        timer.start()
        try:
            if link.publish([Outbound(topic, payload)], stop=give_up):
                return Sent(via="mqtt")
        except PublishRefusedError as exc:  # e.g. the ACL does not allow the topic
            return Retry(error=str(exc))
        finally:
            timer.cancel()
        return Retry(error="MQTT broker did not acknowledge")


def _claimed_asset(document: bytes) -> str | None:
    """Return the valid asset id a malformed prediction names, if any."""
    with contextlib.suppress(ContractError, orjson.JSONDecodeError, AttributeError):
        claimed = orjson.loads(document).get("asset_id")
        return validate_asset_id(claimed) if isinstance(claimed, str) else None
    return None
