"""Send rendered alerts to Slack: an incoming webhook, or the Web API for edits in place.

Both clients retry once in-process on a dropped connection, a 429 (honouring
Retry-After, if it is short) and a 500/503; anything still failing comes back
as an outcome and the outbox schedules the next attempt. Neither client raises
on an HTTP error status, so every answer is checked explicitly. Slack offers no
idempotency key for either call: a message whose answer is lost is sent again.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any
from urllib.error import URLError

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient

from services.alerter.message import RenderedMessage
from services.alerter.outbox import Failed, Retry, Sent, classify_http, parse_retry_after

log = logging.getLogger(__name__)

TIMEOUT_S = 10
# Web API errors (HTTP 200, ok=false) worth another try; every other one is final.
_TRANSIENT_API_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class BoundedRateLimitHandler(RateLimitErrorRetryHandler):
    """Retry a 429 in-process only when Retry-After is short.

    The stock handler sleeps for whatever Retry-After says, which would block
    the delivery thread (and a clean shutdown); a long wait is better left to
    the outbox's schedule.
    """

    def __init__(self, *, max_wait_s: float) -> None:
        super().__init__()
        self.max_wait_s = max_wait_s

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        values = {k.lower(): v for k, v in response.headers.items()}.get("retry-after") or []
        wait = parse_retry_after(values[0] if values else None)
        return wait is not None and wait <= self.max_wait_s


def retry_handlers(*, max_wait_s: float = 5.0) -> list[RetryHandler]:
    """Return the in-process retry handlers of both clients."""
    return [
        ConnectionErrorRetryHandler(),
        BoundedRateLimitHandler(max_wait_s=max_wait_s),
        ServerErrorRetryHandler(),
    ]


class SlackWebhook:
    """Post to one incoming webhook (no message ids: nothing can be edited later)."""

    def __init__(self, url: str, *, client: WebhookClient | None = None) -> None:
        self._client = client or WebhookClient(
            url, timeout=TIMEOUT_S, retry_handlers=retry_handlers()
        )

    def post(self, message: RenderedMessage) -> Sent | Retry | Failed:
        """Post a message and say how it went."""
        try:
            response = self._client.send(text=message.text, blocks=message.blocks)
        except (URLError, OSError, SlackClientError) as exc:
            return Retry(error=f"webhook unreachable: {exc}")
        if response.status_code == 200 and response.body == "ok":
            return Sent(via="webhook")
        headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        retry_after = headers.get("retry-after")
        return classify_http(
            response.status_code,
            response.body or "",
            retry_after=retry_after if isinstance(retry_after, str) else None,
        )


class SlackWebApi:
    """Post with ``chat.postMessage`` and edit with ``chat.update`` in one channel."""

    def __init__(
        self, token: str, channel: str, *, base_url: str, client: WebClient | None = None
    ) -> None:
        self.channel = channel
        self._client = client or WebClient(
            token=token, base_url=base_url, timeout=TIMEOUT_S, retry_handlers=retry_handlers()
        )

    def post(
        self,
        message: RenderedMessage,
        *,
        channel: str | None = None,
        thread_ts: str | None = None,
        broadcast: bool = False,
    ) -> Sent | Retry | Failed:
        """Post a message (a thread reply when ``thread_ts`` is given); return its ts."""
        channel = channel or self.channel
        kwargs: dict[str, Any] = {}
        if thread_ts is not None:
            kwargs = {"thread_ts": thread_ts, "reply_broadcast": broadcast}
        try:
            response = self._client.chat_postMessage(
                channel=channel,
                text=message.text,
                blocks=message.blocks,
                unfurl_links=False,
                **kwargs,
            )
        except SlackApiError as exc:
            return _api_failure("chat.postMessage", exc)
        except (URLError, OSError, SlackClientError) as exc:
            return Retry(error=f"Slack Web API unreachable: {exc}")
        return Sent(
            via="web_api",
            slack_channel=str(response.get("channel") or channel),
            slack_ts=str(response.get("ts")),
            slack_thread_ts=thread_ts,
        )

    def update(self, channel: str, ts: str, message: RenderedMessage) -> Sent | Retry | Failed:
        """Replace the text of an earlier message (the same call twice is harmless)."""
        try:
            self._client.chat_update(
                channel=channel, ts=ts, text=message.text, blocks=message.blocks
            )
        except SlackApiError as exc:
            return _api_failure("chat.update", exc)
        except (URLError, OSError, SlackClientError) as exc:
            return Retry(error=f"Slack Web API unreachable: {exc}")
        return Sent(via="web_api", slack_channel=channel, slack_ts=ts)


def _api_failure(method: str, exc: SlackApiError) -> Retry | Failed:
    response = exc.response
    status = int(response.status_code)
    data = response.data if isinstance(response.data, dict) else {}
    error = str(data.get("error", "unknown_error"))
    if status != 200:
        headers = {k.lower(): v for k, v in response.headers.items()}
        retry_after = headers.get("retry-after")
        outcome = classify_http(
            status, error, retry_after=retry_after if isinstance(retry_after, str) else None
        )
        return dataclasses.replace(outcome, error=f"{method} {outcome.error}")
    if error in _TRANSIENT_API_ERRORS:
        return Retry(error=f"{method}: {error}")
    return Failed(error=f"{method}: {error}")
