"""`moecluster dashboards push` through the real CLI against Grafana's HTTP API contract (grafana_api.py:
a stand-in written from Grafana's API documentation; no real Grafana can be run here).

The token comes from GRAFANA_TOKEN or --token-file only; it is sent as a Bearer header on every
request and appears in no output, error or file."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any


from grafana_api import GrafanaApi
from moecluster.report.dashboards import DATASOURCE_UID, FOLDER_UID
from moecluster.report.dashboards.datasource import prometheus_datasource
from moecluster.report.dashboards.export import check_model

_SCRIPT = Path(sys.executable).with_name("moecluster")
CLI = ([str(_SCRIPT)] if _SCRIPT.exists()
       else [sys.executable, "-c", "from moecluster.cli import main; main()"])
TOKEN = "glsa_stand-in-token-0123456789abcdef"


def push(*args: str, token: str | None = None, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_TOKEN"}
    if token is not None:
        env["GRAFANA_TOKEN"] = token
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run([*CLI, "dashboards", "push", *args], capture_output=True, text=True, timeout=120, env=env,
                          cwd=home)


def assert_no_token(proc: subprocess.CompletedProcess[str], *places: Path) -> None:
    assert TOKEN not in proc.stdout and TOKEN not in proc.stderr
    for place in places:
        for path in place.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path


def test_push_creates_datasource_folder_and_dashboards(grafana: GrafanaApi, dashboards: dict[str, dict[str, Any]],
                                                       tmp_path: Path) -> None:
    proc = push("--url", grafana.url, "--prometheus-url", "http://prometheus.internal:9090", token=TOKEN,
                home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert grafana.datasources[DATASOURCE_UID] | {"id": 1, "orgId": 1} == \
        prometheus_datasource("http://prometheus.internal:9090") | {"id": 1, "orgId": 1}
    assert grafana.folders[FOLDER_UID]["title"] == "moecluster"
    assert set(grafana.dashboards) == set(dashboards)
    for uid, saved in grafana.dashboards.items():
        assert saved["folderUid"] == FOLDER_UID and saved["version"] == 1
        sent = saved["dashboard"]
        assert sent["id"] is None
        check_model({k: v for k, v in sent.items() if k != "id"})  # what Grafana stores is the SDK's model
        assert {k: v for k, v in sent.items() if k != "id"} == dashboards[uid]
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in grafana.requests
               if r.path != "/api/health")
    lines = proc.stdout.splitlines()
    assert lines[0] == f"Grafana 12.0.2+stand-in at {grafana.url}"
    assert f"  dashboard 'moecluster / Cluster': {grafana.url}/d/moecluster-cluster/moecluster-cluster" in lines
    assert_no_token(proc, tmp_path)


def test_second_push_updates_in_place(grafana: GrafanaApi, tmp_path: Path) -> None:
    assert push("--url", grafana.url, token=TOKEN).returncode == 0
    proc = push("--url", grafana.url, token=TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert "): updated" in proc.stdout and "(uid moecluster): exists" in proc.stdout
    assert len(grafana.datasources) == 1 and len(grafana.folders) == 1
    assert {s["version"] for s in grafana.dashboards.values()} == {2}
    puts = [r for r in grafana.requests if r.method == "PUT"]
    assert [r.path for r in puts] == [f"/api/datasources/uid/{DATASOURCE_UID}"]


def test_token_from_a_file(grafana: GrafanaApi, tmp_path: Path) -> None:
    token_file = tmp_path / "grafana-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    proc = push("--url", grafana.url, "--token-file", str(token_file), home=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    token_file.chmod(0o644)
    proc = push("--url", grafana.url, "--token-file", str(token_file), home=tmp_path)
    assert proc.returncode == 0 and "is readable by other users (chmod 600 it)" in proc.stderr
    assert_no_token(proc)


def test_the_token_is_never_an_argument(grafana: GrafanaApi) -> None:
    proc = push("--url", grafana.url, "--token", TOKEN)
    assert proc.returncode == 2 and "No such option '--token'" in proc.stderr
    assert_no_token(proc)
    assert grafana.requests == []


def test_credentials_in_the_url_are_refused_without_echoing_them(grafana: GrafanaApi) -> None:
    proc = push("--url", f"http://admin:{TOKEN}@127.0.0.1:3000")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "carries credentials" in proc.stderr
    assert_no_token(proc)


def test_a_wrong_or_missing_token_is_one_line(grafana: GrafanaApi) -> None:
    wrong = push("--url", grafana.url, token="glsa_wrong")
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1
    assert "refused reading the datasource: HTTP 401 Unauthorized: Unauthorized (the token was not accepted" \
        in wrong.stderr and "glsa_wrong" not in wrong.stderr
    missing = push("--url", grafana.url)
    assert missing.returncode == 1 and "give a service account token in GRAFANA_TOKEN or --token-file" in missing.stderr
    assert grafana.dashboards == {}


def test_an_editor_token_pushes_dashboards_with_no_datasource(grafana: GrafanaApi) -> None:
    grafana.role = "Editor"
    proc = push("--url", grafana.url, token=TOKEN)
    assert proc.returncode == 1 and "HTTP 403" in proc.stderr and "use --no-datasource" in proc.stderr
    proc = push("--url", grafana.url, "--no-datasource", token=TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert grafana.datasources == {} and len(grafana.dashboards) == 3
    assert not any("/api/datasources" in r.path for r in grafana.requests[-6:])
    bad = push("--url", grafana.url, "--no-datasource", "--prometheus-url", "http://p:9090", token=TOKEN)
    assert bad.returncode == 2 and "drop --no-datasource" in bad.stderr


def test_a_provisioned_dashboard_is_named(grafana: GrafanaApi) -> None:
    grafana.provisioned.add("moecluster-sweep")
    proc = push("--url", grafana.url, token=TOKEN)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "saving dashboard 'moecluster-sweep': HTTP 400" in proc.stderr
    assert "provisions the dashboard from files" in proc.stderr


def test_an_unreachable_grafana_and_bad_input(tmp_path: Path) -> None:
    proc = push("--url", "http://127.0.0.1:9", token=TOKEN)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "unreachable while the health check" in proc.stderr
    for args, culprit in ((["--url", "grafana:3000"], "--url 'grafana:3000': expected an http:// or https://"),
                          (["--url", "http://g:3000", "--token-file", str(tmp_path / "nope")],
                           f"--token-file {tmp_path / 'nope'}: cannot read it"),
                          (["--url", "http://g:3000", "--prometheus-url", "localhost:9090"],
                           "--prometheus-url 'localhost:9090': expected an http:// or https://")):
        proc = push(*args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and culprit in proc.stderr, proc.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    proc = push("--url", "http://g:3000", "--token-file", str(empty))
    assert proc.returncode == 2 and "the file is empty" in proc.stderr
    assert stat.S_IMODE(empty.stat().st_mode)  # untouched
