"""Run the four workers as child processes: restart on crash, stop cleanly on Ctrl-C.

What compose does for the workers, without Docker (``cbm up``), and the
process manager of ``cbm demo``.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

WORKERS = ("ingest", "features", "inference", "alerter")
_MAX_BACKOFF_S = 30.0


@dataclass
class Child:
    """One supervised worker."""

    stage: str
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = 1.0
    next_start: float = 0.0


@dataclass
class Supervisor:
    """Start, watch and stop the workers."""

    env: Mapping[str, str]
    stages: Sequence[str] = WORKERS
    log_dir: Path | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    children: dict[str, Child] = field(default_factory=dict)

    def start(self) -> None:
        """Start every worker."""
        for stage in self.stages:
            child = self.children[stage] = Child(stage)
            self._spawn(child)

    def watch(self, poll_s: float = 0.5) -> None:
        """Restart crashed workers (with back-off) until ``stop_event`` is set, then stop all."""
        try:
            while not self.stop_event.wait(poll_s):
                self.check()
        finally:
            self.stop()

    def check(self) -> None:
        """Restart any worker that exited, once its back-off has passed."""
        now = time.monotonic()
        for child in self.children.values():
            if child.process is not None and child.process.poll() is None:
                if now - child.started_at > 60:
                    child.backoff_s = 1.0  # ran long enough: forget earlier crashes
                continue
            if child.process is not None:
                code = child.process.returncode
                log.warning(
                    "worker %s exited with %s; restarting in %.0fs",
                    child.stage,
                    code,
                    child.backoff_s,
                )
                child.process = None
                child.next_start = now + child.backoff_s
                child.backoff_s = min(child.backoff_s * 2, _MAX_BACKOFF_S)
            if now >= child.next_start:
                self._spawn(child)

    def stop(self, timeout_s: float = 20.0) -> None:
        """Send SIGTERM to every worker (each finishes its batch), then SIGKILL stragglers."""
        running = [c.process for c in self.children.values() if c.process is not None]
        for p in running:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in running:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time; killing it", p.pid)
                p.kill()
                p.wait()

    def _spawn(self, child: Child) -> None:
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{child.stage}.log").open("ab")
        child.process = subprocess.Popen(  # noqa: S603 - our own interpreter and verb
            [sys.executable, "-m", "services.cli", "run", child.stage],
            env=dict(self.env),
            stdout=out,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C reaches the supervisor, which stops
            # the workers in order instead of all at once.
            start_new_session=True,
        )
        if not isinstance(out, int):
            out.close()
        child.started_at = time.monotonic()
        log.info("started %s (pid %d)", child.stage, child.process.pid)


def run_forever(env: Mapping[str, str], log_dir: Path | None = None) -> int:
    """Supervise the workers until SIGINT/SIGTERM; return the exit status."""
    supervisor = Supervisor(env=dict(env), log_dir=log_dir)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stop_event.set())
    supervisor.start()
    supervisor.watch()
    return 0
