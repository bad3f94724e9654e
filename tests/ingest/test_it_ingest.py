"""Ingest against a real Mosquitto and a real PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import psycopg

from cbm.frames import decode_windows
from cbm.messages import TemperatureStatus
from cbm.rawcodec import encode_temperature_json, encode_vibration_binary, encode_vibration_json
from cbm.settings import Settings
from cbm.topics import Topics
from tests.support.mqtt import Publisher, Recorder, eventually
from tests.support.workers import ProcessWorker, ThreadWorker


def windows_seen(rec: Recorder, base: str) -> list[tuple[str, datetime]]:
    keys = []
    for m in rec.on(f"{base}/windows/"):
        keys.extend((w.asset_id, w.time) for w in decode_windows(m.payload))
    return keys


@contextlib.contextmanager
def ingest_rig(settings: Settings) -> Iterator[tuple[ThreadWorker, Recorder, Publisher]]:
    """An ingest worker, a recorder of its windows and dead letters, and a publisher."""
    host, port = settings.mqtt.host, settings.mqtt.port
    topics = Topics(settings.base_topic)
    with contextlib.ExitStack() as stack:
        rec = Recorder(
            host, port, topics.stage_filter("windows"), f"{settings.base_topic}/deadletter/+"
        )
        stack.callback(rec.close)
        worker = ThreadWorker(settings, "ingest")
        stack.callback(worker.stop)
        pub = Publisher(host, port)
        stack.callback(pub.close)
        yield worker, rec, pub


def vibration(seq: int, t: datetime, n: int = 1000) -> bytes:
    rng = np.random.default_rng(seq)
    return encode_vibration_binary(
        seq=seq, time=t, sample_rate_hz=5000.0, samples=rng.normal(size=n).astype(np.float32)
    )


def test_good_raw_data_becomes_windows_and_asset_rows(make_settings, broker, db) -> None:
    settings = make_settings(
        assets={"items": [{"id": "pump-1", "name": "Feed pump", "site": "north"}]}
    )
    topics = Topics(settings.base_topic)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    with ingest_rig(settings) as (_worker, rec, pub):
        pub.send(
            [
                (
                    topics.raw("pump-1", "temperature"),
                    encode_temperature_json(seq=1, time=t0, temperature_c=41.5),
                )
            ]
        )
        eventually(
            lambda: db.execute("SELECT count(*) FROM temperature").fetchone()[0] == 1,
            message="temperature row",
        )
        messages = [
            (topics.raw("pump-1", "vibration"), vibration(i, t0 + timedelta(seconds=i)))
            for i in range(1, 11)
        ]
        messages.append(
            (
                topics.raw("fan-7", "vibration"),
                encode_vibration_json(
                    seq=1, time=t0, sample_rate_hz=5000.0, samples=np.ones(500), asset_id="fan-7"
                ),
            )
        )
        pub.send(messages)
        seen = eventually(
            lambda: (
                len(windows_seen(rec, settings.base_topic)) >= 11
                and windows_seen(rec, settings.base_topic)
            ),
            message="11 windows",
        )
        assert sorted(seen) == sorted(
            [("pump-1", t0 + timedelta(seconds=i)) for i in range(1, 11)] + [("fan-7", t0)]
        )
        frames = [decode_windows(m.payload) for m in rec.on(f"{settings.base_topic}/windows/")]
        pump = next(w for f in frames for w in f if w.asset_id == "pump-1")
        assert pump.temperature_status is TemperatureStatus.LATEST
        assert pump.temperature_c == 41.5

        rows = eventually(
            lambda: db.execute(
                "SELECT asset_id, name, site, listed, windows_accepted, temperature_readings, "
                "last_seq, first_seen, last_seen FROM asset ORDER BY asset_id"
            ).fetchall(),
            message="asset rows",
        )
        assert rows == [
            ("fan-7", "fan-7", "", False, 1, 0, 1, t0, t0),
            (
                "pump-1",
                "Feed pump",
                "north",
                True,
                10,
                1,
                10,
                t0 + timedelta(seconds=1),
                t0 + timedelta(seconds=10),
            ),
        ]
        assert db.execute("SELECT count(*) FROM ingest_window").fetchone()[0] == 11


def test_bad_payload_is_dead_lettered_and_next_good_one_goes_through(
    make_settings, broker, db
) -> None:
    settings = make_settings()
    topics = Topics(settings.base_topic)
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    with ingest_rig(settings) as (worker, rec, pub):
        pub.send(
            [
                (topics.raw("pump-2", "vibration"), b'{"schema_version": 1, "vibration": "oops"}'),
                (topics.raw("pump-2", "vibration"), vibration(1, t0)),
            ]
        )
        dead = eventually(lambda: rec.on(topics.deadletter("ingest")), message="dead letter")
        doc = orjson.loads(dead[0].payload)
        assert doc["reason"] == "missing_field"
        assert doc["topic"] == topics.raw("pump-2", "vibration")
        assert doc["payload_size"] == 42
        eventually(
            lambda: windows_seen(rec, settings.base_topic) == [("pump-2", t0)],
            message="good window after the bad one",
        )
        row = eventually(
            lambda: db.execute("SELECT reason, topic, asset_id FROM dead_letter").fetchall(),
            message="dead row",
        )
        assert row == [("missing_field", topics.raw("pump-2", "vibration"), "pump-2")]
        assert db.execute(
            "SELECT dead_letters, windows_accepted FROM asset WHERE asset_id = 'pump-2'"
        ).fetchone() == (1, 1)
        assert worker.thread.is_alive()


def test_kill_9_before_ack_loses_nothing(make_settings, broker, db_url, tmp_path: Path) -> None:
    """Hold the worker inside its DB write (a table lock), kill -9 it, restart: all arrive."""
    check_kill_9_before_ack(make_settings(worker={"batch_max": 50}), db_url, tmp_path)


def check_kill_9_before_ack(settings: Settings, db_url: str, tmp_path: Path) -> None:
    """The kill -9 scenario on the broker ``settings`` name (the embedded broker's tests too)."""
    topics = Topics(settings.base_topic)
    host, port = settings.mqtt.host, settings.mqtt.port
    rec = Recorder(host, port, topics.stage_filter("windows"))
    worker = ProcessWorker(settings, "ingest", tmp_path)
    pub = Publisher(host, port)
    t0 = datetime.now(UTC) - timedelta(minutes=3)
    sent = [("pump-3", t0 + timedelta(seconds=i)) for i in range(120)]
    try:
        with psycopg.connect(db_url, autocommit=True) as probe:
            eventually(
                lambda: (
                    probe.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name = 'cbm-ingest'"
                    ).fetchone()[0]
                    > 0
                ),
                message="worker connected to the database",
            )
        pub.send([(topics.raw("pump-3", "vibration"), vibration(1, sent[0][1]))])
        eventually(lambda: windows_seen(rec, settings.base_topic), message="first window")
        with psycopg.connect(db_url) as locker:
            locker.execute("LOCK TABLE ingest_window IN EXCLUSIVE MODE")
            pub.send(
                [
                    (topics.raw("pump-3", "vibration"), vibration(i + 1, t))
                    for i, (_, t) in enumerate(sent[1:], start=1)
                ]
            )
            with psycopg.connect(db_url, autocommit=True) as probe:
                eventually(
                    lambda: (
                        probe.execute(
                            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                            "WHERE a.application_name = 'cbm-ingest' AND NOT l.granted"
                        ).fetchone()[0]
                        > 0
                    ),
                    message="worker blocked in its write",
                )
            worker.kill()
            locker.rollback()
        assert len(windows_seen(rec, settings.base_topic)) < len(sent)
        worker.start()
        eventually(
            lambda: set(windows_seen(rec, settings.base_topic)) == set(sent),
            timeout=30,
            message="every window after restart",
        )
        with psycopg.connect(db_url) as conn:
            assert conn.execute(
                "SELECT count(*), count(DISTINCT time) FROM ingest_window"
            ).fetchone() == (120, 120)
            assert conn.execute("SELECT windows_accepted FROM asset").fetchone() == (120,)
    finally:
        if worker.alive():
            assert worker.terminate() == 0, worker.output()
        pub.close()
        rec.close()


