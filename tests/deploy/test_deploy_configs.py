"""The deployment files: Ray cluster launcher configs against the schema shipped inside `ray`, their
setup scripts, the systemd units (systemd-analyze), the compose file, the KubeRay manifest; every
moecluster command line in them is parsed by the real CLI."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from moecluster.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CLUSTERS = sorted((DEPLOY / "ray").glob("*.yaml"))
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def parse_moecluster(argv: list[str]) -> click.Context:
    """`argv` (after `moecluster`) parsed by the real CLI, as far as choosing the command and its options."""
    ctx = cli.make_context("moecluster", list(argv[:1]), resilient_parsing=True)
    group_or_cmd = cli.get_command(ctx, argv[0])
    assert group_or_cmd is not None, argv
    rest = argv[1:]
    if isinstance(group_or_cmd, click.Group):
        sub = group_or_cmd.get_command(ctx, rest[0])
        assert sub is not None, argv
        group_or_cmd, rest = sub, rest[1:]
    return group_or_cmd.make_context(argv[0], rest)  # raises click.UsageError on an unknown option


def test_cluster_launcher_configs_match_rays_schema() -> None:
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    assert [c.name for c in CLUSTERS] == ["aws-gpu.yaml", "gcp-gpu.yaml"]
    for path in CLUSTERS:
        config = yaml.safe_load(path.read_text())
        jsonschema.validate(config, schema)
        assert config["provider"]["type"] == path.stem.split("-")[0]
        types = config["available_node_types"]
        assert config["head_node_type"] in types
        workers = [t for name, t in types.items() if name != config["head_node_type"]]
        assert workers and all(w["min_workers"] == w["max_workers"] >= 1 for w in workers), path  # fixed size
        assert config["max_workers"] == sum(w["max_workers"] for w in workers)
        # every node gets this checkout and Ray's token as a file (never a variable or an argument)
        assert config["file_mounts"] == {"~/moecluster": ".", "~/.ray/auth_token": "~/.ray/auth_token"}
        for key in ("head_start_ray_commands", "worker_start_ray_commands"):
            start = [c for c in config[key] if "ray start" in c]
            assert start and all("RAY_AUTH_MODE=token" in c for c in start), (path, key)
        commands = " ".join(config["head_setup_commands"] + config["worker_setup_commands"])
        for script in re.findall(r"~/moecluster/(deploy/ray/[\w.-]+\.sh)", commands):
            assert (ROOT / script).is_file(), script
        assert "setup-gpu-worker.sh" in " ".join(config["worker_setup_commands"])
        assert "setup-head.sh" in " ".join(config["head_setup_commands"])
        assert "auth_token" not in commands and "RAY_AUTH_TOKEN=" not in path.read_text()


def test_setup_scripts_parse_and_install_moecluster_and_the_agent() -> None:
    scripts = {p.name: p.read_text() for p in (DEPLOY / "ray").glob("*.sh")}
    assert set(scripts) == {"setup-node.sh", "setup-gpu-worker.sh", "setup-head.sh", "units.sh"}
    for name in scripts:
        out = subprocess.run(["bash", "-n", str(DEPLOY / "ray" / name)], capture_output=True, text=True)
        assert out.returncode == 0, (name, out.stderr)
        if name != "units.sh":  # sourced, not run
            assert scripts[name].startswith("#!/usr/bin/env bash") and "set -euo pipefail" in scripts[name]
    assert 'pip install -q -e "$SRC' in scripts["setup-node.sh"]
    assert "install_unit moecluster-agent " in scripts["setup-gpu-worker.sh"]
    assert "install_unit moecluster-results " in scripts["setup-head.sh"]
    assert "docker compose up -d" in scripts["setup-head.sh"]
    exec_lines = re.findall(r'Environment=MOECLUSTER_AGENT_ARGS=\\"([^"\\]+)\\"', scripts["setup-gpu-worker.sh"])
    assert exec_lines and parse_moecluster(["agent", *shlex.split(exec_lines[0])]).params["device"] == "nvml"


def _unit_commands(text: str) -> list[str]:
    env = dict(re.findall(r'^Environment=(\w+)="([^"]*)"', text, re.M))
    (exec_start,) = re.findall(r"^ExecStart=(\S+) (.*)$", text, re.M)
    args = exec_start[1]
    for name, value in env.items():
        args = args.replace(f"${name}", value)
    return shlex.split(args)


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_units_verify_and_their_commands_parse(unit: Path, tmp_path: Path) -> None:
    text = unit.read_text()
    ctx = parse_moecluster(_unit_commands(text))
    if ctx.command.name == "agent":  # the node's own address, the agent's safe default (not every interface)
        assert ctx.params["host"] is None and not ctx.params["all_interfaces"]
    else:  # the head's results exporter: loopback, for the Prometheus beside it
        assert ctx.params["host"] == "127.0.0.1"
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # as installed, with the venv path and user of this machine (verify checks the binary exists)
    local = re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.M)
    local = re.sub(r"^(User|Group)=moecluster$", r"\1=root", local, flags=re.M)
    copy = tmp_path / unit.name
    copy.write_text(local)
    out = subprocess.run([systemd_analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_compose_runs_prometheus_and_grafana_with_the_provisioning() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"prometheus", "grafana"}
    for name, service in services.items():
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), (name, service["image"])  # pinned
        assert service["network_mode"] == "host"
    volumes = {}
    for v in (v for s in services.values() for v in s["volumes"]):
        source, target = re.sub(r":(ro|rw)$", "", v).rsplit(":", 1)
        volumes[target] = source
    assert (DEPLOY / volumes["/etc/prometheus"]).resolve() == DEPLOY / "prometheus"
    assert (DEPLOY / volumes["/etc/grafana/provisioning"]).resolve() == DEPLOY / "grafana" / "provisioning"
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    # submit writes the agents' targets into the runs directory, mounted where prometheus.yml reads them
    targets = jobs["moecluster-agent"]["file_sd_configs"][0]["files"][0]
    assert targets.startswith("/var/lib/moecluster/runs/") and "/var/lib/moecluster/runs" in volumes
    assert jobs["moecluster-results"]["static_configs"][0]["targets"] == ["127.0.0.1:9401"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana and grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    home = grafana["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / "grafana" / Path(home).relative_to("/etc/grafana")).is_file()


def _docs(path: Path) -> dict[str, Any]:
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text())}


def test_kuberay_cluster_runs_the_agent_beside_every_gpu_worker() -> None:
    docs = _docs(DEPLOY / "kuberay" / "raycluster.yaml")
    cluster, monitor = docs["RayCluster"], docs["PodMonitor"]
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["spec"]["authOptions"] == {"mode": "token"}
    dockerfile = (DEPLOY / "kuberay" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{cluster['spec']['rayVersion']}-" in dockerfile
    pods = [cluster["spec"]["headGroupSpec"]["template"]] + [g["template"] for g in cluster["spec"]["workerGroupSpecs"]]
    ports: set[str] = set()
    for group in cluster["spec"]["workerGroupSpecs"]:
        spec = group["template"]["spec"]
        containers = {c["name"]: c for c in spec["containers"]}
        ray_worker, agent = containers["ray-worker"], containers["moecluster-agent"]
        assert int(ray_worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        assert spec["shareProcessNamespace"] is True
        state_dir = {e["name"]: e["value"] for e in ray_worker["env"]}["MOECLUSTER_STATE_DIR"]
        ctx = parse_moecluster(agent["command"][1:])
        assert str(ctx.params["state_dir"]) == state_dir and ctx.params["host"] is None  # the pod's own address
        mounts = {m["name"]: m["mountPath"] for m in ray_worker["volumeMounts"]}
        agent_mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
        shared = set(mounts) & set(agent_mounts)
        assert shared and all(state_dir.startswith(mounts[v]) and mounts[v] == agent_mounts[v] for v in shared)
        assert [p["containerPort"] for p in agent["ports"]] == [ctx.params["port"]]
    head = {c["name"]: c for c in cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]}
    results = parse_moecluster(head["moecluster-results"]["command"][1:])
    runs_dir = {e["name"]: e["value"] for e in head["ray-head"]["env"]}["MOECLUSTER_RUNS_DIR"]
    assert str(results.params["runs_dir"]) == runs_dir and results.params["host"] == "0.0.0.0"
    for pod in pods:
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        ports |= {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"agent-metrics", "results-metrics"} <= ports
    assert all(e["honorLabels"] for e in monitor["spec"]["podMetricsEndpoints"])
    scrape = yaml.safe_load((DEPLOY / "kuberay" / "prometheus-scrape.yaml").read_text())["scrape_configs"][0]
    keep = {r["regex"] for r in scrape["relabel_configs"] if r.get("action") == "keep"}
    assert keep == {"moecluster", "agent-metrics|results-metrics"} and scrape["honor_labels"] is True


def _sandbox(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A home with this checkout and a venv, and shims for sudo, systemctl, curl and docker that
    record what the setup scripts ask of them."""
    home, bin_dir, units = tmp_path / "home", tmp_path / "bin", tmp_path / "units"
    (home / "venv" / "bin").mkdir(parents=True)
    (home / "moecluster").mkdir()
    (home / "moecluster" / "deploy").symlink_to(DEPLOY)
    (home / "runs").mkdir()
    units.mkdir()  # /etc/systemd/system exists on a real node
    shutil.copy("/bin/true", home / "venv" / "bin" / "moecluster")
    bin_dir.mkdir()
    shims = {"sudo": 'exec env "$@"',
             "systemctl": 'echo "systemctl $*" >> "$SANDBOX/calls"',
             "curl": 'echo "moecluster_agent_gpus{node=\\"n\\"} 4"',
             "docker": 'echo "docker $* runs=$MOECLUSTER_RUNS_DIR password=$GRAFANA_ADMIN_PASSWORD_FILE"'
                       ' >> "$SANDBOX/calls"'}
    for name, body in shims.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "SANDBOX": str(tmp_path), "HOME": str(home), "SYSTEMD_DIR": str(units),
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return env, units


