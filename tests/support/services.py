"""Find or start the real services the tests talk to.

Order, for each: an explicit ``CBM_TEST_*`` URL; for MQTT a private
``mosquitto`` started with the project's config on a free port (the tests
need to kill and restart it), else the project's embedded Python broker
(``services.broker``; ``CBM_TEST_BROKER=embedded`` forces it); for
PostgreSQL the server on 127.0.0.1:5432 when
one answers; testcontainers where Docker runs; pgserver (an embedded
PostgreSQL from PyPI) as the last resort.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from services.broker.local import (
    free_port,
    mosquitto_binary,
    start_embedded,
    start_mosquitto,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Broker:
    host: str
    port: int
    workdir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    embedded: bool = False  # the project's Python broker, not mosquitto

    @property
    def restartable(self) -> bool:
        """Whether a test may kill and restart it and find its queues again (persistence)."""
        return self.workdir is not None and not self.embedded

    def start(self) -> None:
        if self.embedded:
            self.process = start_embedded(self.port)
        else:
            assert self.workdir is not None
            self.process = start_mosquitto(self.workdir, self.port)

    def kill(self) -> None:
        """Kill -9: no chance to save anything beyond the last autosave."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def broker_workdir() -> Path:
    """Return a new directory where a broker started as root can write (persistence, log).

    Mosquitto started as root drops to its own user before it opens its files;
    pytest's ``tmp_path`` sits under a 0700 root directory that user cannot
    enter, so persistence and the log file fail there without a word. The
    caller removes the directory.
    """
    path = Path(tempfile.mkdtemp(prefix="cbm-broker-"))
    path.chmod(0o777)
    return path


def start_broker(tmp: Path) -> Broker:
    """Find or start the test broker.

    ``CBM_TEST_MQTT_URL`` names one; else a private mosquitto with the project's
    config; else (or with ``CBM_TEST_BROKER=embedded``) the project's embedded
    Python broker, on which the tests that restart the broker are skipped.
    """
    url = os.environ.get("CBM_TEST_MQTT_URL")
    if url:
        parts = urlsplit(url)
        return Broker(parts.hostname or "127.0.0.1", parts.port or 1883)
    embedded = os.environ.get("CBM_TEST_BROKER") == "embedded" or mosquitto_binary() is None
    broker = Broker("127.0.0.1", free_port(), workdir=tmp, embedded=embedded)
    broker.start()
    return broker


@dataclass
class Postgres:
    """A server the tests may create databases on."""

    admin_url: str
    keepalive: object = None  # a container or pgserver handle that must stay referenced

    def url_for(self, dbname: str) -> str:
        parts = urlsplit(self.admin_url)
        return parts._replace(path=f"/{dbname}").geturl()


def find_postgres() -> Postgres:
    url = os.environ.get("CBM_TEST_DATABASE_URL")
    if url:
        return Postgres(url)
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        with psycopg.connect(local, connect_timeout=2):
            return Postgres(local)
    except psycopg.OperationalError:
        pass
    try:
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("timescale/timescaledb:latest-pg16", driver=None)
        container.start()
        return Postgres(container.get_connection_url(), keepalive=container)
    except Exception:  # no Docker, or no testcontainers: fall through
        pass
    pgserver: Any = importlib.import_module("pgserver")

    server = pgserver.get_server(ROOT / ".pgdata", cleanup_mode="stop")
    return Postgres(server.get_uri(), keepalive=server)
