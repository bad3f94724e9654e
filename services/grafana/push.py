"""Publish the CBM datasource, folder and dashboards to a running Grafana.

For a Grafana that is not provisioned from the files under ``grafana/`` (the
compose stack is): the same datasource definition and dashboard JSON go over
Grafana's HTTP API, so both ways give the same result.

The HTTP calls go through grafana-api-sdk's ``Api.call_the_api`` with the
status code kept (``response_status_code=True``). Its higher-level helpers are
not used: they raise a bare ``Exception`` with the reason only in a log line,
and ``Dashboard.create_or_update_dashboard`` finds the folder by title with a
search per call; here every answer is checked by status, the folder is named
by its uid, and a refusal becomes a GrafanaError that says what to fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml

from cbm.errors import CbmError

GRAFANA_DIR = Path(__file__).resolve().parents[2] / "grafana"
DATASOURCE_FILE = Path("provisioning/datasources/cbm.yaml")
DASHBOARD_DIR = Path("dashboards")
# Keys of a provisioning entry that the HTTP API does not take.
_PROVISIONING_ONLY = ("editable", "orgId", "version")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}|\$__env\{(\w+)\}")
# Messages for which grafana-api-sdk raises instead of returning the answer.
_SDK_AUTH_MESSAGES = ("invalid API key", "Invalid API key", "Expired API key")


class GrafanaError(CbmError):
    """Grafana could not be reached or refused a request."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer of Grafana: its status code and its JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def message(self) -> str:
        """Return Grafana's message, or the raw body."""
        return str(self.body.get("message") or self.body.get("data") or self.body)


class GrafanaApi(Protocol):
    """What publishing needs of Grafana's HTTP API."""

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Answer:
        """Send one request and return the answer, whatever its status."""
        ...


class SdkApi:
    """Grafana's HTTP API through grafana-api-sdk, keeping every answer's status code."""

    def __init__(self, *, url: str, token: str, timeout_s: float = 10.0) -> None:
        from grafana_api.model import APIModel  # type: ignore[import-untyped]  # noqa: PLC0415

        self.url = url.rstrip("/")
        # retries: connection attempts only; a stopped Grafana should fail fast.
        self._model = APIModel(host=self.url, token=token, timeout=timeout_s, retries=1)

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Answer:
        """Send one request and return the answer, whatever its status."""
        from grafana_api.api import Api  # type: ignore[import-untyped]  # noqa: PLC0415
        from grafana_api.model import RequestsMethods  # noqa: PLC0415

        payload = None if body is None else json.dumps(body)
        try:
            result = Api(self._model).call_the_api(
                path, RequestsMethods[method], payload, response_status_code=True
            )
        except Exception as exc:  # the SDK raises bare Exceptions, httpx errors among them
            text = str(exc) or type(exc).__name__
            if text in _SDK_AUTH_MESSAGES:
                return Answer(401, {"message": text})
            raise GrafanaError(
                f"cannot reach Grafana at {self.url} ({method} {path}): {text}"
            ) from exc
        if not isinstance(result, dict):  # a JSON list: only GETs of collections answer one
            return Answer(200, {"items": result})
        status = result.pop("status", 0)
        return Answer(int(status), result)


