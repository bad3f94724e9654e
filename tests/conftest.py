"""Shared fixtures: real broker, real database, settings with a unique topic base."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cbm.migrate import migrate
from cbm.settings import Settings, from_mapping
from services.cli import build_parser
from tests.support.receiver import PROXY_VARIABLES, Receiver
from tests.support.services import Broker, Postgres, find_postgres, start_broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start_broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    return find_postgres()


@pytest.fixture(scope="session")
def template_db(postgres: Postgres) -> Iterator[str]:
    """A migrated database of this test run; tests clone it."""
    name = f"cbm_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(postgres.url_for(name), autocommit=True) as conn:
        migrate(conn)
    yield name
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(postgres: Postgres, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"{template_db}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield postgres.url_for(name)
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def topic_base() -> str:
    return f"cbmtest/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(broker: Broker, db_url: str, topic_base: str) -> Callable[..., Settings]:
    """Build settings for this test's broker, database and topic base, with overrides."""

    def build(**sections: Any) -> Settings:
        data: dict[str, Any] = {
            "base_topic": topic_base,
            "mqtt": {"host": broker.host, "port": broker.port, "keepalive_s": 5},
            "database": {"url": db_url},
            "worker": {
                "batch_ms": 20,
                "metrics_ports": {},
                "retry_initial_s": 0.1,
                "retry_max_s": 1.0,
                "instance": uuid.uuid4().hex[:8],
            },
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return from_mapping(data)

    return build


@pytest.fixture
def cbm() -> Callable[..., int]:
    """Run ``cbm <argv>`` with the given settings, as the command line would; return the status."""

    def run(settings: Settings, *argv: str) -> int:
        args = build_parser().parse_args(argv)
        status: int = args.handler(settings, args)
        return status

    return run


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).name.startswith("test_it_"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset the proxy variables for the test's duration.

    slack-sdk reads HTTP(S)_PROXY and ignores NO_PROXY, and workers started by
    a test inherit its environment: a proxy would answer the requests meant
    for a local address.
    """
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver(no_proxy: None) -> Iterator[Receiver]:
    """A local HTTP server answering as Slack and PagerDuty do (no proxy in between)."""
    r = Receiver()
    yield r
    r.close()
