"""Start an MQTT broker on this machine: Mosquitto with the project's config, or the embedded one.

Shared by ``cbm demo`` and the tests, which both need a private broker on a
free port of 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

PROJECT_CONF = Path(__file__).resolve().parents[2] / "mosquitto" / "mosquitto.conf"
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
    """Return a TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    host: str,
    port: int,
    timeout: float = 10.0,
    *,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Return once something accepts connections on ``host:port``; raise TimeoutError after.

    With the ``process`` that should be listening, a process that exits first
    raises RuntimeError at once instead of waiting out the timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with status {process.returncode} before listening"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def mosquitto_binary() -> str | None:
    """Return the mosquitto binary, or None when it is not installed."""
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return found if Path(found).exists() else None


def start_mosquitto(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """Start mosquitto with the project's config, persisting and logging into ``workdir``."""
    binary = mosquitto_binary()
    if binary is None:
        raise FileNotFoundError("mosquitto is not installed")
    kept = [
        line
        for line in PROJECT_CONF.read_text().splitlines()
        if not line.startswith(_CONTAINER_ONLY)
    ]
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        "\n".join(kept)
        + f"\npersistence_location {workdir}/\n"
        + f"log_dest file {workdir}/mosquitto.log\n"
        + f"listener {port} 127.0.0.1\nallow_anonymous true\n"
    )
    process = subprocess.Popen(  # noqa: S603 - the broker binary with our config
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return _listening(process, port)


def start_embedded(port: int) -> subprocess.Popen[bytes]:
    """Start the embedded Python broker (``python -m services.broker``) on ``port``."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter, our module
        [sys.executable, "-m", "services.broker", "--port", str(port)],
        cwd=PROJECT_CONF.parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return _listening(process, port)


def _listening(process: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    """Return ``process`` once it listens on ``port``; stop it if it does not."""
    try:
        wait_port("127.0.0.1", port, process=process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process