def test_a_batch_the_database_refuses_is_dead_lettered_and_later_batches_flow(
    make_settings, broker, db
) -> None:
    """A permanent store error: the batch goes to dead letters with its full payload, no loss."""
    db.execute(
        """CREATE FUNCTION refuse_pump_9() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.asset_id = 'pump-9' THEN RAISE EXCEPTION 'pump-9 is refused here'; END IF;
             RETURN NEW;
           END $$"""
    )
    db.execute(
        "CREATE TRIGGER refuse_pump_9 BEFORE INSERT ON ingest_window "
        "FOR EACH ROW EXECUTE FUNCTION refuse_pump_9()"
    )
    settings = make_settings(worker={"batch_max": 1, "retry_initial_s": 0.05})
    topics = Topics(settings.base_topic)
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    refused = vibration(9, t0)  # unlike any good window's bytes
    with ingest_rig(settings) as (worker, rec, pub):
        pub.send(
            [
                (topics.raw("pump-8", "vibration"), vibration(1, t0)),
                (topics.raw("pump-9", "vibration"), refused),
                (topics.raw("pump-8", "vibration"), vibration(2, t0 + timedelta(seconds=1))),
            ]
        )
        eventually(
            lambda: (
                windows_seen(rec, settings.base_topic)
                == [("pump-8", t0), ("pump-8", t0 + timedelta(seconds=1))]
            ),
            message="the good windows on both sides of the refused one",
        )
        dead = eventually(lambda: rec.on(topics.deadletter("ingest")), message="dead letter")
        doc = orjson.loads(dead[0].payload)
        assert (doc["reason"], doc["topic"]) == ("store_error", topics.raw("pump-9", "vibration"))
        assert "pump-9 is refused here" in doc["detail"]
        assert db.execute("SELECT reason, payload_excerpt FROM dead_letter").fetchall() == [
            ("store_error", refused)
        ]
        assert db.execute(
            "SELECT asset_id, count(*) FROM ingest_window GROUP BY asset_id"
        ).fetchall() == [("pump-8", 2)]
        assert worker.thread.is_alive()
