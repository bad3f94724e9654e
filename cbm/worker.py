"""The worker shell: micro-batches from MQTT through a stage, durable, then acked.

Loop: drain up to ``batch_max`` messages or ``batch_ms`` from the inbox, let
the stage compute its effects (pure work, bad input becomes dead letters),
commit them to the database in one transaction, publish the outputs and wait
for the broker's PUBACKs, and only then acknowledge the inputs. A crash at any
point leaves the inputs unacknowledged, so the broker redelivers them and the
idempotent writes absorb the repeat. Database or broker trouble: hold the
acks, back off, retry; never acknowledge what is not durable.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import orjson
import psycopg
from psycopg_pool import ConnectionPool

from cbm import tables
from cbm.db import TRANSIENT_ERRORS, open_pool
from cbm.errors import PublishRefusedError
from cbm.messages import DeadLetter
from cbm.metrics import WorkerMetrics
from cbm.mqtt import Inbound, MqttLink, Outbound
from cbm.settings import Settings
from cbm.topics import Topics

log = logging.getLogger(__name__)

EXCERPT_BYTES = 1024
_PERMANENT_ATTEMPTS = 3


@dataclass
class Effects:
    """What a batch produced: messages to publish, dead letters, figures."""

    messages: list[Outbound] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    records: int = 0
    lags_s: list[float] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        """Add another batch's effects to these (used when a batch is split)."""
        self.messages.extend(other.messages)
        self.dead_letters.extend(other.dead_letters)
        self.records += other.records
        self.lags_s.extend(other.lags_s)


E = TypeVar("E", bound=Effects)


class Stage(Protocol, Generic[E]):
    """What a stage gives the worker shell."""

    service: str
    record_kind: str
    uses_database: bool

    def subscriptions(self) -> Sequence[str]:
        """Return the topic filters to subscribe to."""
        ...

    def prepare(self, pool: ConnectionPool | None) -> None:
        """Load what the stage needs before the first batch (may raise transient errors)."""
        ...

    def compute(self, batch: Sequence[Inbound]) -> E:
        """Return the effects of a batch; bad input becomes dead letters, never an exception."""
        ...

    def persist(self, conn: psycopg.Connection[Any], effects: E) -> None:
        """Write the effects inside the caller's transaction (idempotently)."""
        ...


