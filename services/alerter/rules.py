"""Fold predictions, ticks and acknowledgements into per-asset alert state and notifications.

Pure: no I/O, no clock, no globals. Time comes only from the events, so replaying
the same events from the same state yields the same notifications and keys.

Each asset has three channels (``rul``, ``anomaly``, ``stale``); each channel is a
small state machine. Every event computes a *target level* per channel, then:

- target worse than now: raise (from OK, new episode) or escalate; always sent.
- target OK, now active: resolve; always sent, same episode as the raise.
- target better but not OK: downgrade; sent unless rate-limited at that level.
- target unchanged and active: a reminder if the level's repeat interval has
  passed since the channel's last sent notification, the episode is not
  acknowledged, reminders are not paused (machine off) and the rate limit allows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime

from services.alerter.events import Ack, Notification, Prediction, ensure_utc, notification_key
from services.alerter.levels import CHANNELS, Channel, Kind, Level
from services.alerter.policy import AlertRules
from services.alerter.state import AssetAlertState, ChannelState

_RUL_LEVELS_WORST_FIRST = (Level.EMERGENCY, Level.CRITICAL, Level.WARNING)

Step = tuple[AssetAlertState, list[Notification]]


def step_prediction(
    state: AssetAlertState | None, prediction: Prediction, rules: AlertRules
) -> Step:
    """Apply one prediction to an asset's state; return the new state and notifications.

    A prediction not newer than the last one seen (a redelivery or late data) is
    ignored: it is stored elsewhere, but must not move the alert state backwards.
    So is one from before the asset's latest repair or replacement.
    """
    if state is None:
        state = AssetAlertState(asset_id=prediction.asset_id)
    _require_same_asset(state, prediction.asset_id)
    last = state.last_prediction
    if last is not None and prediction.time <= last.time:
        return state, []
    if state.renewed_at is not None and prediction.time <= state.renewed_at:
        return state, []  # about the bearing a repair or replacement took out

    at = prediction.time
    state = dataclasses.replace(state, last_prediction=prediction)
    # Any prediction is data, running or not, so it ends a staleness episode.
    state, notifications = _advance(
        state, Channel.STALE, target=Level.OK, at=at, source=prediction, rules=rules, remind=False
    )
    if not prediction.running:
        # A machine that is off is not degrading: no level changes, no debounce
        # progress, no reminders until it runs again.
        return state, notifications

    recent = (*state.recent, prediction)[-rules.debounce_count :]
    state = dataclasses.replace(state, recent=recent)
    targets = {
        Channel.RUL: _rul_target(state, rules),
        Channel.ANOMALY: _anomaly_target(state, rules),
    }
    for channel, target in targets.items():
        state, sent = _advance(
            state, channel, target=target, at=at, source=prediction, rules=rules, remind=True
        )
        notifications += sent
    return state, notifications


def step_renewal(state: AssetAlertState, at: datetime) -> Step:
    """Apply a repair or replacement recorded for event time ``at``.

    Every open episode closes with a RENEWED notification (whatever the rate
    limit: the people on it must hear that it is over), the debounce window
    empties, and predictions up to ``at`` are ignored from now on. An event not
    newer than the last one applied changes nothing, so applying the same
    event again (after a restart, say) is a no-op.
    """
    at = ensure_utc(at, "at")
    if state.renewed_at is not None and at <= state.renewed_at:
        return state, []
    state = dataclasses.replace(state, renewed_at=at, recent=())
    source = state.last_prediction
    notifications: list[Notification] = []
    for channel in CHANNELS:
        current = state.channel(channel)
        if not current.active:
            continue
        closed = dataclasses.replace(current, level=Level.OK, acked_by=None, acked_at=None)
        state = state.with_channel(channel, closed)
        if source is not None:
            state, sent = _send(
                state, channel, kind=Kind.RENEWED, previous=current.level, at=at, source=source
            )
            notifications += sent
    return state, notifications


def step_tick(state: AssetAlertState, now: datetime, rules: AlertRules) -> Step:
    """Let wall-clock time pass for one asset: raise staleness, send due reminders."""
    now = ensure_utc(now, "now")
    last = state.last_prediction
    if last is None:
        return state, []

    stale_level = state.channel(Channel.STALE).level
    if now - last.time > rules.stale_after:
        stale_level = Level.WARNING
    state, notifications = _advance(
        state, Channel.STALE, target=stale_level, at=now, source=last, rules=rules, remind=True
    )
    for channel in (Channel.RUL, Channel.ANOMALY):
        # The last known running flag decides: reminders pause while the machine is off.
        state, sent = _advance(
            state,
            channel,
            target=state.channel(channel).level,
            at=now,
            source=last,
            rules=rules,
            remind=last.running,
        )
        notifications += sent
    return state, notifications


def step_ack(state: AssetAlertState, ack: Ack) -> tuple[AssetAlertState, bool]:
    """Silence reminders of every active channel until its episode resolves.

    Return False, with the state unchanged, when nothing is active to acknowledge.
    """
    _require_same_asset(state, ack.asset_id)
    active = [channel for channel in CHANNELS if state.channel(channel).active]
    for channel in active:
        current = state.channel(channel)
        if not current.acked:
            acked = dataclasses.replace(current, acked_by=ack.by, acked_at=ack.now)
            state = state.with_channel(channel, acked)
    return state, bool(active)


def _require_same_asset(state: AssetAlertState, asset_id: str) -> None:
    if state.asset_id != asset_id:
        msg = f"event for asset {asset_id!r} applied to the state of {state.asset_id!r}"
        raise ValueError(msg)


def _effective_rul(prediction: Prediction, rules: AlertRules) -> float:
    return prediction.rul_low if rules.use_interval_bound else prediction.rul_hours


def _rul_entry_level(rul: float, rules: AlertRules) -> Level:
    """Return the worst level whose threshold ``rul`` is below."""
    for level in _RUL_LEVELS_WORST_FIRST:
        if rul < rules.threshold(level):
            return level
    return Level.OK


def _rul_held_level(rul: float, current: Level, rules: AlertRules) -> Level:
    """Return the worst level, at most ``current``, that ``rul`` has not risen out of."""
    for level in _RUL_LEVELS_WORST_FIRST:
        if level <= current and rul <= rules.threshold(level) + rules.hysteresis_hours:
            return level
    return Level.OK


def _anomaly_entry_level(prediction: Prediction, rules: AlertRules) -> Level:
    # A low RUL is the rul channel's business; the anomaly channel warns early.
    healthy = _effective_rul(prediction, rules) >= rules.warning_hours
    anomalous = prediction.anomaly_score > rules.anomaly_threshold
    return Level.WARNING if healthy and anomalous else Level.OK


def _anomaly_held_level(prediction: Prediction, current: Level, rules: AlertRules) -> Level:
    if current == Level.OK:
        return Level.OK
    cleared = prediction.anomaly_score < rules.anomaly_threshold - rules.anomaly_margin
    return Level.OK if cleared else current


def _rul_target(state: AssetAlertState, rules: AlertRules) -> Level:
    return _debounced_target(
        state.recent,
        state.channel(Channel.RUL).level,
        rules,
        entered=lambda p: _rul_entry_level(_effective_rul(p, rules), rules),
        held=lambda p, current: _rul_held_level(_effective_rul(p, rules), current, rules),
    )


def _anomaly_target(state: AssetAlertState, rules: AlertRules) -> Level:
    return _debounced_target(
        state.recent,
        state.channel(Channel.ANOMALY).level,
        rules,
        entered=lambda p: _anomaly_entry_level(p, rules),
        held=lambda p, current: _anomaly_held_level(p, current, rules),
    )


def _debounced_target(
    recent: Sequence[Prediction],
    current: Level,
    rules: AlertRules,
    *,
    entered: Callable[[Prediction], Level],
    held: Callable[[Prediction, Level], Level],
) -> Level:
    """Return the level the last ``debounce_count`` readings agree on.

    Escalate to the worst level *every* reading entered; otherwise move down only
    as far as *every* reading has left (the worst level any reading still holds).
    """
    if len(recent) < rules.debounce_count:
        return current
    worse = min(entered(p) for p in recent)
    if worse > current:
        return worse
    return max(held(p, current) for p in recent)


def _advance(
    state: AssetAlertState,
    channel: Channel,
    *,
    target: Level,
    at: datetime,
    source: Prediction,
    rules: AlertRules,
    remind: bool,
) -> Step:
    """Move one channel to ``target``, or remind if it stays active; return what to send."""
    current = state.channel(channel)
    if target > current.level:
        moved = dataclasses.replace(current, level=target, acked_by=None, acked_at=None)
        kind = Kind.ESCALATE
        if not current.active:
            kind = Kind.RAISE
            moved = dataclasses.replace(moved, episode=current.episode + 1, episode_started_at=at)
    elif target == current.level:
        if remind and _reminder_due(current, at, rules):
            return _send(
                state, channel, kind=Kind.REMINDER, previous=current.level, at=at, source=source
            )
        return state, []
    elif target == Level.OK:
        moved = dataclasses.replace(current, level=target, acked_by=None, acked_at=None)
        kind = Kind.RESOLVE
    else:
        moved = dataclasses.replace(current, level=target)
        if _rate_limited(current, target, at, rules):
            return state.with_channel(channel, moved), []
        kind = Kind.DOWNGRADE
    moved_state = state.with_channel(channel, moved)
    return _send(moved_state, channel, kind=kind, previous=current.level, at=at, source=source)


def _rate_limited(current: ChannelState, level: Level, at: datetime, rules: AlertRules) -> bool:
    last_sent = current.last_sent_by_level.get(level)
    return last_sent is not None and at - last_sent < rules.rate_limit


def _reminder_due(current: ChannelState, at: datetime, rules: AlertRules) -> bool:
    if not current.active or current.acked:
        return False
    since = current.last_sent_at or current.episode_started_at
    if since is not None and at - since < rules.repeat_interval(current.level):
        return False
    return not _rate_limited(current, current.level, at, rules)


def _send(
    state: AssetAlertState,
    channel: Channel,
    *,
    kind: Kind,
    previous: Level,
    at: datetime,
    source: Prediction,
) -> Step:
    """Build the notification for the channel's current level and record that it went out."""
    current = state.channel(channel)
    notification = Notification(
        asset_id=state.asset_id,
        channel=channel,
        kind=kind,
        level=current.level,
        previous_level=previous,
        time=at,
        episode=current.episode,
        rul_hours=source.rul_hours,
        rul_low=source.rul_low,
        rul_high=source.rul_high,
        anomaly_score=source.anomaly_score,
        model_version=source.model_version,
        key=notification_key(
            asset_id=state.asset_id,
            channel=channel,
            episode=current.episode,
            kind=kind,
            level=current.level,
            time=at,
        ),
    )
    sent = dataclasses.replace(
        current,
        last_sent_at=at,
        last_sent_by_level={**current.last_sent_by_level, current.level: at},
    )
    return state.with_channel(channel, sent), [notification]
