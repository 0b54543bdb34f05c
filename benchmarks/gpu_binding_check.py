"""Does the GPU check at task start catch a process on the wrong GPU, on real GPUs?

Two parts, each in its own fresh Python process (CUDA binds a process once):

- `stale`: the process starts CUDA with `CUDA_VISIBLE_DEVICES=0`, then is "assigned" GPU 1 (as a
  reused Ray worker would be); `binding.cuda_binding(["1"])` must report the mismatch, naming
  GPU 0's and GPU 1's UUIDs as NVML gives them. Needs two GPUs.
- `fresh`: for every GPU i, a process with `CUDA_VISIBLE_DEVICES=i` assigned i must pass, and its
  CUDA device's UUID must be NVML's UUID of index i (PCI bus order, `CUDA_DEVICE_ORDER=PCI_BUS_ID`).

Prints one JSON document (and writes it with `--out`); exit 1 when a check fails.

    python benchmarks/gpu_binding_check.py --out benchmarks/results/gpu_binding_check.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROBE = """
import json, os, sys
from moecluster.node.binding import cuda_binding, prefer_pci_order, problems
prefer_pci_order()
import torch
torch.cuda.init()
torch.zeros(1, device="cuda")  # CUDA bound to what CUDA_VISIBLE_DEVICES says now
os.environ["CUDA_VISIBLE_DEVICES"] = sys.argv[1]  # Ray's assignment for the next task
b = cuda_binding([sys.argv[1]])
print(json.dumps({"seen": b.seen_uuids, "expected": b.expected_uuids, "problems": problems(b)}))
"""


def probe(first: str, assigned: str) -> dict[str, Any]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": first}
    proc = subprocess.run([sys.executable, "-c", PROBE, assigned], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import pynvml

    pynvml.nvmlInit()
    count = pynvml.nvmlDeviceGetCount()
    pynvml.nvmlShutdown()
    doc: dict[str, Any] = {"gpus": count, "fresh": {str(i): probe(str(i), str(i)) for i in range(count)}}
    ok = all(not r.get("problems") and "error" not in r for r in doc["fresh"].values())
    if count >= 2:
        doc["stale"] = probe("0", "1")
        ok = ok and bool(doc["stale"].get("problems"))
    else:
        doc["stale"] = "skipped: needs two GPUs"
    doc["ok"] = ok
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
