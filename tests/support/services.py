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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

ROOT = Path(__file__).resolve().parents[2]
PROJECT_BROKER_CONF = ROOT / "mosquitto" / "mosquitto.conf"
# Lines of the stack's config that only make sense inside the container.
_CONTAINER_ONLY = (
    "persistence_location",
    "listener",
    "allow_anonymous",
    "password_file",
    "acl_file",
    "log_dest",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


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
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.broker", "--port", str(self.port)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_port(self.host, self.port)
            return
        assert self.workdir is not None
        conf = self.workdir / "mosquitto.conf"
        kept = [
            line
            for line in PROJECT_BROKER_CONF.read_text().splitlines()
            if not line.startswith(_CONTAINER_ONLY)
        ]
        conf.write_text(
            "\n".join(kept)
            + f"\npersistence_location {self.workdir}/\n"
            + f"log_dest file {self.workdir}/mosquitto.log\n"
            + f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        )
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen(
            [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_port(self.host, self.port)

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
    embedded = os.environ.get("CBM_TEST_BROKER") == "embedded" or not (
        shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()
    )
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
