"""Features stage throughput through the real broker and database.

Window frames as ingest emits them (a micro-batch of one partition per
message) wait in the stage's broker queue; the benchmark times the stage
draining them until every feature vector is committed.
Run: ``python -m bench.bench_features_stage [--windows 20000]``.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from bench.harness import preload, services
from cbm.frames import encode_windows
from cbm.messages import TemperatureStatus, Window
from cbm.settings import from_mapping
from cbm.topics import Topics, partition_of
from cbm.worker import Worker
from services.features.stage import FeaturesStage


def frames(n: int, base: str, *, assets: int = 100, per_frame: int = 50) -> list[tuple[str, bytes]]:
    """Return window frames holding ``n`` 1,000-sample windows, grouped by partition."""
    rng = np.random.default_rng(2)
    samples = rng.normal(scale=0.1, size=(16, 1000)).astype(np.float32)
    t0 = datetime.now(UTC) - timedelta(hours=2)
    topics = Topics(base)
    windows = [
        Window(
            asset_id=f"asset-{i % assets:04d}",
            time=t0 + timedelta(seconds=i // assets),
            seq=i // assets,
            sample_rate_hz=5000.0,
            samples=samples[i % 16],
            received_at=t0,
            temperature_c=40.0,
            temperature_status=TemperatureStatus.SPAN,
        )
        for i in range(n)
    ]
    by_partition: dict[int, list[Window]] = {}
    for w in windows:
        by_partition.setdefault(partition_of(w.asset_id, 16), []).append(w)
    out = []
    for p, ws in sorted(by_partition.items()):
        for k in range(0, len(ws), per_frame):
            out.append((topics.windows(p), encode_windows(ws[k : k + per_frame])))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its figures and return them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=20_000)
    args = parser.parse_args(argv)
    with services() as svc:
        base = "bench/features"
        settings = from_mapping(
            {
                "base_topic": base,
                "mqtt": {"host": svc.broker.host, "port": svc.broker.port},
                "database": {"url": svc.db_url},
                "worker": {"metrics_ports": {}},
            }
        )
        worker: Worker[Any] = Worker(settings, FeaturesStage(settings))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()  # registers the persistent session, then stops
        worker.link.wait_connected(10)
        time.sleep(0.5)
        worker.stop_event.set()
        thread.join()
        preload(svc.broker, frames(args.windows, base))
        worker = Worker(settings, FeaturesStage(settings))
        with psycopg.connect(svc.db_url, autocommit=True) as conn:
            started = time.perf_counter()
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            while conn.execute("SELECT count(*) FROM feature_vector").fetchone() != (args.windows,):
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
        worker.stop_event.set()
        thread.join()
    rate = args.windows / elapsed
    print(
        f"features stage through MQTT + PostgreSQL: {rate:8.0f} windows/s "
        f"({1e6 / rate:.0f} µs per window, compute + decode + COPY + publish + ack)"
    )
    return {"windows": args.windows, "windows_per_s": round(rate), "us_per_window": 1e6 / rate}


if __name__ == "__main__":
    main()
