"""Prometheus metrics of one worker, in a registry of its own."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class WorkerMetrics:
    """The counters and histograms every worker exposes on ``/metrics``."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        r = self.registry
        self.messages_in = Counter(
            "cbm_messages_in", "MQTT messages received", ["service"], registry=r
        ).labels(service)
        self.messages_out = Counter(
            "cbm_messages_out",
            "MQTT messages published and acknowledged",
            ["service"],
            registry=r,
        ).labels(service)
        self.records_out = Counter(
            "cbm_records_out",
            "Records (windows, vectors, predictions) emitted",
            ["service", "kind"],
            registry=r,
        )
        self.dead_letters = Counter(
            "cbm_dead_letters",
            "Inputs rejected to the dead-letter topic",
            ["service", "reason"],
            registry=r,
        )
        self.redeliveries = Counter(
            "cbm_redeliveries", "Inputs the broker delivered again", ["service"], registry=r
        ).labels(service)
        self.retries = Counter(
            "cbm_infrastructure_retries",
            "Retries after a database or broker failure",
            ["service", "target"],
            registry=r,
        )
        self.batch_size = Histogram(
            "cbm_batch_size",
            "Messages per micro-batch",
            ["service"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        ).labels(service)
        self.batch_seconds = Histogram(
            "cbm_batch_seconds",
            "Time from batch start to acknowledgement",
            ["service"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        ).labels(service)
        self.lag_seconds = Histogram(
            "cbm_lag_seconds",
            "Receipt time minus event time of accepted records",
            ["service"],
            buckets=_LAG_BUCKETS,
            registry=r,
        ).labels(service)
        self.up = Gauge(
            "cbm_worker_up", "1 while the worker loop runs", ["service"], registry=r
        ).labels(service)

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread (port 0: do not serve)."""
        if port <= 0:
            return
        start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", host, port)
