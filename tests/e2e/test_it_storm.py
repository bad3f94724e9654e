"""A storm of malformed and hostile input while good data flows through all four stages.

Every good window is stored once in every table; every bad message is
dead-lettered once, with its reason, in the ``dead_letter`` table and on
``{base}/deadletter/{stage}``; no worker restarts (same pids at the end); and
each worker's ``/metrics`` counts exactly what the test sent it.
"""

from __future__ import annotations

import base64
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cbm import tables
from cbm.rawcodec import encode_temperature_binary, encode_vibration_binary
from cbm.topics import Topics
from cbm.worker import EXCERPT_BYTES
from tests.e2e.checks import (
    DB,
    Counted,
    assert_counters,
    assert_every_window_once,
    row_count,
    wait_for_rows,
)
from tests.e2e.conftest import PipelineFactory, SettingsFactory
from tests.e2e.hostile import (
    DUPLICATE_ASSET,
    LISTED,
    Hostile,
    duplicates,
    internal_classes,
    raw_classes,
    samples,
)
from tests.support.mqtt import Publisher, Recorder, eventually
from tests.support.services import Broker

GOOD = ("good-1", "good-2", "good-3")
ROUNDS = 15


def key(stage: str, topic: str, size: int, excerpt: bytes) -> tuple[str, str, int, bytes]:
    return stage, topic, size, excerpt[:EXCERPT_BYTES]


def test_bad_input_storm_is_dead_lettered_while_good_data_flows(
    e2e_settings: SettingsFactory, start_pipeline: PipelineFactory, broker: Broker, db: DB
) -> None:
    settings = e2e_settings(
        ingest={"accept_unknown_assets": False},
        assets={"items": [{"id": a} for a in (*GOOD, *LISTED)]},
    )
    topics = Topics(settings.base_topic)
    base = topics.base
    now = datetime.now(UTC)
    raw = raw_classes(topics, now=now)
    internal = internal_classes(
        topics, now=now, asset=GOOD[0], partitions=settings.worker.partitions
    )
    assert len(raw) >= 40 and len({h.name for h in raw}) == len(raw)
    hostile: list[Hostile] = raw + internal
    expected = {key(h.stage, h.topic, len(h.dead_payload), h.dead_payload): h for h in hostile}
    assert len(expected) == len(hostile), "two classes are the same message"
    doubles = duplicates(topics, now=now)
    for topic, payload in doubles:
        stage = "ingest"
        expected[key(stage, topic, len(payload), payload)] = Hostile(
            "second copy", stage, topic, payload, "duplicate"
        )

    rec = Recorder(
        broker.host,
        broker.port,
        topics.stage_filter("windows"),
        topics.stage_filter("features"),
        topics.stage_filter("rul"),
        f"{base}/deadletter/+",
    )
    pipeline = start_pipeline(settings)
    pids = pipeline.pids()
    pub = Publisher(broker.host, broker.port)
    try:
        # Good windows of three machines, round by round, with a slice of the
        # storm (and the duplicates' first and second copies) between rounds.
        sent: list[tuple[str, datetime]] = []
        good_messages = 0
        storm = iter(hostile)
        per_round = len(hostile) // ROUNDS + 1
        t0 = now - timedelta(minutes=2)
        for i in range(ROUNDS):
            batch = []
            for n, asset in enumerate(GOOD):
                t = t0 + timedelta(seconds=i)
                batch.append(
                    (
                        topics.raw(asset, "temperature"),
                        encode_temperature_binary(seq=i, time=t, temperature_c=40.0 + n),
                    )
                )
                batch.append(
                    (
                        topics.raw(asset, "vibration"),
                        encode_vibration_binary(
                            seq=i, time=t, sample_rate_hz=5000.0, samples=samples(100 * i + n)
                        ),
                    )
                )
                sent.append((asset, t))
            good_messages += len(batch)
            if i in (3, 9):
                batch += doubles  # first copies accepted, second copies refused
            batch += [(h.topic, h.payload) for _, h in zip(range(per_round), storm, strict=False)]
            pub.send(batch)
        sent.append((DUPLICATE_ASSET, now - timedelta(minutes=1)))
        good_messages += len(doubles)

        wait_for_rows(db, sent)
        eventually(
            lambda: row_count(db, tables.DEAD_LETTER) >= len(expected),
            message=f"{len(expected)} dead letters",
        )
        assert_every_window_once(db, sent)

        rows = db.execute(
            f"SELECT stage, topic, payload_size, payload_excerpt, reason FROM {tables.DEAD_LETTER}"
        ).fetchall()
        found = Counter(key(s, t, n, bytes(e)) for s, t, n, e, _ in rows)
        want = Counter(expected.keys())
        assert found == want, (
            f"missing {[expected[k].name for k in want - found]}, "
            f"unexpected {[(k[0], k[1][:60], k[3][:60]) for k in found - want]}"
        )
        wrong = [
            (expected[key(s, t, n, bytes(e))].name, reason)
            for s, t, n, e, reason in rows
            if expected[key(s, t, n, bytes(e))].reason != reason
        ]
        assert not wrong, f"dead-lettered with the wrong reason (class, got): {wrong}"

        def published() -> list[dict[str, Any]]:
            return [orjson.loads(m.payload) for m in rec.on(f"{base}/deadletter/")]

        eventually(lambda: len(published()) >= len(expected), message="dead letters on MQTT")
        on_mqtt = Counter(
            (
                key(
                    d["stage"],
                    d["topic"],
                    d["payload_size"],
                    base64.b64decode(d["payload_excerpt_b64"]),
                ),
                d["reason"],
            )
            for d in published()
        )
        assert on_mqtt == Counter({(k, h.reason): 1 for k, h in expected.items()})

        assert pipeline.pids() == pids, "a worker restarted"
        assert all(pipeline.alive().values()), pipeline.logs()

        dead_by_stage: dict[str, Counter[str]] = {}
        for h in expected.values():
            dead_by_stage.setdefault(h.stage, Counter())[h.reason] += 1
        windows = len(sent)
        # One outbox row per notification and receiver (Slack or log, MQTT): count notifications.
        found = db.execute(f"SELECT count(DISTINCT key) FROM {tables.ALERT}").fetchone()
        assert found is not None
        alerts = int(found[0])
        assert_counters(
            pipeline,
            {
                "ingest": Counted(
                    good_messages + len(raw) + len(doubles), windows, dead_by_stage["ingest"]
                ),
                "features": Counted(
                    len(rec.on(f"{base}/windows/")), windows, dead_by_stage["features"]
                ),
                "inference": Counted(
                    len(rec.on(f"{base}/features/")), windows, dead_by_stage["inference"]
                ),
                "alerter": Counted(len(rec.on(f"{base}/rul/")), alerts, dead_by_stage["alerter"]),
            },
        )
        assert all(
            pipeline.metrics(stage).value("cbm_worker_up", service=stage) == 1
            for stage in pipeline.workers
        )
        assert pipeline.stop() == dict.fromkeys(pipeline.workers, 0)
    finally:
        pub.close()
        rec.close()
