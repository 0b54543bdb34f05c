"""A stand-in for the part of Grafana's HTTP API that `moecluster dashboards push` uses, written from
Grafana's HTTP API documentation (legacy `/api` endpoints, unchanged from Grafana 8 to 13): not a
Grafana. No real Grafana server can be installed here (no Debian package, the PyPI `grafana` name
is an empty placeholder, no release tarball or container registry reachable), so the push is
tested against this contract:

- `Authorization: Bearer <service account token>` on every request but `GET /api/health`,
  401 `{"message": "Unauthorized"}` without or with a wrong one; a viewer/editor token gets
  403 on datasource writes (they need the Admin role);
- `GET /api/health` -> `{"commit", "database": "ok", "version"}`;
- `GET /api/datasources/uid/:uid` -> the datasource or 404 `{"message": "Data source not found"}`;
  `POST /api/datasources` (name, type, access required) -> `{"datasource", "id", "message":
  "Datasource added", "name"}`, 409 when the name is taken; `PUT /api/datasources/uid/:uid`
  -> `{"datasource", "id", "message": "Datasource updated", "name"}`;
- `GET /api/folders/:uid` -> the folder or 404; `POST /api/folders` `{uid, title}` -> the folder;
- `POST /api/dashboards/db` `{dashboard, folderUid, overwrite, message}`: the dashboard needs a
  title, its `id` null to create by uid; the folder must exist (400); a provisioned dashboard
  cannot be saved (400 "Cannot save provisioned dashboard"); another dashboard with the same title
  in the folder -> 412 `name-exists`; a changed dashboard without `overwrite` -> 412
  `version-mismatch`; success -> `{"id", "uid", "url": "/d/<uid>/<slug>", "status": "success",
  "version", "slug"}`.
"""
from __future__ import annotations

import json
import re
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
class GrafanaApi:
    token: str | None = None
    role: str = "Admin"
    version: str = "12.0.2+stand-in"
    requests: list[Request] = field(default_factory=list)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {dashboard, folderUid, version}
    provisioned: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = "<not json>"
                req = Request(self.command, self.path, dict(self.headers.items()), body)
                api.requests.append(req)
                status, answer = api.answer(req)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "GrafanaApi":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the contract ----------------------------------------------------------------------
    def answer(self, req: Request) -> tuple[int, Any]:
        if req.method == "GET" and req.path == "/api/health":
            return 200, {"commit": "stand-in", "database": "ok", "version": self.version}
        if self.token is not None and req.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "Unauthorized"}
        if req.headers.get("Content-Type", "").split(";")[0] != "application/json" and req.body is not None:
            return 415, {"message": "Content-Type must be application/json"}
        routes = [
            ("GET", r"/api/datasources/uid/([^/]+)", self._get_datasource),
            ("PUT", r"/api/datasources/uid/([^/]+)", self._put_datasource),
            ("POST", r"/api/datasources", self._post_datasource),
            ("GET", r"/api/folders/([^/]+)", self._get_folder),
            ("POST", r"/api/folders", self._post_folder),
            ("POST", r"/api/dashboards/db", self._post_dashboard),
        ]
        for method, pattern, handler in routes:
            m = re.fullmatch(pattern, req.path)
            if m and req.method == method:
                return handler(req, *m.groups())
        return 404, {"message": "Not found"}

    def _forbidden_unless_admin(self) -> tuple[int, Any] | None:
        if self.role != "Admin":
            return 403, {"message": "You'll need additional permissions to perform this action."}
        return None

    @staticmethod
    def _datasource_errors(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "bad request data"
        for key in ("name", "type", "access"):
            if not isinstance(body.get(key), str) or not body[key]:
                return f"{key} is required"
        if body["access"] not in ("proxy", "direct"):
            return "access must be proxy or direct"
        if "jsonData" in body and not isinstance(body["jsonData"], dict):
            return "jsonData must be an object"
        return None

    def _get_datasource(self, req: Request, uid: str) -> tuple[int, Any]:
        ds = self.datasources.get(uid)
        return (200, ds) if ds else (404, {"message": "Data source not found"})

    def _post_datasource(self, req: Request) -> tuple[int, Any]:
        denied = self._forbidden_unless_admin()
        if denied:
            return denied
        error = self._datasource_errors(req.body)
        if error:
            return 400, {"message": error}
        if any(d["name"] == req.body["name"] for d in self.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        uid = req.body.get("uid") or f"auto{len(self.datasources)}"
        ds = {**req.body, "uid": uid, "id": len(self.datasources) + 1, "orgId": 1}
        self.datasources[uid] = ds
        return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource added", "name": ds["name"]}

    def _put_datasource(self, req: Request, uid: str) -> tuple[int, Any]:
        denied = self._forbidden_unless_admin()
        if denied:
            return denied
        if uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        error = self._datasource_errors(req.body)
        if error:
            return 400, {"message": error}
        ds = {**self.datasources[uid], **req.body, "uid": uid}
        self.datasources[uid] = ds
        return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource updated", "name": ds["name"]}

    def _get_folder(self, req: Request, uid: str) -> tuple[int, Any]:
        folder = self.folders.get(uid)
        return (200, folder) if folder else (404, {"message": "folder not found"})

    def _post_folder(self, req: Request) -> tuple[int, Any]:
        body = req.body
        if not isinstance(body, dict) or not body.get("title"):
            return 400, {"message": "folder title cannot be empty"}
        uid = body.get("uid") or f"f{len(self.folders)}"
        if uid in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        folder = {"id": len(self.folders) + 1, "uid": uid, "title": body["title"], "url": f"/dashboards/f/{uid}/"}
        self.folders[uid] = folder
        return 200, folder

    def _post_dashboard(self, req: Request) -> tuple[int, Any]:
        body = req.body
        if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
            return 400, {"message": "bad request data"}
        dash = body["dashboard"]
        title, uid = dash.get("title"), dash.get("uid")
        if not isinstance(title, str) or not title.strip():
            return 400, {"message": "Dashboard title cannot be empty", "status": "empty-name"}
        if not isinstance(uid, str) or not uid or len(uid) > 40:
            return 400, {"message": "Dashboard UID too long or empty", "status": "bad-uid"}
        if dash.get("id") is not None and uid not in self.dashboards:
            return 404, {"message": "Dashboard not found", "status": "not-found"}
        folder = body.get("folderUid", "")
        if folder and folder not in self.folders:
            return 400, {"message": "folder not found"}
        if uid in self.provisioned:
            return 400, {"message": "Cannot save provisioned dashboard"}
        for other_uid, other in self.dashboards.items():
            if other_uid != uid and other["folderUid"] == folder and other["dashboard"]["title"] == title:
                return 412, {"message": "A dashboard with the same name in the folder already exists",
                             "status": "name-exists"}
        existing = self.dashboards.get(uid)
        if existing and not body.get("overwrite") and dash.get("version") != existing["version"]:
            return 412, {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"}
        version = existing["version"] + 1 if existing else 1
        self.dashboards[uid] = {"dashboard": dash, "folderUid": folder, "version": version,
                                "message": body.get("message", "")}
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        return 200, {"id": len(self.dashboards), "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success",
                     "version": version, "slug": slug}
