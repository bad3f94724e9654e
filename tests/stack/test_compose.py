"""compose.yaml, Dockerfile and .env.example hold together (no Docker needed).

compose-spec.json beside this file is schema/compose-spec.json of the
compose-spec/compose-spec repository at commit
b2835e8acc1e42e7aecbc27a9bc4a1fc66ef21ba (Apache-2.0), kept verbatim so the
check needs no network. Refresh it from there when Compose gains keys we use.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cbm.settings import SECRET_ENV, Settings, load_settings
from services.cli import build_parser
from tests.support.services import ROOT

COMPOSE_FILE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = Path(__file__).with_name("compose-spec.json")
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CBM_IMAGE = "cbm-pipeline:local"
CBM_SERVICES = {name: s for name, s in SERVICES.items() if s.get("image") == CBM_IMAGE}
WORKERS = {"ingest", "features", "inference", "alerter"}
ONE_SHOTS = {"migrate", "grafana-db-user", "simulator"}
_REFERENCE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def interpolate(value: str, env: dict[str, str]) -> str:
    """Resolve ${VAR}, ${VAR:-default} and ${VAR:?error} as compose does."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        found = env.get(name, "")
        if op == ":?" and not found:
            raise AssertionError(f"{name} is required: {arg}")
        return found or (arg if op == ":-" else "")

    return _REFERENCE.sub(one, value)


def filled_env() -> dict[str, str]:
    """.env.example with every empty value filled in, as an operator would."""
    return {k: v or f"filled-{k.lower()}" for k, v in env_example().items()}


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    env = filled_env()
    raw = service.get("environment") or {}
    return {k: interpolate(str(v), env) for k, v in raw.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator(schema).validate(COMPOSE)


def test_the_stack_has_its_services() -> None:
    assert {"mosquitto", "timescaledb", "migrate", "grafana", "simulator"} <= set(SERVICES)
    assert set(CBM_SERVICES) >= WORKERS
    assert SERVICES["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert SERVICES["timescaledb"]["image"] == "timescale/timescaledb:latest-pg16"
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana-oss")
    assert SERVICES["simulator"]["profiles"] == ["demo"]
    assert command(SERVICES["migrate"]) == ["db", "migrate"]
    for worker in WORKERS:
        assert command(SERVICES[worker]) == ["run", worker]


@pytest.mark.parametrize("name", sorted(CBM_SERVICES))
def test_every_cbm_command_is_a_real_verb(name: str) -> None:
    argv = command(CBM_SERVICES[name])
    args = build_parser().parse_args(argv)
    assert hasattr(args, "handler"), argv


@pytest.mark.parametrize("name", sorted(CBM_SERVICES))
def test_every_cbm_service_environment_is_valid_settings(name: str) -> None:
    env = service_environment(CBM_SERVICES[name])
    assert all(k.startswith("CBM_") for k in env), "cbm services get only CBM_* variables"
    settings = load_settings(None, environ=env)
    assert isinstance(settings, Settings)
    assert settings.mqtt.host == "mosquitto"
    if name in WORKERS:
        assert settings.database.url.startswith("postgresql://cbm@timescaledb:5432/")
        assert settings.secrets.database_password is not None
        assert settings.mqtt.username == name, "each worker logs in with its own account"
        assert settings.secrets.mqtt_password is not None


def test_worker_accounts_are_the_broker_stack_accounts() -> None:
    from services.mqttadmin.acl import STACK_USERS

    for name in WORKERS | {"simulator"}:
        user = SERVICES[name]["environment"]["CBM_MQTT__USERNAME"]
        assert STACK_USERS.get(user) == name, user


def test_worker_healthchecks_ask_their_own_metrics_port() -> None:
    ports = Settings().worker.metrics_ports
    for worker in WORKERS:
        test = " ".join(SERVICES[worker]["healthcheck"]["test"])
        assert f"127.0.0.1:{ports[worker]}/metrics" in test, worker


def test_long_running_services_restart_and_report_health() -> None:
    for name, service in SERVICES.items():
        if name in ONE_SHOTS:
            assert service.get("restart") == "no", name
            continue
        assert service.get("restart") == "unless-stopped", name
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, service in SERVICES.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, (name, dependency)
            condition = spec["condition"]
            if dependency in ONE_SHOTS:
                assert condition == "service_completed_successfully", (name, dependency)
            elif "healthcheck" in SERVICES[dependency] and name != "simulator":
                assert condition == "service_healthy", (name, dependency)
    for worker in WORKERS:
        depends = SERVICES[worker]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["timescaledb"]["condition"] == "service_healthy"
        assert depends["mosquitto"]["condition"] == "service_healthy"


def test_every_variable_compose_reads_is_in_env_example() -> None:
    documented = env_example()
    text = COMPOSE_FILE.read_text()
    referenced = {m.group(1) for m in _REFERENCE.finditer(text)}
    assert referenced, "compose reads its settings from .env"
    missing = referenced - set(documented)
    assert not missing, f"add to .env.example: {sorted(missing)}"
    for match in _REFERENCE.finditer(text):
        if match.group(2) == ":?":
            # Required values ship empty, so compose stops until someone sets them.
            assert documented[match.group(1)] == "", match.group(1)


def test_every_secret_and_cbm_variable_is_documented() -> None:
    documented = set(env_example())
    readme = (ROOT / "README.md").read_text()
    for name in SECRET_ENV:
        assert name in documented or name in readme, name
    # And every CBM_* name .env.example offers is one the settings accept.
    cbm = {k: "x" for k in documented if k.startswith("CBM_")}
    assert cbm and load_settings(None, environ=cbm)


def test_grafana_gets_what_its_datasource_file_reads() -> None:
    datasource = yaml.safe_load((ROOT / "grafana/provisioning/datasources/cbm.yaml").read_text())
    needed = set(re.findall(r"\$\{(\w+)\}", json.dumps(datasource)))
    env = SERVICES["grafana"]["environment"]
    assert needed and needed <= set(env), needed - set(env)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "${GRAFANA_ANONYMOUS_VIEWER:-false}"
    assert env_example()["GRAFANA_ANONYMOUS_VIEWER"] == "false"
    assert "GRAFANA_ADMIN_PASSWORD:?" in env["GF_SECURITY_ADMIN_PASSWORD"]


def test_bind_mounts_exist_in_the_repository() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_dockerfile_builds_a_non_root_cbm_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1)
        for line in dockerfile.splitlines()
        if line.strip() and not line.startswith((" ", "#"))
    ]
    by_name: dict[str, list[str]] = {}
    for parts in instructions:
        by_name.setdefault(parts[0].upper(), []).append(parts[1] if len(parts) > 1 else "")
    assert by_name["FROM"] == ["python:3.11-slim"]
    assert json.loads(by_name["ENTRYPOINT"][-1]) == ["cbm"]
    user = by_name["USER"][-1]
    assert user not in ("root", "0")
    copied = {c.split()[0].rstrip("/") for c in by_name["COPY"]}
    # Migrations and the Grafana files travel with the code (found beside it at run time).
    assert {"cbm", "services", "sql", "grafana", "pyproject.toml"} <= copied
    ignored = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".env", "mosquitto", ".venv", ".git"} <= set(ignored), "secrets stay out"
    assert not copied & set(ignored), "the Dockerfile copies something .dockerignore drops"
