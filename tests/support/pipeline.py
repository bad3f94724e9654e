"""The whole chain as child processes, and a reader for each worker's ``/metrics``."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cbm.settings import Settings
from services.broker.local import free_port
from tests.support.workers import ProcessWorker

STAGES = ("ingest", "features", "inference", "alerter")
# What each stage counts in cbm_records_out_total{kind}.
RECORD_KINDS = {
    "ingest": "window",
    "features": "feature_vector",
    "inference": "prediction",
    "alerter": "alert",
}


def metrics_ports(stages: Iterable[str] = STAGES) -> dict[str, int]:
    """Return a free port per stage, for ``worker.metrics_ports``."""
    return {stage: free_port() for stage in stages}


class Pipeline:
    """``cbm run <stage>`` for each stage, started together, each with its own log."""

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        stages: Iterable[str] = STAGES,
    ) -> None:
        self.settings = settings
        self.workers: dict[str, ProcessWorker] = {}
        try:
            for stage in stages:
                self.workers[stage] = ProcessWorker(settings, stage, workdir, env=env, wait=False)
            for worker in self.workers.values():
                worker.wait_online()
        except BaseException:
            self.stop()
            raise

    def __getitem__(self, stage: str) -> ProcessWorker:
        return self.workers[stage]

    def pids(self) -> dict[str, int]:
        """Return the pid of every worker."""
        return {stage: w.pid for stage, w in self.workers.items()}

    def alive(self) -> dict[str, bool]:
        """Return whether each worker's process is running."""
        return {stage: w.alive() for stage, w in self.workers.items()}

    def restart(self, stage: str) -> None:
        """Start a (killed) worker again with the same settings and MQTT session."""
        self.workers[stage].start()

    def metrics(self, stage: str) -> Metrics:
        """Scrape one worker's ``/metrics``."""
        port = self.settings.worker.metrics_ports[stage]
        return scrape(self.settings.worker.metrics_host, port)

    def logs(self) -> str:
        """Return the tail of every worker's log (for assertion messages)."""
        return "\n".join(f"--- {stage}\n{w.output()[-3000:]}" for stage, w in self.workers.items())

    def stop(self) -> dict[str, int | None]:
        """Stop every running worker with SIGTERM; return their exit codes."""
        codes: dict[str, int | None] = {}
        for stage, worker in reversed(list(self.workers.items())):
            codes[stage] = worker.terminate() if worker.alive() else None
        return codes


class Metrics:
    """Sample values of one scrape, looked up by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """Return the sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(
            v
            for n, ls, v in self.samples
            if n == name and all(ls.get(k) == want for k, want in labels.items())
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """Return ``name``'s samples keyed by one label (zero samples left out)."""
        found: dict[str, float] = {}
        for n, ls, v in self.samples:
            if n == name and v:
                found[ls[label]] = found.get(ls[label], 0.0) + v
        return found


def scrape(host: str, port: int) -> Metrics:
    """Return one parsed scrape of ``http://host:port/metrics``."""
    # No proxy: a local scrape must not go through HTTP(S)_PROXY.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{host}:{port}/metrics", timeout=5) as response:
        return Metrics(response.read().decode())
