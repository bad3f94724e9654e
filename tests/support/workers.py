"""Run workers for tests: in a thread of the test process, or as a real child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml

from cbm.settings import SECRET_ENV, Settings
from cbm.topics import Topics
from cbm.worker import Worker
from services.cli import load_stage
from tests.support.mqtt import Recorder, eventually
from tests.support.services import ROOT


class ThreadWorker:
    """A worker running in a daemon thread; stop() is the graceful SIGTERM path."""

    def __init__(self, settings: Settings, stage_name: str) -> None:
        self.stage = load_stage(stage_name, settings)
        self.worker: Worker[Any] = Worker(settings, self.stage)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()
        assert self.worker.link.wait_connected(10), "worker did not connect"
        # Connected is not subscribed: wait for the status it sends after subscribing.
        wait_online(settings, stage_name, os.getpid())

    def stop(self) -> None:
        self.worker.stop_event.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "worker did not stop"


class ProcessWorker:
    """``cbm run <stage>`` as a child process with its own settings file."""

    def __init__(
        self,
        settings: Settings,
        stage_name: str,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> None:
        """Write the settings file and start the process.

        ``env`` adds variables to the child's environment (secrets such as
        ``CBM_SLACK_WEBHOOK_URL`` never go into the file); ``wait=False``
        returns before the worker is online, so several can start at once.
        """
        self.config = workdir / f"{stage_name}.yaml"
        self.stage_name = stage_name
        self.reconfigure(settings)
        self.log = workdir / f"{stage_name}.log"
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.start(wait=wait)

    def reconfigure(self, settings: Settings) -> None:
        """Use other settings from the next start on."""
        self.settings = settings
        data = settings.model_dump(mode="json", exclude={"secrets"})
        self.config.write_text(yaml.safe_dump(data))

    def start(self, *, wait: bool = True) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
        # Secrets travel as the environment variables a deployment would set.
        for name, field in SECRET_ENV.items():
            secret = getattr(self.settings.secrets, field)
            if secret is not None:
                env[name] = secret.get_secret_value()
        env.update(self.extra_env)
        env["CBM_CONFIG"] = str(self.config)
        env["PYTHONPATH"] = str(ROOT)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "run", self.stage_name],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_online()

    def wait_online(self, timeout: float = 60.0) -> None:
        """Wait for this process's "online" status: its subscriptions are then live."""
        assert self.process is not None
        wait_online(
            self.settings,
            self.stage_name,
            self.process.pid,
            timeout=timeout,
            context=lambda: self.output()[-2000:],
        )

    @property
    def pid(self) -> int:
        """Return the pid of the current process."""
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(20)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_online(
    settings: Settings,
    stage_name: str,
    pid: int,
    *,
    timeout: float = 60.0,
    context: Any = None,
) -> None:
    """Wait for a worker's retained "online" status with this pid.

    The worker subscribes before it announces itself on the same connection,
    so the broker has the subscriptions once the status shows.
    """
    topic = Topics(settings.base_topic).status(stage_name)
    rec = Recorder(settings.mqtt.host, settings.mqtt.port, topic)
    try:
        eventually(
            lambda: any(
                (doc := orjson.loads(m.payload))["state"] == "online" and doc["pid"] == pid
                for m in rec.on(topic)
            ),
            timeout=timeout,
            message=f"{stage_name} online" + (f"\n{context()}" if context else ""),
        )
    finally:
        rec.close()