@dataclass(frozen=True, kw_only=True)
class Database:
    """The database as Grafana reaches it, and the read-only login it uses."""

    host: str  # host:port
    name: str
    user: str
    password: str | None  # None: leave the password Grafana already holds


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What to publish."""

    datasource: dict[str, Any]
    folder_uid: str
    folder_title: str
    dashboards: tuple[dict[str, Any], ...]


@dataclass
class Report:
    """What publishing did, one line per object."""

    lines: list[str] = field(default_factory=list)


def build_plan(
    *,
    database: Database,
    timescaledb: bool,
    folder_title: str,
    folder_uid: str,
    grafana_dir: Path = GRAFANA_DIR,
) -> Plan:
    """Read the provisioning files and fill in the deployment's values."""
    entries = yaml.safe_load((grafana_dir / DATASOURCE_FILE).read_text(encoding="utf-8"))
    (entry,) = entries["datasources"]
    values = {
        "GRAFANA_DB_HOST": database.host,
        "GRAFANA_DB_NAME": database.name,
        "GRAFANA_DB_USER": database.user,
        "GRAFANA_DB_PASSWORD": database.password,
    }
    datasource = {k: v for k, v in entry.items() if k not in _PROVISIONING_ONLY}
    if database.password is None:
        datasource.pop("secureJsonData", None)
    datasource = _fill(datasource, values)
    datasource["isDefault"] = False  # do not take over the default of someone else's Grafana
    datasource["jsonData"]["timescaledb"] = timescaledb
    dashboards = []
    for path in sorted((grafana_dir / DASHBOARD_DIR).glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        dashboard["id"] = None  # matched by uid: a new one is created, an old one replaced
        dashboards.append(dashboard)
    if not dashboards:
        raise GrafanaError(f"no dashboards under {grafana_dir / DASHBOARD_DIR}")
    return Plan(
        datasource=datasource,
        folder_uid=folder_uid,
        folder_title=folder_title,
        dashboards=tuple(dashboards),
    )


def publish(api: GrafanaApi, plan: Plan, *, out: TextIO | None = None) -> Report:
    """Create or update the datasource, the folder and every dashboard, in that order."""
    report = Report()

    def note(line: str) -> None:
        report.lines.append(line)
        if out is not None:
            out.write(line + "\n")

    note(_datasource(api, plan.datasource))
    note(_folder(api, plan.folder_uid, plan.folder_title))
    for dashboard in plan.dashboards:
        answer = api.call(
            "POST",
            "/api/dashboards/db",
            {
                "dashboard": dashboard,
                "folderUid": plan.folder_uid,
                "overwrite": True,
                "message": "published by cbm grafana push",
            },
        )
        _expect(answer, f"dashboard {dashboard['uid']}")
        note(
            f"dashboard {dashboard['uid']}: {answer.body.get('url', '?')} "
            f"(version {answer.body.get('version', '?')})"
        )
    return report


def _datasource(api: GrafanaApi, datasource: dict[str, Any]) -> str:
    uid = datasource["uid"]
    answer = api.call("POST", "/api/datasources", datasource)
    if answer.status == 200:
        return f"datasource {uid}: created"
    if answer.status != 409:
        _expect(answer, f"datasource {uid}")
    # It exists (same uid or same name): update it in place.
    answer = api.call("PUT", f"/api/datasources/uid/{uid}", datasource)
    if answer.status == 404:
        raise GrafanaError(
            f"datasource {uid}: a datasource named {datasource['name']!r} exists with another "
            "uid; delete or rename it in Grafana, then push again"
        )
    _expect(answer, f"datasource {uid}")
    return f"datasource {uid}: updated"


def _folder(api: GrafanaApi, uid: str, title: str) -> str:
    answer = api.call("GET", f"/api/folders/{uid}")
    if answer.status == 200:
        found = answer.body.get("title")
        suffix = f" (titled {found!r}, not {title!r})" if found != title else ""
        return f"folder {uid}: exists{suffix}"
    if answer.status != 404:
        _expect(answer, f"folder {uid}")
    answer = api.call("POST", "/api/folders", {"uid": uid, "title": title})
    if answer.status == 409:
        raise GrafanaError(
            f"folder {uid}: a folder titled {title!r} exists with another uid; pass its uid "
            "with --folder-uid or choose another --folder"
        )
    _expect(answer, f"folder {uid}")
    return f"folder {uid}: created ({title})"


def _expect(answer: Answer, what: str) -> None:
    if answer.status == 200:
        return
    if answer.status == 401:
        raise GrafanaError(
            f"{what}: Grafana refused the token (401: {answer.message}); pass a valid service "
            "account token with --token or $GRAFANA_TOKEN"
        )
    if answer.status == 403:
        raise GrafanaError(
            f"{what}: the token may not do this (403: {answer.message}); datasources need a "
            "service account with the Admin role, folders and dashboards the Editor role"
        )
    raise GrafanaError(f"{what}: Grafana answered {answer.status}: {answer.message}")


def _fill(node: Any, values: Mapping[str, str | None]) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda m: _value(m, values), node)
    return node


def _value(match: re.Match[str], values: Mapping[str, str | None]) -> str:
    name = match.group(1) or match.group(2)
    value = values.get(name)
    if value is None:
        raise GrafanaError(f"the datasource file uses ${{{name}}}, which push cannot fill in")
    return value


ApiFactory = Callable[[str, str], GrafanaApi]
