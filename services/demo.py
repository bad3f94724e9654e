"""``cbm demo``: the whole pipeline on a simulated fleet, in one terminal.

Uses the configured broker and database when there are any (a settings file,
or ``CBM_MQTT__HOST`` / ``CBM_DATABASE__URL``); otherwise starts embedded
ones: the ``mosquitto`` binary with the project's config on a free port (or,
without it, the project's embedded Python broker, ``services.broker``), and a
private PostgreSQL from ``pgserver`` (the ``demo`` extra). Then it migrates,
supervises the four workers, runs the simulator with a fleet whose machines
fail within minutes, and draws the fleet by urgency with the alerts as they
fire.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml

from cbm import tables
from cbm.db import connect
from cbm.migrate import migrate
from cbm.settings import CONFIG_ENV, SECRET_ENV, Settings, from_mapping
from services.broker.local import free_port, mosquitto_binary, start_embedded, start_mosquitto
from services.supervisor import Supervisor

HOME = Path(".demo")
# Operating seconds per wall-clock second: one simulated hour a second.
DEMO_SPEEDUP = 3600.0
_URGENCY = {"EMERGENCY": 0, "CRITICAL": 1, "WARNING": 2, "OK": 3}


@dataclass
class Embedded:
    """What the demo started itself, to stop it at the end."""

    broker: subprocess.Popen[bytes] | None = None
    postgres: Any = None


@contextlib.contextmanager
def services(settings: Settings, configured: bool) -> Iterator[tuple[dict[str, Any], Embedded]]:
    """Yield the mqtt and database settings to use, starting embedded ones if needed."""
    embedded = Embedded()
    mqtt = settings.mqtt.model_dump(mode="json")
    database = settings.database.model_dump(mode="json")
    try:
        if not configured:
            mqtt.update(host="127.0.0.1", port=_start_broker(embedded))
            database.update(url=_start_postgres(embedded))
        yield {"mqtt": mqtt, "database": database}, embedded
    finally:
        if embedded.broker is not None:
            embedded.broker.terminate()
            embedded.broker.wait(10)


def _start_broker(embedded: Embedded) -> int:
    try:
        return _spawn_broker(embedded)
    except (TimeoutError, RuntimeError) as exc:
        raise SystemExit(f"cbm demo: the MQTT broker did not start: {exc}") from None


def _spawn_broker(embedded: Embedded) -> int:
    port = free_port()
    if mosquitto_binary() is None:
        print(
            "No mosquitto binary: using the embedded Python broker (in memory only; "
            "install mosquitto for persistence across broker restarts)."
        )
        embedded.broker = start_embedded(port)
        return port
    workdir = (HOME / "mosquitto").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o777)  # mosquitto drops root before it writes its files
    embedded.broker = start_mosquitto(workdir, port)
    return port


def _start_postgres(embedded: Embedded) -> str:
    try:
        pgserver: Any = importlib.import_module("pgserver")
    except ImportError:
        raise SystemExit(
            "cbm demo: no database configured and pgserver is not installed "
            "(pip install 'cbm-pipeline[demo]', or set CBM_DATABASE__URL)"
        ) from None
    embedded.postgres = pgserver.get_server(str((HOME / "pgdata").resolve()), cleanup_mode="stop")
    uri: str = embedded.postgres.get_uri()
    return uri


def _connect(settings: Settings, url: str) -> psycopg.Connection[Any]:
    """Connect to ``url`` as the settings would (password, statement timeout)."""
    at = settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})
    return connect(at, autocommit=True)


def _ensure_database(settings: Settings, url: str, name: str = "cbm_demo") -> str:
    """Create the demo database on the server at ``url`` if needed; return its URL."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(url)
    if parts.path.strip("/") == name:
        return url
    admin = parts._replace(path="/postgres").geturl()
    with _connect(settings, admin) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return parts._replace(path=f"/{name}").geturl()


