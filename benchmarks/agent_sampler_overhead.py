"""What the agent's background power sampler costs: CPU time of its thread per second.

The sampler reads every GPU's power every `--interval` (100 ms by default); the issue asks
that it cost < 1 % of one core. The sampler thread's own CPU clock
(`pthread_getcpuclockid`) is read before and after `--seconds` of sampling, so the figure
is the thread's cost alone, not the process's.

    python benchmarks/agent_sampler_overhead.py                      # fake devices (any machine)
    python benchmarks/agent_sampler_overhead.py --device nvml --out benchmarks/results/agent_sampler_overhead_h100.json
"""
from __future__ import annotations

import argparse
import time

from _common import environment, print_table, write_json
from moecluster.devices import DeviceSet, FakeDevices, open_devices
from moecluster.node.agent.sampler import PowerSampler

LIMIT_PCT = 1.0


def thread_cpu_s(thread_ident: int) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread_ident))


def measure(devices: DeviceSet, interval_s: float, seconds: float) -> dict[str, object]:
    sampler = PowerSampler(devices.gpus, interval_s).start()
    time.sleep(min(1.0, seconds / 5))  # let it settle
    ident = sampler.thread.ident
    assert ident is not None
    cpu0, wall0 = thread_cpu_s(ident), time.perf_counter()
    sampler.take_window(devices.gpus[0].info.index)
    time.sleep(seconds)
    cpu1, wall1 = thread_cpu_s(ident), time.perf_counter()
    window = sampler.take_window(devices.gpus[0].info.index)
    sampler.stop()
    cpu_pct = 100 * (cpu1 - cpu0) / (wall1 - wall0)
    samples = window.samples if window else 0
    return {"device": devices.kind, "gpus": len(devices.gpus), "interval_s": interval_s, "wall_s": wall1 - wall0,
            "samples": samples, "cpu_pct_of_one_core": cpu_pct,
            "cpu_us_per_tick": 1e6 * (cpu1 - cpu0) / samples if samples else None,
            "ok": cpu_pct < LIMIT_PCT if interval_s >= 0.1 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["fake", "nvml"], default="fake")
    ap.add_argument("--intervals", default="0.1,0.01", help="comma-separated sampling intervals, s")
    ap.add_argument("--fake-gpus", default="1,8", help="comma-separated GPU counts (fake device)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per configuration")
    ap.add_argument("--out", default="benchmarks/results/agent_sampler_overhead.json")
    args = ap.parse_args()
    intervals = [float(x) for x in args.intervals.split(",")]
    if args.device == "nvml":
        device_sets: list[DeviceSet] = [open_devices("nvml")]
    else:
        device_sets = [FakeDevices(int(n)) for n in args.fake_gpus.split(",")]
    rows = [measure(d, i, args.seconds) for d in device_sets for i in intervals]
    for d in device_sets:
        d.close()
    print_table(rows, ["device", "gpus", "interval_s", "samples", "cpu_pct_of_one_core", "cpu_us_per_tick", "ok"])
    write_json(args.out, {"benchmark": "agent_sampler_overhead", "limit_pct_of_one_core": LIMIT_PCT,
                          "environment": environment(), "rows": rows})
    if any(r["ok"] is False for r in rows):
        raise SystemExit(f"sampler costs >= {LIMIT_PCT} % of one core at 100 ms")


if __name__ == "__main__":
    main()
