"""Record the failures a live simulated fleet runs into as ``maintenance_event`` rows.

The simulator knows the ground truth the plant would learn from its
maintenance log: which machine failed, and when. Writing it down as a
``failure`` event (by ``simulator``) gives the backtest and ``cbm train
--from-db`` the labels a real fleet's history would carry.

Publishing must never wait on the database: the publish loop only hands an
event to a queue; one writer thread inserts it with the prognostics' own
idempotent writer. A database error is logged and the event kept; it is
tried again with the next failure and once more when the run ends.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg

from cbm.db import conninfo
from cbm.settings import Settings
from services.prognostics.events import EventKind, MaintenanceEvent
from services.prognostics.store import add_event

log = logging.getLogger(__name__)

RECORDED_BY: Final = "simulator"
CONNECT_TIMEOUT_S: Final = 5

Connect = Callable[[], psycopg.Connection[Any]]


def failure_event(asset_id: str, time: datetime, fault_mode: str) -> MaintenanceEvent:
    """Return the maintenance event of a simulated asset that failed at ``time``."""
    return MaintenanceEvent(
        asset_id=asset_id,
        time=time,
        kind=EventKind.FAILURE,
        note=f"simulated {fault_mode} failure",
        recorded_by=RECORDED_BY,
    )


def settings_connect(settings: Settings) -> Connect:
    """Return a connect function for the configured database, bounded in time."""

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(
            conninfo(settings),
            connect_timeout=CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={settings.database.statement_timeout_ms}",
            application_name="cbm-simulator",
            autocommit=True,
        )

    return connect


@dataclass(frozen=True, slots=True)
class RecorderResult:
    """What the recorder wrote, and what it could not write by the end of the run."""

    written: int  # rows inserted (a repeat of a stored event is not counted)
    unwritten: tuple[MaintenanceEvent, ...]


class FailureRecorder:
    """Write failure events in a background thread; keep and retry what the database refused."""

    def __init__(self, *, connect: Connect, logger: logging.Logger | None = None) -> None:
        self._connect = connect
        self._log = logger or log
        self._queue: queue.Queue[MaintenanceEvent | None] = queue.Queue()
        self._pending: list[MaintenanceEvent] = []
        self._conn: psycopg.Connection[Any] | None = None
        self._written = 0
        self._thread = threading.Thread(target=self._run, name="failure-recorder", daemon=True)
        self._thread.start()

    def record(self, event: MaintenanceEvent) -> None:
        """Hand ``event`` to the writer; never blocks, never raises."""
        self._queue.put(event)

    def close(self, timeout: float = 30.0) -> RecorderResult:
        """Write what is still pending (one last try), stop the writer and say how it went."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._log.error("failure recorder did not finish within %.0f s", timeout)
        unwritten = tuple(self._pending)
        for event in unwritten:
            self._log.error(
                "failure of %s at %s not recorded in the database",
                event.asset_id,
                event.time.isoformat(),
            )
        return RecorderResult(written=self._written, unwritten=unwritten)

    def _run(self) -> None:
        try:
            while True:
                event = self._queue.get()
                if event is not None:
                    self._pending.append(event)
                # Take whatever else is already waiting, so one round trip writes it all.
                done = event is None
                while not done:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        done = True
                    else:
                        self._pending.append(more)
                self._write_pending()
                if done:
                    return
        finally:
            if self._conn is not None:
                self._conn.close()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            with self._conn.transaction():
                added = sum(add_event(self._conn, event) for event in self._pending)
        except psycopg.Error as exc:
            self._log.warning(
                "%d simulated failure(s) not recorded yet (%s); retrying with the next one",
                len(self._pending),
                " ".join(str(exc).split())[:200],
            )
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return
        self._written += added
        self._log.info("recorded %d simulated failure(s)", len(self._pending))
        self._pending.clear()
