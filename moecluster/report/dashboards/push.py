"""Upload the dashboards (and their Prometheus datasource) to a Grafana, over its HTTP API.

Grafana's HTTP API over `requests` (a required dependency already), not the `grafana-client`
package: that client depends on `niquests`, whose `urllib3-future` replaces `urllib3` at
interpreter start for the whole environment (requests, Ray, huggingface_hub); `push` needs five
documented endpoints, which are a few lines each here:

| what                      | endpoint                                                     |
| ------------------------- | ------------------------------------------------------------ |
| Grafana answers           | `GET /api/health`                                            |
| the datasource            | `GET /api/datasources/uid/:uid`, then `PUT` it there or `POST /api/datasources` |
| the folder                | `GET /api/folders/:uid`, else `POST /api/folders`            |
| each dashboard            | `POST /api/dashboards/db` (`overwrite: true`, by uid)        |

These legacy `/api` endpoints work on Grafana 8 to 12 and remain in Grafana 13 (whose new
`/apis/dashboard.grafana.app` needs Grafana 12 or later).

The token (a Grafana service account token) comes from a file (`--token-file`) or the
`GRAFANA_TOKEN` environment variable, never from the command line; it only ever goes into the
`Authorization` header of these requests: it is not logged, printed, stored or put in an error.
"""
from __future__ import annotations

import os
import stat
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from moecluster.report.dashboards import FOLDER_TITLE, FOLDER_UID

TOKEN_ENV = "GRAFANA_TOKEN"
PUSH_MESSAGE = "moecluster dashboards push"


class GrafanaError(RuntimeError):
    """Grafana could not be reached or refused a request; one line naming the URL, the step and why."""


class TokenError(ValueError):
    """The token file cannot be used; the message names the file (never its contents)."""