def test_setup_scripts_install_the_units_and_start_the_compose(tmp_path: Path) -> None:
    """setup-gpu-worker.sh and setup-head.sh run in a sandbox: the units they install (with their
    drop-ins) pass systemd-analyze verify, and compose starts with the runs and the password file."""
    env, units = _sandbox(tmp_path)
    for script in ("setup-gpu-worker.sh", "setup-head.sh"):
        out = subprocess.run(["bash", str(DEPLOY / "ray" / script)], capture_output=True, text=True, env=env,
                             timeout=60)
        assert out.returncode == 0, (script, out.stdout, out.stderr)
    home = Path(env["HOME"])
    calls = (tmp_path / "calls").read_text().splitlines()
    for name in ("moecluster-agent", "moecluster-results"):
        assert f"systemctl enable {name}" in calls and f"systemctl restart {name}" in calls
        dropin = (units / f"{name}.service.d" / "ray-cluster.conf").read_text()
        assert f"ExecStart=\nExecStart={home}/venv/bin/moecluster " in dropin
    assert calls[-1] == (f"docker compose up -d runs={home}/runs "
                         f"password={home}/.moecluster/grafana-admin-password")
    password = home / ".moecluster" / "grafana-admin-password"
    assert stat_mode(password) == 0o640 and len(password.read_text().strip()) == 48
    assert json.loads((home / "runs" / "prometheus_targets.json").read_text()) == []
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None:
        pytest.skip("systemd-analyze is not installed")
    out = subprocess.run([systemd_analyze, "verify", *map(str, sorted(units.glob("*.service")))],
                         capture_output=True, text=True, timeout=60,
                         env={**env, "SYSTEMD_UNIT_PATH": f"{units}:", "SYSTEMD_LOG_LEVEL": "notice"})
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
