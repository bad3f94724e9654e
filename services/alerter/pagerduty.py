"""Send EMERGENCY alerts to PagerDuty's Events API v2.

The dedup key names the episode (``cbm-{asset}-{channel}-{episode}``): a
trigger sent twice lands on the same incident, and the resolve closes it. That
makes PagerDuty the one receiver where a resend after a crash is harmless.
"""

from __future__ import annotations

import urllib.request
from typing import Any
from urllib.error import HTTPError, URLError

import orjson

from services.alerter.message import RenderedMessage
from services.alerter.outbox import AlertRow, Failed, Retry, Sent, classify_http

TIMEOUT_S = 10
_SUMMARY_MAX = 1024  # the API's limit


def dedup_key(row: AlertRow) -> str:
    """Return the incident key of the row's episode."""
    return f"cbm-{row.asset_id}-{row.channel.value}-{row.episode}"


def event(
    row: AlertRow, message: RenderedMessage, *, routing_key: str, link: str, site: str
) -> dict[str, Any]:
    """Return the Events API v2 body for one outbox row."""
    if row.kind.ends_episode:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key(row)}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(row),
        "payload": {
            "summary": message.summary[:_SUMMARY_MAX],
            "source": row.asset_id,
            "severity": "critical",
            "timestamp": row.time.isoformat(),
            "component": row.asset_id,
            "group": site,
            "class": row.channel.value,
            "custom_details": {
                "level": row.level.name,
                "kind": row.kind.value,
                "rul_hours": row.rul_hours,
                "rul_low": row.rul_low,
                "rul_high": row.rul_high,
                "anomaly_score": row.anomaly_score,
                "model_version": row.model_version,
            },
        },
        "links": [{"href": link, "text": "Asset dashboard (Grafana)"}],
    }


class PagerDuty:
    """POST events to the Events API v2 with the standard library."""

    def __init__(self, url: str, routing_key: str) -> None:
        if not url.startswith(("http://", "https://")):
            msg = f"PagerDuty URL must be http(s), got {url[:80]!r}"
            raise ValueError(msg)
        self.url = url
        self.routing_key = routing_key

    def send(self, body: dict[str, Any]) -> Sent | Retry | Failed:
        """Send one event and say how it went (202 is success)."""
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url,
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
                status = int(response.status)
                detail = response.read(500).decode("utf-8", "replace")
        except HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace")
            return classify_http(exc.code, detail, retry_after=exc.headers.get("Retry-After"))
        except (URLError, OSError) as exc:
            return Retry(error=f"PagerDuty unreachable: {exc}")
        if status in (200, 201, 202):
            return Sent(via="events_v2")
        return Failed(error=f"HTTP {status}: {detail[:200]}")