def read_token(token_file: Path | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The token from `token_file`, else from `$GRAFANA_TOKEN`, else None (anonymous access)."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        try:
            text = token_file.read_text()
        except OSError as exc:
            raise TokenError(f"--token-file {token_file}: cannot read it: {exc.strerror or exc}") from None
        token = text.strip()
        if not token:
            raise TokenError(f"--token-file {token_file}: the file is empty")
        if "\n" in token:
            raise TokenError(f"--token-file {token_file}: expected one line (the token alone)")
        return token
    token = environ.get(TOKEN_ENV, "").strip()
    return token or None


def token_file_is_private(token_file: Path) -> bool:
    """False when group or others may read the token file (the caller warns; it still works)."""
    try:
        return not token_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    except OSError:
        return True


def check_url(url: str, option: str = "--url") -> str:
    """`url` without a trailing slash; ValueError naming `option` for one that is not http(s) or that
    carries credentials (never echoed back: the message does not repeat such a URL)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        raise ValueError(f"{option} carries credentials: give Grafana a service account token in GRAFANA_TOKEN or"
                         " --token-file instead (a URL is visible in the process list and the shell history)")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{option} {url!r}: expected an http:// or https:// base URL, e.g. http://head:3000")
    if parts.query or parts.fragment:
        raise ValueError(f"{option} {url!r}: expected a base URL without a query or fragment")
    return url.rstrip("/")


@dataclass
class Grafana:
    """One Grafana's HTTP API at `url`, authenticated with `token` when given."""

    url: str
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 15.0
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def __post_init__(self) -> None:
        self.url = check_url(self.url)
        self.session.headers.update({"Accept": "application/json"})
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    def _request(self, method: str, path: str, step: str, body: Any = None,
                 accept: tuple[int, ...] = (200,)) -> tuple[int, Any]:
        try:
            resp = self.session.request(method, self.url + path, json=body, timeout=self.timeout_s,
                                        allow_redirects=False)
        except requests.RequestException as exc:
            # the URL carries no credentials (check_url) and requests' messages hold no headers
            reason = " ".join(str(exc).split())[:200]
            raise GrafanaError(f"Grafana at {self.url} unreachable while {step}: {type(exc).__name__}: {reason}") \
                from None
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code in accept:
            return resp.status_code, payload
        message = payload.get("message", "") if isinstance(payload, dict) else ""
        raise GrafanaError(f"Grafana at {self.url} refused {step}: HTTP {resp.status_code} {resp.reason or ''}"
                           f"{': ' + ' '.join(str(message).split())[:300] if message else ''}"
                           f"{_hint(resp.status_code, str(message), bool(self.token))}")

    def health(self) -> dict[str, Any]:
        """`GET /api/health`: Grafana's version and database state (no authentication needed)."""
        _, body = self._request("GET", "/api/health", "the health check")
        return body if isinstance(body, dict) else {}

    def upsert_datasource(self, datasource: Mapping[str, Any]) -> str:
        """Create the datasource, or update it in place by uid; "created" or "updated"."""
        uid = urllib.parse.quote(str(datasource["uid"]), safe="")
        status, _ = self._request("GET", f"/api/datasources/uid/{uid}", "reading the datasource", accept=(200, 404))
        if status == 200:
            self._request("PUT", f"/api/datasources/uid/{uid}", "updating the datasource", dict(datasource))
            return "updated"
        self._request("POST", "/api/datasources", "creating the datasource", dict(datasource))
        return "created"

    def ensure_folder(self, uid: str = FOLDER_UID, title: str = FOLDER_TITLE) -> str:
        """The folder with `uid`, created when absent; "exists" or "created"."""
        quoted = urllib.parse.quote(uid, safe="")
        status, _ = self._request("GET", f"/api/folders/{quoted}", "reading the folder", accept=(200, 404))
        if status == 200:
            return "exists"
        self._request("POST", "/api/folders", "creating the folder", {"uid": uid, "title": title})
        return "created"

    def upsert_dashboard(self, dashboard: Mapping[str, Any], folder_uid: str) -> str:
        """Create or replace the dashboard with the same uid in `folder_uid`; its URL in Grafana."""
        body = {"dashboard": {**dashboard, "id": None}, "folderUid": folder_uid, "overwrite": True,
                "message": PUSH_MESSAGE}
        _, answer = self._request("POST", "/api/dashboards/db", f"saving dashboard {dashboard.get('uid')!r}", body)
        path = answer.get("url", "") if isinstance(answer, dict) else ""
        return self.url + path if path.startswith("/") else path


def _hint(status: int, message: str, has_token: bool) -> str:
    if status == 401:
        return (" (give a service account token in GRAFANA_TOKEN or --token-file)" if not has_token
                else " (the token was not accepted: expired, revoked, or for another Grafana)")
    if status == 403:
        return (" (the token's role may not do this: Editor saves dashboards and folders; creating the datasource"
                " needs Admin, or use --no-datasource)")
    if status == 409:
        return " (another datasource has this name: rename or delete it, or use --no-datasource)"
    if status == 412:
        return " (another dashboard in the folder has this title)"
    if status == 400 and "provisioned" in message.lower():
        return (" (this Grafana provisions the dashboard from files: update those with `moecluster dashboards"
                " export`, or remove the provisioning)")
    return ""


@dataclass(frozen=True)
class PushReport:
    """What `push` did, line by line, for the CLI to print."""

    grafana_version: str
    lines: tuple[str, ...]


def push(grafana: Grafana, dashboards: Mapping[str, Mapping[str, Any]], *,
         datasource: Mapping[str, Any] | None, folder_uid: str = FOLDER_UID,
         folder_title: str = FOLDER_TITLE) -> PushReport:
    """The datasource (unless None), the folder, then every dashboard; GrafanaError at the first refusal."""
    health = grafana.health()
    lines = []
    if datasource is not None:
        what = grafana.upsert_datasource(datasource)
        lines.append(f"datasource {datasource['name']!r} (uid {datasource['uid']}, {datasource['url']}): {what}")
    lines.append(f"folder {folder_title!r} (uid {folder_uid}): {grafana.ensure_folder(folder_uid, folder_title)}")
    for uid, data in dashboards.items():
        lines.append(f"dashboard {data.get('title')!r}: {grafana.upsert_dashboard(data, folder_uid) or uid}")
    return PushReport(grafana_version=str(health.get("version", "unknown")), lines=tuple(lines))
