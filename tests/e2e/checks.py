"""The accounting every end-to-end test ends with: windows, rows and alerts, each exactly once."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from cbm import tables
from tests.support.mqtt import eventually
from tests.support.pipeline import RECORD_KINDS, Pipeline
from tests.support.receiver import WEBHOOK_PATH, Receiver

Key = tuple[str, datetime]
DB = psycopg.Connection[Any]
WINDOW_TABLES = (tables.INGEST_WINDOW, tables.FEATURE_VECTOR, tables.PREDICTION)

_LEVELS = {
    ":rotating_light: EMERGENCY": "EMERGENCY",
    ":red_circle: CRITICAL": "CRITICAL",
    ":warning: WARNING": "WARNING",
    ":white_check_mark: RESOLVED": "OK",
}
# Headline -> (channel, kind), see services.alerter.message._headline.
_HEADLINES = (
    ("Reminder: still", ("?", "reminder")),
    ("No predictions since", ("stale", "raise")),
    ("Predictions are arriving again", ("stale", "resolve")),
    ("Unusual vibration", ("anomaly", "raise")),
    ("Anomaly cleared", ("anomaly", "resolve")),
    ("Remaining useful life fell below", ("rul", "raise")),
    ("Escalated from", ("rul", "escalate")),
    ("Eased from", ("rul", "downgrade")),
    ("Back to normal", ("rul", "resolve")),
)
_ASSET = re.compile(r"\(([A-Za-z0-9][A-Za-z0-9_.-]*), site ")


@dataclass(frozen=True)
class SlackAlert:
    """What a Slack message says: which asset, channel, kind of change and level."""

    asset_id: str
    channel: str
    kind: str
    level: str


def parse_slack(text: str) -> SlackAlert:
    """Read a webhook message's fallback text back into its alert."""
    level = next(v for k, v in _LEVELS.items() if text.startswith(k))
    asset = _ASSET.search(text)
    assert asset is not None, text
    channel, kind = next(v for k, v in _HEADLINES if k in text)
    return SlackAlert(asset.group(1), channel, kind, level)


def row_count(db: DB, table: str) -> int:
    """Return how many rows a table holds."""
    found = db.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert found is not None
    return int(found[0])


def stored(db: DB, table: str) -> list[Key]:
    """Return every (asset, time) row of a table, repeats included."""
    return [(str(a), t) for a, t in db.execute(f"SELECT asset_id, time FROM {table}")]


def wait_for_rows(db: DB, sent: Iterable[Key], *, timeout: float = 90) -> None:
    """Wait until every sent window has its prediction row (the last table of the chain)."""
    want = set(sent)
    eventually(
        lambda: want <= set(stored(db, tables.PREDICTION)),
        timeout=timeout,
        interval=0.25,
        message=f"a prediction for each of the {len(want)} windows",
    )


def assert_every_window_once(db: DB, sent: list[Key]) -> None:
    """Assert one row per sent window in each table, and no other rows."""
    assert len(sent) == len(set(sent)), "the publisher reported a window twice"
    want = Counter(sent)
    for table in WINDOW_TABLES:
        rows = Counter(stored(db, table))
        lost = want - rows
        extra = rows - want
        assert not lost and not extra, (
            f"{table}: {sum(lost.values())} windows lost, {sum(extra.values())} rows extra "
            f"(e.g. {sorted(lost)[:3]} / {sorted(extra)[:3]})"
        )


def outbox(db: DB, receiver: str = "slack") -> list[tuple[Any, ...]]:
    """Return (asset, channel, kind, level, time, attempts, delivered) rows in id order."""
    return db.execute(
        f"""SELECT asset_id, channel, kind, level, time, attempts, delivered_at IS NOT NULL
            FROM {tables.ALERT} WHERE receiver = %s ORDER BY id""",
        (receiver,),
    ).fetchall()


def wait_for_outbox(db: DB, *, timeout: float = 60) -> None:
    """Wait until no alert row is waiting for delivery."""
    eventually(
        lambda: (
            not db.execute(
                f"SELECT 1 FROM {tables.ALERT} WHERE delivered_at IS NULL AND failed_at IS NULL"
            ).fetchone()
        ),
        timeout=timeout,
        interval=0.2,
        message="alert outbox drained",
    )


def assert_alerts_sent_once(db: DB, receiver: Receiver) -> list[SlackAlert]:
    """Assert each stored alert reached Slack exactly once, in order per asset; return them."""
    wait_for_outbox(db)
    rows = outbox(db)
    failed = [r for r in rows if not r[6]]
    assert not failed, f"alerts never delivered: {failed}"
    delivered = [parse_slack(r.json()["text"]) for r in receiver.delivered(WEBHOOK_PATH)]
    expected = [SlackAlert(a, c if k != "reminder" else "?", k, lvl) for a, c, k, lvl, *_ in rows]
    assert Counter(delivered) == Counter(expected), (
        f"Slack got {len(delivered)} messages for {len(expected)} stored alerts:\n"
        f"missing {Counter(expected) - Counter(delivered)}\n"
        f"extra {Counter(delivered) - Counter(expected)}"
    )
    for asset in {a.asset_id for a in expected}:
        assert [a for a in delivered if a.asset_id == asset] == [
            a for a in expected if a.asset_id == asset
        ], f"alerts of {asset} arrived out of order"
    return delivered


def assert_no_dead_letters(db: DB) -> None:
    """Assert no stage rejected anything (good input only)."""
    rows = db.execute(f"SELECT stage, reason, topic FROM {tables.DEAD_LETTER}").fetchall()
    assert not rows, f"unexpected dead letters: {rows[:5]}"


@dataclass(frozen=True)
class Counted:
    """What one worker's counters must say."""

    messages_in: int
    records_out: int
    dead_letters: dict[str, int]


def counters(pipeline: Pipeline, stage: str) -> Counted:
    """Return one worker's input, record and dead-letter counters, scraped from /metrics."""
    m = pipeline.metrics(stage)
    return Counted(
        messages_in=round(m.value("cbm_messages_in_total", service=stage)),
        records_out=round(
            m.value("cbm_records_out_total", service=stage, kind=RECORD_KINDS[stage])
        ),
        dead_letters={
            reason: round(n) for reason, n in m.by_label("cbm_dead_letters_total", "reason").items()
        },
    )


def assert_counters(pipeline: Pipeline, expected: dict[str, Counted]) -> None:
    """Assert every worker's counters equal ``expected``.

    A worker counts a batch after the broker acknowledged its outputs, a moment
    after its rows are committed: poll until they agree, then scrape once more
    to see that nothing more is coming.
    """
    deadline = time.monotonic() + 10
    for stage, want in expected.items():
        seen = counters(pipeline, stage)
        while seen != want and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = counters(pipeline, stage)
        assert seen == want, f"{stage} counted {seen}, expected {want}"
    for stage, want in expected.items():
        assert counters(pipeline, stage) == want, stage
