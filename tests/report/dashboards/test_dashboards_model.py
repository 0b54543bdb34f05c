"""The generated dashboards: the SDK's own model reads them back unchanged, their layout and queries are
well-formed, every metric they name is exported, and the committed provisioning files are the export."""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from moecluster.report.dashboards import DATASOURCE_NAME, DATASOURCE_UID, FOLDER_UID
from moecluster.report.dashboards.datasource import prometheus_datasource
from moecluster.report.dashboards.export import DashboardModelError, check_model, render

ROOT = Path(__file__).resolve().parents[3]
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
PROMQL_FUNCTIONS = {"sum", "max", "count", "rate", "irate", "increase", "last_over_time"}
UNITLESS = {"row", "table", "state-timeline"}


def panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in d["panels"] if p["type"] != "row"]


def exprs(d: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(d) for t in p["targets"]]


def test_the_sdk_model_reads_every_dashboard_back_unchanged(dashboards: dict[str, dict[str, Any]]) -> None:
    assert list(dashboards) == ["moecluster-cluster", "moecluster-sweep", "moecluster-results"]
    for uid, d in dashboards.items():
        model = check_model(d)
        assert model.uid == uid and model.schema_version == 42


@pytest.mark.parametrize("damage", ["unknown key", "target type", "panel options"])
def test_the_model_check_catches_what_the_sdk_does_not_read(dashboards: dict[str, dict[str, Any]],
                                                           damage: str) -> None:
    d = copy.deepcopy(dashboards["moecluster-cluster"])
    target = panels(d)[0]
    if damage == "unknown key":
        d["refreshInterval"] = "5s"  # not a dashboard field: the SDK drops it
    elif damage == "target type":
        target["datasource"] = {"type": "loki", "uid": "x"}  # its queries are then read as Loki's, not Prometheus'

    else:
        target["type"] = "not-a-panel-plugin"
    with pytest.raises(DashboardModelError):
        check_model(d)


def test_layout_ids_datasources_units_and_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    for uid, d in dashboards.items():
        assert len(uid) <= 40 and d["tags"] == ["moecluster"] and d["title"].startswith("moecluster / ")
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids) and all(i > 0 for i in ids)
        assert d["annotations"]["list"][0]["builtIn"] == 1
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert variables["datasource"]["current"] == {"selected": True, "text": DATASOURCE_NAME,
                                                       "value": DATASOURCE_UID}
        for p in panels(d):
            where = f"{uid} / {p['title']}"
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert p["description"] and p["targets"], where
            refs = [t["refId"] for t in p["targets"]]
            assert len(set(refs)) == len(refs), where
            grid = p["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, where
            if p["type"] not in UNITLESS:
                assert p["fieldConfig"]["defaults"]["unit"], where
        used = {name for e in exprs(d) for name in re.findall(r"\$([a-z]\w*)", e)}
        assert used <= set(variables) and used == set(variables) - {"datasource"}, (uid, used)


def test_panels_name_only_exported_metrics(dashboards: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Fast twin of the live test: every metric in every panel is a family the agent collector (scraped
    here with a fake GPU and a running task) or the results exporter declares."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from moecluster.devices import FakeDevices
    from moecluster.node.agent.collector import GpuCollector
    from moecluster.node.agent.sampler import PowerSampler
    from moecluster.node.agent.task_labels import FileTaskObserver
    from moecluster.spec.records import TaskSpec
    from moecluster.report.results_exporter.collector import FAMILIES

    devices = FakeDevices(1, node="n")
    FileTaskObserver(tmp_path).started(TaskSpec(task_id="t", pair_id="p", kind="moe", impl="grouped", model={}),
                                       [devices.gpus[0].info])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GpuCollector(devices, node="n", sampler=PowerSampler(devices.gpus, 0.1), state_dir=tmp_path))
    agent = {s.name for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    exported = agent | set(FAMILIES)
    for uid, d in dashboards.items():
        named = {m for e in exprs(d) for m in re.findall(r"\bmoecluster_[a-z0-9_]+", e)}
        assert named and named <= exported, (uid, sorted(named - exported))
    assert "moecluster_task_energy_joules_total" in agent


def test_every_query_is_valid_promql(dashboards: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """promtool parses every expression (as recording rules, with Grafana's variables expanded)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    rules = []
    for d in dashboards.values():
        for i, e in enumerate(exprs(d)):
            expanded = (e.replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$__interval", "15s"))
            expanded = re.sub(r"\$[a-z]\w*", ".*", expanded)
            rules.append({"record": f"check:{d['uid'].replace('-', '_')}:{i}", "expr": expanded})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def test_the_provisioned_files_are_the_export(dashboards: dict[str, dict[str, Any]]) -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "moecluster.yaml").read_text())
    (p,) = provider["providers"]
    assert p["type"] == "file" and p["folderUid"] == FOLDER_UID
    # deploy/compose.yaml mounts deploy/grafana/provisioning at /etc/grafana/provisioning
    local = PROVISIONING / Path(p["options"]["path"]).relative_to("/etc/grafana/provisioning")
    files = sorted(local.glob("*.json"))
    assert [f.stem for f in files] == sorted(dashboards)
    for f in files:
        assert f.read_text() == render(dashboards[f.stem]), f"{f} is stale: run `moecluster dashboards export {local}`"
    (ds,) = yaml.safe_load((PROVISIONING / "datasources" / "moecluster.yaml").read_text())["datasources"]
    assert {k: v for k, v in ds.items() if k != "editable"} == prometheus_datasource()


def test_export_through_the_cli(tmp_path: Path, dashboards: dict[str, dict[str, Any]],
                                capsys: pytest.CaptureFixture[str]) -> None:
    from moecluster.cli import main

    with pytest.raises(SystemExit) as info:
        main(["dashboards", "export", str(tmp_path / "out")])
    assert info.value.code == 0
    written = capsys.readouterr().out.split()
    assert [Path(w).name for w in written] == [f"{uid}.json" for uid in dashboards]
    for w in written:
        assert json.loads(Path(w).read_text()) == dashboards[Path(w).stem]
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as info:
        main(["dashboards", "export", str(tmp_path / "file")])
    assert info.value.code == 2 and "DIRECTORY" in capsys.readouterr().err
