"""Turn the alerting settings into the rules core's policy and the outbox's routing."""

from __future__ import annotations

from datetime import timedelta

from cbm.errors import SettingsError
from cbm.settings import AlertingSettings, Settings, ThresholdOverride
from services.alerter.outbox import Routing
from services.alerter.policy import AlertRules


def rules_for(alerting: AlertingSettings, asset_id: str) -> AlertRules:
    """Return the alert rules of one asset: the global ones with its overrides applied."""
    own = alerting.overrides.get(asset_id) or ThresholdOverride()

    def pick(value: float | None, default: float) -> float:
        return default if value is None else value

    return AlertRules(
        warning_hours=pick(own.warning_hours, alerting.warning_hours),
        critical_hours=pick(own.critical_hours, alerting.critical_hours),
        emergency_hours=pick(own.emergency_hours, alerting.emergency_hours),
        hysteresis_hours=alerting.hysteresis_hours,
        debounce_count=alerting.debounce_count,
        rate_limit=timedelta(seconds=alerting.rate_limit_s),
        warning_repeat=timedelta(seconds=alerting.warning_repeat_s),
        critical_repeat=timedelta(seconds=alerting.critical_repeat_s),
        emergency_repeat=timedelta(seconds=alerting.emergency_repeat_s),
        use_interval_bound=alerting.use_interval_bound,
        anomaly_threshold=alerting.anomaly_threshold,
        anomaly_margin=alerting.anomaly_margin,
        stale_after=timedelta(seconds=alerting.stale_after_s),
    )


def check_overrides(alerting: AlertingSettings) -> None:
    """Fail at start, naming the key, if an asset's overrides break the threshold order."""
    for asset_id in sorted(alerting.overrides):
        try:
            rules_for(alerting, asset_id)
        except ValueError as exc:
            raise SettingsError(f"alerting.overrides.{asset_id}: {exc}") from None


def routing(settings: Settings) -> Routing:
    """Return which receivers this process can deliver to."""
    secrets, alerting = settings.secrets, settings.alerting
    web_api = secrets.slack_bot_token is not None and alerting.slack_channel is not None
    return Routing(
        slack=web_api or secrets.slack_webhook_url is not None,
        pagerduty=secrets.pagerduty_routing_key is not None,
    )