class Worker(Generic[E]):
    """Run one stage until stopped."""

    def __init__(
        self,
        settings: Settings,
        stage: Stage[E],
        *,
        pool: ConnectionPool | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.topics = Topics(settings.base_topic)
        self.metrics = metrics or WorkerMetrics(stage.service)
        self.stop_event = threading.Event()
        self._pool = pool
        self._owns_pool = False
        service = stage.service
        self._status_topic = self.topics.status(service)
        self.link = MqttLink(
            settings,
            client_id=f"cbm-{service}-{settings.worker.instance}",
            subscriptions=stage.subscriptions(),
            will=Outbound(self._status_topic, self._status("offline", "connection lost"), True),
            on_connected=self._announce,
        )

    def install_signal_handlers(self) -> None:
        """Stop gracefully on SIGTERM and SIGINT (finish the batch, ack, disconnect)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())

    def run(self) -> None:
        """Process batches until ``stop_event`` is set."""
        worker = self.settings.worker
        self.metrics.serve(worker.metrics_host, worker.metrics_ports.get(self.stage.service, 0))
        if self.stage.uses_database and self._pool is None:
            self._pool = open_pool(
                self.settings,
                name=self.stage.service,
                configure=getattr(self.stage, "configure_connection", None),
            )
            self._owns_pool = True
        self._retry("database", lambda: self.stage.prepare(self._pool))
        self.link.start()
        self.metrics.up.set(1)
        log.info("%s worker started", self.stage.service)
        try:
            while not self.stop_event.is_set():
                batch = self._drain()
                if batch:
                    self._process(batch)
        finally:
            self.metrics.up.set(0)
            self.link.stop(
                farewell=Outbound(self._status_topic, self._status("offline", "stopped"), True)
            )
            close = getattr(self.stage, "close", None)
            if close is not None:
                close()  # the stage's own threads finish their step while the pool is open
            if self._owns_pool and self._pool is not None:
                self._pool.close()
            log.info("%s worker stopped", self.stage.service)

    def _drain(self) -> list[Inbound]:
        inbox = self.link.inbox
        try:
            first = inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.worker.batch_ms / 1000
        limit = self.settings.worker.batch_max
        while len(batch) < limit:
            remaining = deadline - time.monotonic()
            try:
                batch.append(inbox.get(timeout=remaining) if remaining > 0 else inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[Inbound]) -> None:
        started = time.perf_counter()
        m = self.metrics
        m.messages_in.inc(len(batch))
        m.batch_size.observe(len(batch))
        redelivered = sum(1 for b in batch if b.dup)
        if redelivered:
            m.redeliveries.inc(redelivered)
        computed = self._compute(batch)
        effects: Effects = computed
        if self.stage.uses_database or effects.dead_letters:
            effects = self._persist(batch, computed)
        outgoing = effects.messages + [self._dead_letter_message(d) for d in effects.dead_letters]
        if not self._publish(outgoing):
            log.warning(
                "stopping with %d inputs unacknowledged; the broker will redeliver", len(batch)
            )
            return
        self.link.ack(batch)
        m.messages_out.inc(len(outgoing))
        m.records_out.labels(self.stage.service, self.stage.record_kind).inc(effects.records)
        for dead in effects.dead_letters:
            m.dead_letters.labels(self.stage.service, dead.reason).inc()
        for lag in effects.lags_s:
            m.lag_seconds.observe(lag)
        m.batch_seconds.observe(time.perf_counter() - started)

    def _publish(self, outgoing: list[Outbound]) -> bool:
        delay = self.settings.worker.retry_initial_s
        while True:
            try:
                return self.link.publish(outgoing, stop=self.stop_event)
            except PublishRefusedError as exc:
                # Usually a wrong ACL: nothing downstream got the data, so keep
                # the inputs unacknowledged and try again until someone fixes it.
                self.metrics.retries.labels(self.stage.service, "broker").inc()
                log.error("%s; holding the batch, retry in %.1fs", exc, delay)
            if self.stop_event.wait(delay):
                return False
            delay = min(delay * 2, self.settings.worker.retry_max_s)

    def _compute(self, batch: list[Inbound]) -> E:
        delay = self.settings.worker.retry_initial_s
        while True:
            try:
                return self.stage.compute(batch)
            except TRANSIENT_ERRORS as exc:
                # A stage that reads the database while computing (state rebuilds)
                # waits for it like a write would; nothing was emitted yet.
                self.metrics.retries.labels(self.stage.service, "database").inc()
                log.warning(
                    "database unavailable while computing (%s); retry in %.1fs",
                    type(exc).__name__,
                    delay,
                )
                if self.stop_event.wait(delay):
                    raise SystemExit("stopped while the database was unavailable") from None
                delay = min(delay * 2, self.settings.worker.retry_max_s)
            except Exception:
                # A bug, not bad input (that is the stage's job). Isolate the message
                # that triggers it so the rest of the batch still goes through.
                log.exception(
                    "%s failed on a batch of %d; retrying one by one",
                    self.stage.service,
                    len(batch),
                )
                break
        effects: E | None = None
        for message in batch:
            try:
                single = self.stage.compute([message])
            except Exception as exc:
                log.exception("%s failed on a message from %s", self.stage.service, message.topic)
                single = self.stage.compute([])
                single.dead_letters.append(
                    self._internal_dead_letter(message, "internal_error", repr(exc))
                )
            if effects is None:
                effects = single
            else:
                effects.extend(single)
        assert effects is not None
        return effects

    def _persist(self, batch: list[Inbound], effects: E) -> Effects:
        attempt = 0
        delay = self.settings.worker.retry_initial_s
        while True:
            try:
                self._write(effects)
                return effects
            except TRANSIENT_ERRORS as exc:
                self.metrics.retries.labels(self.stage.service, "database").inc()
                log.warning(
                    "database unavailable (%s); holding %d acks, retry in %.1fs",
                    type(exc).__name__,
                    len(batch),
                    delay,
                )
            except psycopg.Error as exc:
                attempt += 1
                log.error(
                    "database refused a batch (%s: %s), attempt %d",
                    type(exc).__name__,
                    exc,
                    attempt,
                )
                if attempt >= _PERMANENT_ATTEMPTS:
                    return self._quarantine(batch, repr(exc))
            if self.stop_event.wait(delay):
                raise SystemExit("stopped while the database was unavailable")
            delay = min(delay * 2, self.settings.worker.retry_max_s)

    def _quarantine(self, batch: list[Inbound], detail: str) -> Effects:
        # Keep every payload whole so the batch can be replayed once fixed; the
        # stage's own effects are dropped.
        effects = Effects(
            dead_letters=[self._internal_dead_letter(m, "store_error", detail) for m in batch]
        )
        self._retry("database", lambda: self._write_dead_letters(effects.dead_letters))
        return effects

    def _write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        assert self._pool is not None
        with self._pool.connection() as conn, conn.transaction():
            _insert_dead_letters(conn, letters)

    def _write(self, effects: E) -> None:
        pool = self._pool
        if pool is None:
            return
        with pool.connection() as conn, conn.transaction():
            if effects.dead_letters:
                _insert_dead_letters(conn, effects.dead_letters)
            self.stage.persist(conn, effects)

    def _retry(self, target: str, action: Any) -> None:
        delay = self.settings.worker.retry_initial_s
        while True:
            try:
                action()
                return
            except TRANSIENT_ERRORS as exc:
                self.metrics.retries.labels(self.stage.service, target).inc()
                log.warning("%s unavailable (%s); retry in %.1fs", target, exc, delay)
            if self.stop_event.wait(delay):
                raise SystemExit(f"stopped while the {target} was unavailable")
            delay = min(delay * 2, self.settings.worker.retry_max_s)

    def _internal_dead_letter(self, message: Inbound, reason: str, detail: str) -> DeadLetter:
        return DeadLetter(
            stage=self.stage.service,
            reason=reason,
            detail=detail[:500],
            topic=message.topic,
            received_at=message.received_at,
            payload=message.payload,
        )

    def _dead_letter_message(self, dead: DeadLetter) -> Outbound:
        doc = dead.document(EXCERPT_BYTES)
        return Outbound(self.topics.deadletter(dead.stage), orjson.dumps(doc))

    def _status(self, state: str, detail: str) -> bytes:
        doc = status_document(self.stage.service, self.settings.worker.instance, state, detail)
        return orjson.dumps(doc)

    def _announce(self) -> None:
        # Called from paho's thread on every (re)connect: do not wait for the ack.
        self.link.publish_nowait(
            Outbound(self._status_topic, self._status("online", "running"), retain=True)
        )


def status_document(service: str, instance: str, state: str, detail: str) -> dict[str, object]:
    """Return the retained document of ``{base}/status/{service}``."""
    return {
        "service": service,
        "instance": instance,
        "state": state,
        "detail": detail,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": datetime.now(UTC).isoformat(),
    }


def _insert_dead_letters(conn: psycopg.Connection[Any], letters: Sequence[DeadLetter]) -> None:
    internal = {"internal_error", "store_error"}
    rows = [
        (
            d.received_at,
            d.stage,
            d.reason,
            d.detail,
            d.topic,
            d.asset_id,
            len(d.payload),
            d.payload if d.reason in internal else d.payload[:EXCERPT_BYTES],
        )
        for d in letters
    ]
    with conn.cursor() as cur:
        cur.executemany(
            f"""INSERT INTO {tables.DEAD_LETTER}
                (time, stage, reason, detail, topic, asset_id, payload_size, payload_excerpt)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            rows,
        )
