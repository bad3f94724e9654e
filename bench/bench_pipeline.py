"""The whole chain end to end: sustained throughput, latency and memory, against a bare paho hop.

Publisher -> ingest -> features -> inference -> alerter, each a ``cbm run``
process, with a private Mosquitto on the project's config (persistence on)
and a scratch database. Devices are simulated by one publisher process
sending 1,000-sample binary windows (no temperature readings) of ``--assets``
machines in turn, each stamped with the wall clock as its event time.

- bare hop: ``bench.harness.bare_hop`` on the same windows, same broker, same run.
- warm-up: every machine sends one window, so each stage knows every asset
  (the first window of an asset costs inference a database read).
- steps: the offered rate goes up step by step. A rate is *sustained* when the
  publisher kept it, the backlog (windows published but not yet predicted) did
  not grow over the step, it drained within 2 s of the last publish, and every
  window has its prediction row (0 lost). Stepping stops at the first rate that
  is not. Latency is ``prediction.created_at - time`` (event time to row).
- drain: ingest is stopped, ``--drain-windows`` windows queue at the broker,
  ingest starts again: the chain's capacity with no publisher sharing the CPU,
  the same setting as the bare hop.
- memory: each worker's RSS (``/proc``) after every step; and each stage's
  state per machine once it holds its full history, measured on the pure
  cores (tracemalloc) and scaled to ``--assets``.

The inference baseline is shortened to 2 vectors so anomaly scores run on
every prediction, as they do once a fleet has run a while; the anomaly alert
threshold is raised so those short baselines do not page anyone. The machines
are healthy, so their RUL sits at the cap and inference skips the occlusion
explanation (it cannot name anything there); a degrading machine's
prediction costs about 100 µs more for it (docs/performance.md: 115 µs per
prediction with every one explained, 53 with the 59 % at the cap skipped).

Run: ``python -m bench.bench_pipeline [--assets 10000] [--rates 100,250,500,...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.harness import bare_hop, services
from cbm import tables
from cbm.rawcodec import BINARY_VERSION, VIBRATION_HEADER, VIBRATION_MAGIC
from cbm.settings import Settings, from_mapping
from cbm.topics import Topics
from services.alerter.config import rules_for
from services.alerter.events import Prediction
from services.alerter.rules import step_prediction
from services.features import core as features_core
from services.inference import core as inference_core
from services.ingest.core import IngestState
from services.simulator.fleet import make_fleet
from services.simulator.physics import simulate_fleet
from tests.support.pipeline import RECORD_KINDS, STAGES, Pipeline, metrics_ports
from tests.support.services import Broker

RATE_HZ = 5000.0
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
_BASE = "bench/pipe"


# -- services -------------------------------------------------------------------


def healthy_blocks(n: int = 32) -> list[bytes]:
    """Return the sample bytes of ``n`` simulated windows of healthy machines."""
    specs = make_fleet(n, seed=3, healthy_share=1.0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    windows = simulate_fleet(specs, seed=3, start=start, max_windows=1)
    return [np.ascontiguousarray(w.samples, dtype="<f4").tobytes() for w in windows]


def window(blocks: list[bytes], seq: int, time_us: int, k: int) -> bytes:
    """Return one binary vibration window (what a device sends)."""
    block = blocks[k % len(blocks)]
    header = VIBRATION_HEADER.pack(
        VIBRATION_MAGIC, BINARY_VERSION, 0, 0, seq, time_us, RATE_HZ, len(block) // 4
    )
    return header + block


# -- the publisher (its own process) ----------------------------------------------


def publish(
    host: str,
    port: int,
    assets: int,
    rate: float,
    seconds: float,
    first: int,
    sent: Synchronized,  # type: ignore[type-arg]
    out: Any,
) -> None:
    """Publish ``rate`` windows/s for ``seconds``, round robin over the machines.

    Window ``first + n`` goes to machine ``(first + n) % assets`` with sequence
    number ``(first + n) // assets``; its event time is the clock at publish.
    """
    topics = Topics(_BASE)
    blocks = healthy_blocks()
    names = [topics.raw(f"m{i:05d}", "vibration") for i in range(assets)]
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1

    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-devices-{uuid.uuid4().hex[:6]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(2000)
    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    started_wall = time.time()
    started = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = min(int(rate * elapsed) + 1, int(rate * seconds))
        while n < due:
            k = first + n
            client.publish(
                names[k % assets], window(blocks, k // assets, int(time.time() * 1e6), k), qos=1
            )
            n += 1
        sent.value = n
        time.sleep(0.002)
    published_s = time.monotonic() - started
    cpu_s = time.process_time()
    deadline = time.monotonic() + 60
    while acked < n and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    out.put(
        {
            "published": n,
            "acked": acked,
            "start": started_wall,
            "end": time.time(),
            "achieved_per_s": n / published_s,
            "cpu_s": cpu_s,
        }
    )


# -- measuring the workers ----------------------------------------------------------


def proc_stat(pid: int) -> tuple[float, float, float]:
    """Return (CPU seconds, RSS MB, peak RSS MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    kb = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith("Vm")}
    return cpu, kb["VmRSS"] / 1024, kb["VmHWM"] / 1024


