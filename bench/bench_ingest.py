"""Ingest throughput against the bare limit of one paho hop, same payloads.

Both consumers drain the same number of 1,000-sample windows that wait in
their broker queue (published beforehand, so no publisher shares the CPU with
them): the bare hop only acknowledges; ingest validates, pairs, writes its
ledger to PostgreSQL, publishes partition frames and then acknowledges.
Each format runs ``--rounds`` times (hop, then ingest, each round) and the
median ratio is reported: on a shared 2-core machine one round's ratio can
move by ±0.2.

The decode ceiling is the ratio ingest could reach if receiving a message cost
it what it costs the bare hop and the only extra work were decoding the payload
(measured in-process): ``hop_us / (hop_us + decode_us)``. For JSON it shows how
much of the gap the float parsing alone explains.
Run: ``python -m bench.bench_ingest [--windows 20000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import psycopg

from bench.harness import Services, bare_hop, preload, register_session, services
from cbm.rawcodec import decode_vibration, encode_vibration_binary, encode_vibration_json
from cbm.settings import from_mapping
from cbm.topics import Topics
from cbm.worker import Worker
from services.ingest.stage import IngestStage

# Far beyond any drain here (20,000 windows take under a minute): a run that
# stalls, e.g. on a dead-lettered window that never counts, fails instead.
DRAIN_TIMEOUT_S: Final = 600.0


def payloads(
    n: int, fmt: str, base: str, *, prefix: str = "asset", assets: int = 100
) -> list[tuple[str, bytes]]:
    """Return ``n`` raw vibration messages spread over ``assets`` assets named ``prefix-NNNN``.

    Each round gets its own prefix: ingest keeps every asset's newest time in
    the database, so reused ids would make a later round's windows late ones.
    """
    topics = Topics(base)
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(16, 1000)).astype(np.float32)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    encode = encode_vibration_binary if fmt == "binary" else encode_vibration_json
    out = []
    for i in range(n):
        asset = f"{prefix}-{i % assets:04d}"
        seq = i // assets
        out.append(
            (
                topics.raw(asset, "vibration"),
                encode(
                    seq=seq,
                    time=t0 + timedelta(seconds=seq),
                    sample_rate_hz=5000.0,
                    samples=samples[i % 16],
                ),
            )
        )
    return out


def ingest_rate(svc: Services, messages: list[tuple[str, bytes]], base: str) -> float:
    """Return windows/s ingest drains from a full queue, until its DB ledger has them all."""
    settings = from_mapping(
        {
            "base_topic": base,
            "mqtt": {"host": svc.broker.host, "port": svc.broker.port},
            "database": {"url": svc.db_url},
            "worker": {"metrics_ports": {}, "instance": base.rsplit("/", 1)[-1][:16]},
        }
    )
    import threading  # noqa: PLC0415

    worker: Worker[Any] = Worker(settings, IngestStage(settings))
    # The worker's persistent session exists, subscribed, before the queue fills.
    for topic_filter in worker.stage.subscriptions():
        register_session(svc.broker, worker.link.client_id, topic_filter)
    preload(svc.broker, messages)
    with psycopg.connect(svc.db_url, autocommit=True) as conn:
        before = _accepted(conn)
        started = time.perf_counter()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        while _accepted(conn) - before < len(messages):
            if time.monotonic() > deadline:
                worker.stop_event.set()
                raise RuntimeError(
                    f"ingest accepted {_accepted(conn) - before} of {len(messages)} windows "
                    f"in {DRAIN_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    worker.stop_event.set()
    thread.join()
    return len(messages) / elapsed


def _accepted(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(sum(windows_accepted), 0) FROM asset").fetchone()
    return int(row[0]) if row else 0


def decode_us(messages: list[tuple[str, bytes]]) -> float:
    """Return µs per message of decoding and validating the payloads alone."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    for topic, payload in messages:
        decode_vibration(payload, asset_id=topic.split("/")[-2], received_at=now)
    return (time.perf_counter() - started) / len(messages) * 1e6


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its figures and return them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"windows": args.windows, "rounds": args.rounds}
    with services() as svc:
        for fmt in ("binary", "json"):
            hops, ingests = [], []
            for r in range(args.rounds):
                hop_base, base = f"hop{fmt}{r}", f"bench/ingest{fmt}{r}"
                hop_msgs = payloads(args.windows, fmt, hop_base)
                hops.append(bare_hop(svc.broker, hop_msgs, f"{hop_base}/raw/+/vibration"))
                mine = payloads(args.windows, fmt, base, prefix=f"{fmt[:3]}{r}")
                ingests.append(ingest_rate(svc, mine, base))
            ratios = [i / h for i, h in zip(ingests, hops, strict=True)]
            hop_us = 1e6 / statistics.median(hops)
            decode = decode_us(payloads(min(args.windows, 2000), fmt, "decode"))
            ceiling = hop_us / (hop_us + decode)
            report[fmt] = {
                "bare_hop_msgs_per_s": [round(h) for h in hops],
                "ingest_windows_per_s": [round(i) for i in ingests],
                "ratios": [round(x, 3) for x in ratios],
                "ratio": round(statistics.median(ratios), 3),
                "decode_us": round(decode, 1),
                "decode_ceiling": round(ceiling, 3),
            }
            print(
                f"ingest {fmt:6s}: {statistics.median(ingests):8.0f} windows/s | bare paho hop"
                f" {statistics.median(hops):8.0f} msgs/s | ratio {statistics.median(ratios):.2f}"
                f" (rounds {', '.join(f'{x:.2f}' for x in ratios)}; goal >= 0.70)"
                f" | decode {decode:.0f} us/msg, ceiling {ceiling:.2f}"
            )
    return report


if __name__ == "__main__":
    main()
