"""A stand-in for Grafana's HTTP API: answers as the API documents and records requests.

Enough of https://grafana.com/docs/grafana/latest/developers/http_api/ for
publishing: datasources (POST, PUT by uid, 409 on a duplicate), folders (GET
by uid and list, POST), dashboards (POST /api/dashboards/db), bearer-token
authentication (401 otherwise).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGrafana:
    """State of the fake: what exists, which token is valid, what was asked."""

    token: str = "glsa_test_token"
    unauthorized_message: str = "Unauthorized"
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    requests: list[Request] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGrafana:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.handle(self)

            def do_POST(self) -> None:
                fake.handle(self)

            def do_PUT(self) -> None:
                fake.handle(self)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.requests.append(Request(h.command, h.path, dict(h.headers.items()), body))
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self.reply(h, 401, {"message": self.unauthorized_message})
        status, answer = self.route(h.command, h.path.split("?")[0], body)
        self.reply(h, status, answer)

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if (method, path) == ("POST", "/api/datasources"):
            names = {d["name"] for d in self.datasources.values()}
            if body["uid"] in self.datasources or body["name"] in names:
                return 409, {"message": "data source with the same name already exists"}
            stored = {**body, "id": len(self.datasources) + 1}
            self.datasources[body["uid"]] = stored
            return 200, {
                "datasource": stored,
                "id": stored["id"],
                "message": "Datasource added",
                "name": body["name"],
            }
        if method == "PUT" and parts[:3] == ["api", "datasources", "uid"]:
            uid = parts[3]
            if uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            self.datasources[uid] = {**self.datasources[uid], **body}
            return 200, {
                "datasource": self.datasources[uid],
                "id": self.datasources[uid]["id"],
                "message": "Datasource updated",
                "name": body["name"],
            }
        if (method, path) == ("GET", "/api/folders"):
            return 200, list(self.folders.values())
        if method == "GET" and parts[:2] == ["api", "folders"] and len(parts) == 3:
            folder = self.folders.get(parts[2])
            return (
                (200, folder)
                if folder
                else (404, {"message": "folder not found", "status": "not-found"})
            )
        if (method, path) == ("POST", "/api/folders"):
            if any(f["title"] == body["title"] for f in self.folders.values()):
                return 409, {"message": "a folder with the same name already exists"}
            folder = {
                "id": len(self.folders) + 1,
                "uid": body["uid"],
                "title": body["title"],
                "url": f"/dashboards/f/{body['uid']}/",
                "version": 1,
            }
            self.folders[body["uid"]] = folder
            return 200, folder
        if (method, path) == ("POST", "/api/dashboards/db"):
            dashboard = body["dashboard"]
            if body.get("folderUid") not in self.folders:
                return 400, {"message": "folder not found", "status": "not-found"}
            old = self.dashboards.get(dashboard["uid"])
            version = (old["version"] + 1) if old else 1
            self.dashboards[dashboard["uid"]] = {
                "version": version,
                "folderUid": body["folderUid"],
                "dashboard": dashboard,
            }
            slug = dashboard["title"].lower().replace(" ", "-")
            return 200, {
                "id": len(self.dashboards),
                "uid": dashboard["uid"],
                "status": "success",
                "url": f"/d/{dashboard['uid']}/{slug}",
                "version": version,
                "slug": slug,
            }
        return 404, {"message": "Not found"}

    @staticmethod
    def reply(h: BaseHTTPRequestHandler, status: int, answer: Any) -> None:
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