def run_demo(settings: Settings, *, configured: bool, assets: int, minutes: float) -> int:
    """Run the demo until the fleet has failed (or ``minutes`` pass) or Ctrl-C."""
    from services.simulator.edge import asset_register  # noqa: PLC0415
    from services.simulator.fleet import make_fleet  # noqa: PLC0415
    from services.simulator.run import publish_fleet  # noqa: PLC0415

    HOME.mkdir(exist_ok=True)
    # Lives of ~100 operating hours at one hour per second: failures within minutes.
    specs = make_fleet(assets, seed=42, life_mean_hours=100.0, healthy_share=0.2)
    with services(settings, configured) as (conn_settings, _):
        db_url = _ensure_database(settings, conn_settings["database"]["url"])
        conn_settings["database"]["url"] = db_url
        with _connect(settings, db_url) as conn:
            migrate(conn)
            # The database's clock: the closing backtest counts only this run's rows.
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None and isinstance(row[0], datetime)
            started = row[0]
        config = {
            **settings.model_dump(mode="json", exclude={"secrets", "assets"}),
            **conn_settings,
            "assets": {"items": asset_register(specs)},
        }
        config_path = (HOME / "cbm.yaml").resolve()
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        demo_settings = from_mapping(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
        env.update({k: v for k, v in os.environ.items() if k in SECRET_ENV})
        env[CONFIG_ENV] = str(config_path)
        env["PYTHONPATH"] = str(Path.cwd())
        supervisor = Supervisor(env=env, log_dir=HOME / "logs")
        supervisor.start()
        stop = threading.Event()
        simulator = threading.Thread(
            target=publish_fleet,
            kwargs={
                "settings": demo_settings,
                "specs": specs,
                "seed": 42,
                "speedup": DEMO_SPEEDUP,
                "progress": None,
                "stop": stop,
                "record_failures": True,
            },
            daemon=True,
        )
        time.sleep(3)  # let the workers subscribe before the first window
        simulator.start()
        deadline = time.monotonic() + minutes * 60
        try:
            with _connect(settings, db_url) as conn:
                last_alert = 0
                drained_at: float | None = None
                while time.monotonic() < deadline:
                    supervisor.check()
                    last_alert = _draw(conn, last_alert)
                    if not simulator.is_alive():
                        # Give the last windows time to reach the alerts.
                        drained_at = drained_at or time.monotonic() + 15
                        if time.monotonic() > drained_at:
                            break
                    time.sleep(2)
                _draw(conn, last_alert)
        except KeyboardInterrupt:
            print("\nstopping ...")
        finally:
            stop.set()
            supervisor.stop()
        print(
            f"\nData: {db_url} (tables asset, feature_vector, prediction, alert, and"
            " maintenance_event with the simulated failures)"
        )
        print("\nHow early the alerts came, against the failures the simulator recorded:")
        for line in _lead_times(db_url, settings, since=started):
            print(f"  {line}")
        print(
            "  (again, with the per-asset table and the threshold sweep, while the database"
            f" runs: `cbm backtest --from-db --speedup {DEMO_SPEEDUP:g}` with that URL)"
        )
        print(f"Settings used: {config_path}; worker logs in {HOME / 'logs'}")
        print(
            "Grafana: add a PostgreSQL data source with that URL (uid cbm-postgres), then "
            "provision grafana/dashboards/*.json, or run "
            "`cbm grafana push --url http://localhost:3000 --token <token>`."
        )
    return 0


def _lead_times(db_url: str, settings: Settings, *, since: datetime) -> list[str]:
    """Return the backtest summary of what this run predicted and alerted (rows since ``since``)."""
    from services.alerter.config import rules_for  # noqa: PLC0415
    from services.prognostics.backtest import run_backtest  # noqa: PLC0415
    from services.prognostics.report import summary  # noqa: PLC0415
    from services.prognostics.sources import recorded  # noqa: PLC0415

    with _connect(settings, db_url) as conn:
        source = recorded(conn, hours_per_second=DEMO_SPEEDUP / 3600, written_since=since)
    if source is None:
        return ["no predictions were stored"]
    return summary(run_backtest(source.series, rules_for(settings.alerting, "")))


_TABLE = f"""
SELECT a.asset_id, a.name,
       coalesce(al.level, 'OK') AS level,
       p.rul_hours, p.rul_low, p.rul_high, p.anomaly_score, p.running,
       extract(epoch FROM now() - a.last_received_at) AS seen_s
FROM {tables.ASSET} a
LEFT JOIN LATERAL (SELECT rul_hours, rul_low, rul_high, anomaly_score, running
                   FROM {tables.PREDICTION} WHERE asset_id = a.asset_id
                   ORDER BY time DESC LIMIT 1) p ON true
LEFT JOIN LATERAL (SELECT level
                   FROM {tables.ALERT} WHERE asset_id = a.asset_id AND channel = 'rul'
                   ORDER BY id DESC LIMIT 1) al ON true
ORDER BY a.asset_id
"""


def _draw(conn: psycopg.Connection[Any], last_alert: int) -> int:
    rows = conn.execute(_TABLE).fetchall()
    rows.sort(key=lambda r: (_URGENCY.get(str(r[2]), 9), r[3] if r[3] is not None else 1e9))
    out = [
        "\x1b[2J\x1b[H CBM demo: fleet by urgency (Ctrl-C to stop)\n",
        f" {'asset':<12}{'name':<24}{'level':<11}{'RUL h (80% interval)':<26}"
        f"{'anomaly':>8}  {'last seen':>9}",
    ]
    for asset_id, name, level, rul, low, high, anomaly, running, seen in rows:
        rul_text = "-" if rul is None else f"{rul:6.1f} ({low:5.1f}-{high:5.1f})"
        if running is False:
            rul_text += " off"
        seen_text = "-" if seen is None else f"{float(seen):7.0f}s"
        anomaly_text = "-" if anomaly is None else f"{anomaly:8.2f}"
        out.append(
            f" {asset_id:<12}{str(name)[:23]:<24}{level:<11}{rul_text:<26}"
            f"{anomaly_text:>8}  {seen_text:>9}"
        )
    alerts = conn.execute(
        f"SELECT id, time, asset_id, kind, level, rul_hours FROM {tables.ALERT} "
        "WHERE receiver IN ('slack', 'log') ORDER BY id DESC LIMIT 8"
    ).fetchall()
    out.append("\n Latest alerts:")
    for alert_id, t, asset_id, kind, level, rul in reversed(alerts):
        marker = "*" if alert_id > last_alert else " "
        out.append(f" {marker} {t:%H:%M:%S} {asset_id:<12} {kind:<9} {level:<10} RUL {rul:.1f} h")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return max([last_alert, *[int(a[0]) for a in alerts]])