def backends(db: psycopg.Connection[Any]) -> dict[int, float]:
    """Return CPU seconds of the workers' PostgreSQL backends, by pid."""
    pids = [
        int(pid)
        for (pid,) in db.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'cbm-%'"
        )
    ]
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            found[pid] = proc_stat(pid)[0]
    return found


def other_cpu(run: Run) -> dict[str, float]:
    """Return CPU seconds used so far by the broker and the workers' database backends.

    A broker the run did not start (``CBM_TEST_MQTT_URL``) is not counted.
    """
    process = run.broker.process
    broker = {"broker": proc_stat(process.pid)[0]} if process is not None else {}
    return {**broker, **{f"pg{pid}": cpu for pid, cpu in backends(run.db).items()}}


def records(pipeline: Pipeline) -> dict[str, float]:
    """Return each worker's records-out counter."""
    return {
        s: pipeline.metrics(s).value("cbm_records_out_total", kind=k)
        for s, k in RECORD_KINDS.items()
    }


def predicted(db: psycopg.Connection[Any], start: float, end: float) -> int:
    """Return the prediction rows whose event time lies in [start, end] (epoch seconds)."""
    found = db.execute(
        f"SELECT count(*) FROM {tables.PREDICTION} WHERE time BETWEEN to_timestamp(%s) "
        "AND to_timestamp(%s)",
        (start, end),
    ).fetchone()
    return int(found[0]) if found else 0


