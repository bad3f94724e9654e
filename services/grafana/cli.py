"""``cbm grafana push``: publish the dashboards to a Grafana that is not provisioned from files."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from cbm.settings import Settings
from services.grafana.push import (
    GRAFANA_DIR,
    ApiFactory,
    Database,
    GrafanaError,
    SdkApi,
    build_plan,
    publish,
)

TOKEN_ENV = "GRAFANA_TOKEN"  # noqa: S105 - the name of a variable, not a secret
PASSWORD_ENV = "GRAFANA_DB_PASSWORD"  # noqa: S105 - likewise


def register(verbs: Any) -> None:
    """Add the ``grafana`` group and its ``push`` verb to the ``cbm`` command."""
    grafana = verbs.add_parser("grafana", help="Grafana: publish the CBM dashboards")
    sub = grafana.add_subparsers(title="grafana")
    push = sub.add_parser(
        "push",
        help="create or update the datasource, the folder and the dashboards",
        description=(
            "Publish grafana/provisioning/datasources/cbm.yaml and grafana/dashboards/*.json "
            "over Grafana's HTTP API. The token needs the Admin role (datasources). Safe to "
            "repeat: existing objects are updated in place."
        ),
    )
    push.add_argument("--url", required=True, help="Grafana's base URL, e.g. http://grafana:3000")
    push.add_argument(
        "--token", default=None, help=f"service account token (default: ${TOKEN_ENV})"
    )
    push.add_argument("--folder", default="CBM", help="folder title (default: CBM)")
    push.add_argument("--folder-uid", default="cbm", help="folder uid (default: cbm)")
    push.add_argument(
        "--db-host",
        default=None,
        help="database host:port as Grafana reaches it (default: from database.url)",
    )
    push.add_argument("--db-name", default=None, help="database name (default: from database.url)")
    push.add_argument(
        "--db-user", default="grafana", help="Grafana's read-only login (default: grafana)"
    )
    push.add_argument(
        "--db-password-env",
        default=PASSWORD_ENV,
        help=f"variable holding that login's password (default: {PASSWORD_ENV}); "
        "unset: keep the password Grafana has",
    )
    push.add_argument(
        "--timescaledb",
        choices=("auto", "on", "off"),
        default="auto",
        help="whether $__timeGroup may use time_bucket (default: ask the database)",
    )
    push.add_argument("--dir", type=Path, default=GRAFANA_DIR, help=argparse.SUPPRESS)
    push.set_defaults(handler=_push)


def _push(
    settings: Settings,
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    api_factory: ApiFactory | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    env = os.environ if environ is None else environ
    try:
        token = args.token or env.get(TOKEN_ENV)
        if not token:
            raise GrafanaError(f"no token: pass --token or set {TOKEN_ENV}")
        plan = build_plan(
            database=_database(settings, args, env),
            timescaledb=_timescaledb(settings, args.timescaledb),
            folder_title=args.folder,
            folder_uid=args.folder_uid,
            grafana_dir=args.dir,
        )
        factory = api_factory or (lambda url, tok: SdkApi(url=url, token=tok))
        publish(factory(args.url, token), plan, out=out)
    except GrafanaError as exc:
        err.write(f"cbm grafana push: {exc}\n")
        return 1
    return 0


def _database(settings: Settings, args: argparse.Namespace, env: Mapping[str, str]) -> Database:
    url = urlsplit(settings.database.url)
    host = args.db_host or f"{url.hostname or 'localhost'}:{url.port or 5432}"
    name = args.db_name or url.path.lstrip("/") or "cbm"
    return Database(host=host, name=name, user=args.db_user, password=env.get(args.db_password_env))


def _timescaledb(settings: Settings, choice: str) -> bool:
    if choice != "auto":
        return choice == "on"
    import psycopg  # noqa: PLC0415 - only this path needs the database

    from cbm.db import connect  # noqa: PLC0415

    try:
        with connect(settings) as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb')"
            ).fetchone()
    except psycopg.Error as exc:
        raise GrafanaError(
            f"cannot ask the database whether it has TimescaleDB ({exc}); "
            "pass --timescaledb on or off"
        ) from exc
    return bool(row and row[0])
