"""Does the agent report what a task on a real GPU measures itself?

Starts the node agent (`--device nvml`) as its own process, then runs a ~20 s bf16 matmul
load on CUDA device 0 as "a task": the task publishes its labels through the runner's
observer (`FileTaskObserver`) and reads its own NVML energy counter before and after; the
agent's `/metrics` is scraped right before and right after. Checks:

- the agent's energy counter increase over the task vs the task's own counter reading: 1 %;
- the agent's sampled average power over the task (`moecluster_gpu_power_avg_watts`, mean
  of the 100 ms samples since the previous scrape) vs the counter's mean power: 3 %;
- the task's info series and inference counter are on the task's GPU while it runs, and
  gone once it has finished.

Needs only torch, pynvml (nvidia-ml-py), prometheus-client and this package.

    python benchmarks/agent_nvml_check.py --out benchmarks/results/agent_nvml_check_h100.json
"""
from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pynvml
import torch
from prometheus_client.parser import text_string_to_metric_families

from moecluster.devices import GpuInfo
from moecluster.node.agent.task_labels import FileTaskObserver
from moecluster.spec.records import TaskResult, TaskSpec

COUNTER_TOL = 0.01
POWER_TOL = 0.03
AGENT = """
import logging, sys
from pathlib import Path
from moecluster.node.agent.server import AgentConfig, serve
logging.basicConfig(level=logging.INFO, format="%(asctime)s moecluster-agent %(levelname)s %(message)s")
serve(AgentConfig(host="127.0.0.1", port=int(sys.argv[1]), device="nvml", node="check",
                  interval_s=float(sys.argv[2]), state_dir=Path(sys.argv[3])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str, uuid: str) -> dict[str, Any]:
    """The series of GPU `uuid` (by metric name; task series keep their labels) and the agent's CPU."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, Any] = {"t": time.time(), "task_info": [], "task_inferences": []}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "process_cpu_seconds_total":
                out["agent_cpu_s"] = s.value
            elif s.labels.get("uuid") != uuid:
                continue
            elif s.name == "moecluster_task_info":
                out["task_info"].append(dict(s.labels))
            elif s.name == "moecluster_task_inferences_total":
                out["task_inferences"].append(s.value)
            else:
                out[s.name] = s.value
    return out


def wait_for_agent(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("agent exited:\n" + log.read_text())
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("agent did not answer:\n" + log.read_text())


def cuda_uuid(device: int) -> str:
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


def matmul_load(seconds: float, size: int, on_progress: Any) -> int:
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(20):
            torch.mm(a, b)
        torch.cuda.synchronize()
        done += 20
        on_progress(done)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the task's load")
    ap.add_argument("--size", type=int, default=8192, help="matmul size (bf16)")
    ap.add_argument("--interval", type=float, default=0.1, help="agent's power sampling interval, s")
    ap.add_argument("--out", required=True, help="JSON output path")
    args = ap.parse_args()

    torch.cuda.init()
    uuid = cuda_uuid(0)
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByUUID(uuid.encode())
    gpu = GpuInfo(index=pynvml.nvmlDeviceGetIndex(handle), uuid=uuid, name=torch.cuda.get_device_name(0))
    driver = pynvml.nvmlSystemGetDriverVersion()

    def task_counter_j() -> float:
        return pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3

    tmp = Path(tempfile.mkdtemp(prefix="agent-nvml-check-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    log = tmp / "agent.log"
    with log.open("w") as log_fh:
        agent = subprocess.Popen([sys.executable, "-c", AGENT, str(port), str(args.interval), str(tmp / "tasks")],
                                 stdout=log_fh, stderr=subprocess.STDOUT)
    try:
        wait_for_agent(url, agent, log)
        matmul_load(2.0, args.size, lambda _n: None)  # warm up kernels and clocks
        time.sleep(2.0)  # idle a little: the agent has samples before the task
        spec = TaskSpec(task_id="nvml-check", pair_id="nvml-check", kind="dense", impl="dense", model={},
                        run_id="agent-nvml-check", preset=None, device="cuda")
        observer = FileTaskObserver(tmp / "tasks")
        observer.started(spec, [gpu])
        before = scrape(url, uuid)
        t0, e0 = time.time(), task_counter_j()
        done = matmul_load(args.seconds, args.size, observer.progress)
        e1, t1 = task_counter_j(), time.time()
        observer.progress(done)
        after = scrape(url, uuid)
        observer.finished(TaskResult(spec=spec, status="ok"))
        gone = scrape(url, uuid)
    finally:
        agent.terminate()
        agent_rc = agent.wait(15)
        pynvml.nvmlShutdown()

    task_j = e1 - e0
    task_avg_w = task_j / (t1 - t0)
    agent_j = after["moecluster_gpu_energy_joules_total"] - before["moecluster_gpu_energy_joules_total"]
    agent_avg_w = after["moecluster_gpu_power_avg_watts"]
    scrape_span_s = after["t"] - before["t"]
    checks = {
        "counter_within_1pct": abs(agent_j - task_j) / task_j <= COUNTER_TOL,
        "sampled_avg_power_within_3pct": abs(agent_avg_w - task_avg_w) / task_avg_w <= POWER_TOL,
        "task_info_while_running": len(after["task_info"]) == 1 and after["task_info"][0]["task"] == "nvml-check",
        "task_inferences_counted": after["task_inferences"] == [float(done)],
        "task_series_gone_after": not gone["task_info"] and not gone["task_inferences"],
        "agent_stopped_cleanly": agent_rc == 0,
    }
    result = {
        "benchmark": "agent_nvml_check",
        "gpu": {"name": gpu.name, "uuid": uuid, "nvml_index": gpu.index},
        "environment": {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                        "driver": driver if isinstance(driver, str) else driver.decode()},
        "load": {"matmul_size": args.size, "dtype": "bfloat16", "seconds": t1 - t0, "matmuls": done},
        "task": {"counter_j": task_j, "avg_power_w": task_avg_w, "duration_s": t1 - t0},
        "agent": {"counter_j": agent_j, "sampled_avg_power_w": agent_avg_w,
                  "sampled_max_power_w": after.get("moecluster_gpu_power_max_watts"),
                  "scrape_span_s": scrape_span_s, "sample_interval_s": args.interval,
                  "power_limit_w": after.get("moecluster_gpu_power_limit_watts"),
                  "cpu_pct_of_one_core": 100 * (after["agent_cpu_s"] - before["agent_cpu_s"]) / scrape_span_s,
                  "task_info": after["task_info"]},
        "diff_pct": {"counter": 100 * (agent_j - task_j) / task_j,
                     "avg_power": 100 * (agent_avg_w - task_avg_w) / task_avg_w},
        "checks": checks,
        "ok": all(checks.values()),
    }
    print(f"{'quantity':<28}{'task (own NVML)':>18}{'agent /metrics':>18}{'diff %':>10}  limit")
    diff = result["diff_pct"]
    print(f"{'energy over the task, J':<28}{task_j:>18,.1f}{agent_j:>18,.1f}{diff['counter']:>+10.3f}  1 %")
    print(f"{'average power, W':<28}{task_avg_w:>18,.1f}{agent_avg_w:>18,.1f}{diff['avg_power']:>+10.3f}  3 %")
    print(f"agent process CPU during the task: {result['agent']['cpu_pct_of_one_core']:.2f} % of one core")
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True))
    print(f"wrote {args.out}")
    if not result["ok"]:
        print("agent log:\n" + log.read_text(), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