def latency(db: psycopg.Connection[Any], start: float, end: float) -> dict[str, float]:
    """Return percentiles of event time -> prediction row, in ms, over [start, end]."""
    row = db.execute(
        f"""SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY lag),
                   max(lag)
            FROM (SELECT extract(epoch FROM created_at - time) * 1000 AS lag
                  FROM {tables.PREDICTION}
                  WHERE time BETWEEN to_timestamp(%s) AND to_timestamp(%s)) AS l""",
        (start, end),
    ).fetchone()
    assert row is not None and row[0] is not None
    p50, p90, p99 = (float(x) for x in row[0])
    return {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": float(row[1])}


@dataclass
class Run:
    """The services and workers of one benchmark run."""

    broker: Broker
    settings: Settings
    pipeline: Pipeline
    db: psycopg.Connection[Any]
    assets: int
    published: int = 0


def offer(run: Run, rate: float, seconds: float) -> dict[str, Any]:
    """Offer ``rate`` windows/s for ``seconds``; return the step's figures."""
    ctx = mp.get_context("spawn")
    sent = ctx.Value("q", 0)
    out = ctx.Queue()
    before = {s: proc_stat(w.pid) for s, w in run.pipeline.workers.items()}
    others = other_cpu(run)
    counted = records(run.pipeline)
    proc = ctx.Process(
        target=publish,
        args=(run.broker.host, run.broker.port, run.assets, rate, seconds, run.published),
        kwargs={"sent": sent, "out": out},
    )
    proc.start()
    backlog: list[tuple[float, float]] = []
    t0 = time.monotonic()
    while proc.is_alive() and sent.value < rate * seconds:
        through = records(run.pipeline)["inference"] - counted["inference"]
        backlog.append((time.monotonic() - t0, sent.value - through))
        time.sleep(0.5)
    result = out.get(timeout=120)
    proc.join()
    finished = time.monotonic()
    n = result["published"]
    run.published += n
    while predicted(run.db, result["start"], result["end"]) < n and time.monotonic() < (
        finished + 30
    ):
        time.sleep(0.05)
    drained_s = time.monotonic() - finished
    stored = predicted(run.db, result["start"], result["end"])
    wall = time.monotonic() - t0
    after = {s: proc_stat(w.pid) for s, w in run.pipeline.workers.items()}
    others_after = other_cpu(run)
    done = records(run.pipeline)
    pg = sum(v - others[k] for k, v in others_after.items() if k.startswith("pg") and k in others)
    half = [b for t, b in backlog if t >= seconds / 2]
    slope = float(np.polyfit(range(len(half)), half, 1)[0]) * 2 if len(half) > 2 else 0.0
    step: dict[str, Any] = {
        "offered_per_s": rate,
        "achieved_per_s": round(result["achieved_per_s"], 1),
        "published": n,
        "stored": stored,
        "lost": n - stored,
        "unacked": n - result["acked"],
        "drained_s": round(drained_s, 2),
        "backlog_max": int(max((b for _, b in backlog), default=0)),
        "backlog_slope_per_s": round(slope, 1),
        "stages": {
            s: {
                "records_per_s": round((done[s] - counted[s]) / wall, 1),
                "cpu_ms_per_window": round(1000 * (after[s][0] - before[s][0]) / max(n, 1), 3),
                "rss_mb": round(after[s][1], 1),
                "peak_rss_mb": round(after[s][2], 1),
            }
            for s in STAGES
        },
    }
    per_window = {s: v["cpu_ms_per_window"] for s, v in step["stages"].items()}
    if "broker" in others:
        broker_s = others_after["broker"] - others["broker"]
        per_window["broker"] = round(1000 * broker_s / max(n, 1), 3)
    per_window["postgres"] = round(1000 * pg / max(n, 1), 3)
    per_window["publisher"] = round(1000 * result["cpu_s"] / max(n, 1), 3)
    step["cpu_ms_per_window"] = per_window
    step["sustained"] = (
        result["achieved_per_s"] >= 0.95 * rate
        and step["lost"] == 0
        and drained_s <= 2.0
        and slope <= 0.05 * rate
    )
    if stored:
        step["latency"] = {
            k: round(v, 1) for k, v in latency(run.db, result["start"], result["end"]).items()
        }
    return step


def drain(run: Run, windows: int) -> dict[str, Any]:
    """Queue ``windows`` for a stopped ingest, start it, time the chain until all are stored."""
    ingest = run.pipeline["ingest"]
    assert ingest.terminate() == 0
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    sent = ctx.Value("q", 0)
    rate = 2000.0
    proc = ctx.Process(
        target=publish,
        args=(run.broker.host, run.broker.port, run.assets, rate, windows / rate, run.published),
        kwargs={"sent": sent, "out": out},
    )
    proc.start()
    result = out.get(timeout=300)
    proc.join()
    n = result["published"]
    run.published += n
    started = time.monotonic()
    ingest.start()
    while predicted(run.db, result["start"], result["end"]) < n:
        time.sleep(0.05)
        assert time.monotonic() - started < 300, "the chain did not drain its queue"
    # From the first row to the last: the worker's start-up is not the chain's speed.
    span = run.db.execute(
        f"SELECT extract(epoch FROM max(created_at) - min(created_at)) FROM {tables.PREDICTION} "
        "WHERE time BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
        (result["start"], result["end"]),
    ).fetchone()
    seconds = float(span[0]) if span and span[0] else time.monotonic() - started
    return {"windows": n, "seconds": round(seconds, 2), "windows_per_s": round(n / seconds, 1)}


# -- memory of a full history, per machine ----------------------------------------------


def state_bytes_per_asset(settings: Settings, sample: int = 200) -> dict[str, int]:
    """Return what each stage keeps per machine once it holds a machine's full history."""
    now = datetime.now(UTC)
    out: dict[str, int] = {}

    def measure(build: Any) -> int:
        tracemalloc.start()
        kept = build()
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del kept
        return size // sample

    depth = settings.ingest.dedupe_depth

    def ingest() -> Any:
        state = IngestState()
        for a in range(sample):
            track = state.track(f"m{a:05d}")
            for s in range(depth):
                track.remember_window(1_800_000_000_000_000 + s * 10_000_000, s, depth)
        return state

    history = settings.features.temperature_history

    def features() -> Any:
        state = features_core.FeaturesState()
        for a in range(sample):
            readings = [(now + timedelta(seconds=s), 40.0 + s / 100) for s in range(history)]
            features_core.remember_temperatures(state, f"m{a:05d}", readings, history)
            state.operating[f"m{a:05d}"] = (24.6, np.zeros(4), (1200.0, 2400.0))
        return state

    rules = inference_core.Rules(baseline_vectors=20)

    def inference() -> Any:
        state = inference_core.InferenceState()
        for a in range(sample):
            rows = [np.random.default_rng(a).normal(size=14) for _ in range(20)]
            state.assets[f"m{a:05d}"] = inference_core.new_sequence(
                10, rules, history=rows[-10:], baseline=rows, last_time=now, last_rul=(1, 1, 2)
            )
        return state

    alerting = settings.alerting

    def alerter() -> Any:
        states = {}
        for a in range(sample):
            asset = f"m{a:05d}"
            state = None
            for s in range(alerting.debounce_count + 1):
                p = Prediction(
                    asset_id=asset,
                    time=now + timedelta(seconds=s),
                    rul_hours=40.0,
                    rul_low=30.0,
                    rul_high=50.0,
                    anomaly_score=0.5,
                    running=True,
                    model_version="m-0123456789",
                )
                state, _ = step_prediction(state, p, rules_for(alerting, asset))
            states[asset] = (state, rules_for(alerting, asset), ("env_bpfo", 0.4))
        return states

    for name, build in (
        ("ingest", ingest),
        ("features", features),
        ("inference", inference),
        ("alerter", alerter),
    ):
        out[name] = measure(build)
    return out


# -- the report ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its figures and return them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--rates", default="100,250,500,750,1000,1500,2000,2500,3000")
    parser.add_argument("--step-s", type=float, default=20.0)
    parser.add_argument("--hop-windows", type=int, default=20_000)
    parser.add_argument("--drain-windows", type=int, default=20_000)
    parser.add_argument(
        "--batch-ms", type=int, default=None, help="worker.batch_ms (default: the setting's)"
    )
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    report: dict[str, Any] = {"assets": args.assets, "cpus": os.cpu_count()}
    worker: dict[str, Any] = {"log_level": "WARNING"}
    if args.batch_ms is not None:
        worker["batch_ms"] = args.batch_ms
    blocks = healthy_blocks()
    with services() as svc:
        broker, db_url = svc.broker, svc.db_url
        hop_messages = [
            (f"hop/raw/m{i % args.assets:05d}/vibration", window(blocks, i, 0, i))
            for i in range(args.hop_windows)
        ]
        hop = bare_hop(broker, hop_messages, "hop/raw/+/vibration")
        del hop_messages
        report["bare_hop_msgs_per_s"] = round(hop)
        report["batch_ms"] = args.batch_ms
        print(f"bare paho hop: {hop:.0f} windows/s")
        settings = from_mapping(
            {
                "base_topic": _BASE,
                "mqtt": {"host": broker.host, "port": broker.port},
                "database": {"url": db_url},
                "worker": {"metrics_ports": metrics_ports(), **worker},
                "inference": {"baseline_vectors": 2},
                "alerting": {"anomaly_threshold": 1000.0},
            }
        )
        with (
            tempfile.TemporaryDirectory(prefix="cbm-bench-pipe-") as tmp,
            psycopg.connect(db_url, autocommit=True) as db,
        ):
            pipeline = Pipeline(settings, Path(tmp))
            run = Run(broker, settings, pipeline, db, args.assets)
            try:
                warm = offer(run, min(500.0, rates[-1]), args.assets / min(500.0, rates[-1]))
                report["warm_up"] = {k: warm[k] for k in ("published", "lost", "drained_s")}
                report["steps"] = []
                for rate in rates:
                    step = offer(run, rate, args.step_s)
                    report["steps"].append(step)
                    _print_step(step)
                    if not step["sustained"]:
                        break
                report["drain"] = drain(run, args.drain_windows)
                print(f"drain from a full queue: {report['drain']['windows_per_s']} windows/s")
                report["rss_mb"] = {
                    s: round(proc_stat(w.pid)[1], 1) for s, w in pipeline.workers.items()
                }
                found = db.execute(f"SELECT count(*) FROM {tables.ALERT}").fetchone()
                report["alerts"] = int(found[0]) if found else 0
            finally:
                pipeline.stop()
    _summarise(report, hop, settings)
    return report


def _print_step(step: dict[str, Any]) -> None:
    lat = step.get("latency", {})
    print(
        f"offered {step['offered_per_s']:6.0f}/s achieved {step['achieved_per_s']:7.1f}/s "
        f"lost {step['lost']} drained {step['drained_s']:.1f}s backlog max {step['backlog_max']} "
        f"p50 {lat.get('p50_ms', 0):.0f} p99 {lat.get('p99_ms', 0):.0f} ms "
        f"{'sustained' if step['sustained'] else 'NOT sustained'}"
    )


def _summarise(report: dict[str, Any], hop: float, settings: Settings) -> None:
    steps = report["steps"]
    sustained = [s for s in steps if s["sustained"]]
    best = max((s["offered_per_s"] for s in sustained), default=0.0)
    report["sustained_windows_per_s"] = best
    report["ratio_sustained_to_bare_hop"] = round(best / hop, 3)
    report["ratio_drain_to_bare_hop"] = round(report["drain"]["windows_per_s"] / hop, 3)
    for target in (100.0, 1000.0):
        below = [s for s in sustained if s["offered_per_s"] <= target and "latency" in s]
        if below:
            pick = max(below, key=lambda s: s["offered_per_s"])
            report[f"latency_at_{target:.0f}"] = {"rate": pick["offered_per_s"], **pick["latency"]}
    per_asset = state_bytes_per_asset(settings)
    report["state_bytes_per_asset"] = per_asset
    rss = report["rss_mb"]
    report["projected_rss_mb"] = {
        s: round(rss[s] + per_asset[s] * report["assets"] / 2**20, 1) for s in per_asset
    }
    print(
        f"sustained {best:.0f} windows/s = {best / hop:.2f} of the bare hop ({hop:.0f}/s); "
        f"drain {report['drain']['windows_per_s']:.0f}/s = "
        f"{report['ratio_drain_to_bare_hop']:.2f} (goal >= 0.70)"
    )
    for goal in ("100", "1000"):
        lat = report.get(f"latency_at_{goal}")
        if lat:
            print(
                f"event -> prediction row at {lat['rate']:.0f}/s (asked: {goal}/s or the highest "
                f"sustained below): p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms "
                "(goal p99 < 250 ms at 1,000/s)"
            )
    print(
        f"RSS now (MB): {rss}; full history of {report['assets']} machines, projected: "
        f"{report['projected_rss_mb']} (goal < 300 MB)"
    )
    report["median_cpu_ms_per_window"] = {
        s: statistics.median(step["stages"][s]["cpu_ms_per_window"] for step in steps)
        for s in STAGES
    }
    if sustained:
        # What the goal leaves: every process's CPU for one window must fit in
        # cores / (0.70 x bare hop) seconds; compare with what the chain spent.
        top = max(sustained, key=lambda s: s["offered_per_s"])
        spent = top["cpu_ms_per_window"]
        total_us = 1000 * sum(spent.values())
        budget_us = 1e6 * (os.cpu_count() or 1) / (0.70 * hop)
        report["cpu_budget"] = {
            "rate": top["offered_per_s"],
            "spent_us_per_window": round(total_us),
            "goal_budget_us_per_window": round(budget_us),
        }
        parts = ", ".join(f"{k} {1000 * v:.0f}" for k, v in spent.items())
        print(
            f"CPU per window at {top['offered_per_s']:.0f}/s: {total_us:.0f} us ({parts}); "
            f"0.70 of the bare hop on {os.cpu_count()} cores allows {budget_us:.0f} us"
        )


if __name__ == "__main__":
    main()
