"""A task's process must compute on exactly the GPUs Ray gave the task; checked at task start.

CUDA binds a process to the devices `CUDA_VISIBLE_DEVICES` names when the process first
initialises CUDA, for the rest of its life. Ray sets `CUDA_VISIBLE_DEVICES` per task, so a
process that ran an earlier task (a reused worker), or initialised CUDA before Ray assigned its
GPU (a library touching CUDA at import), computes and is metered on another pair's GPU. GPU
pair tasks run in a fresh process each (`max_calls=1`, see `head.schedule.remote`);
this check turns any mismatch left into a loud `GpuMismatch` before anything is measured.

What the process sees comes from one of two sources:
- `cuda_binding`: torch's devices (their UUIDs), against NVML's UUIDs of Ray's GPU ids. Ray's
  ids count GPUs in the order CUDA enumerates them; the task sets `CUDA_DEVICE_ORDER=PCI_BUS_ID`
  before CUDA starts (unless the node chose an order), so that order is NVML's, and Ray's ids,
  NVML's indices and the node agent's `gpu` labels are one numbering. With another order chosen
  on the node, the UUIDs cannot be matched and only the device count is checked.
- `fake_binding`: fake GPUs (`meter: fake` on Ray's fake GPUs), through `FakeCudaContext`,
  which binds at first use the way CUDA does.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from moecluster.devices import FakeDevices

VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
ORDER_ENV = "CUDA_DEVICE_ORDER"
PCI_ORDER = "PCI_BUS_ID"


class GpuMismatch(RuntimeError):
    """The task's process computes on other GPUs than Ray assigned it (the pair is not measured)."""


@dataclass(frozen=True)
class Binding:
    """Ray's assignment against what the process computes on.

    `expected_uuids` is None where the assigned GPUs' UUIDs cannot be known (then only the
    count of devices the process sees is compared)."""

    assigned: tuple[str, ...]  # Ray's GPU ids for the task (`get_accelerator_ids()["GPU"]`)
    visible_env: str | None  # CUDA_VISIBLE_DEVICES as the process has it now
    seen_uuids: tuple[str, ...]  # the devices the process computes on
    expected_uuids: tuple[str, ...] | None  # the assigned GPUs' UUIDs


def _ids(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _same_gpu(seen: str, expected: str) -> bool:
    """UUIDs match; CUDA also accepts a unique prefix of a UUID in CUDA_VISIBLE_DEVICES."""
    return seen == expected or seen.startswith(expected) or expected.startswith(seen)


def problems(binding: Binding) -> list[str]:
    """What is wrong with `binding` (empty: the process computes on exactly Ray's GPUs)."""
    out: list[str] = []
    visible = _ids(binding.visible_env)
    if sorted(visible) != sorted(binding.assigned):
        shown = "unset" if binding.visible_env is None else repr(binding.visible_env)
        out.append(f"{VISIBLE_ENV} is {shown}")
    seen = list(binding.seen_uuids)
    if binding.expected_uuids is None:
        if len(seen) != len(binding.assigned):
            out.append(f"the process sees {len(seen)} GPU(s): {', '.join(seen) or 'none'}")
        return out
    unmatched = [e for e in binding.expected_uuids if not any(_same_gpu(s, e) for s in seen)]
    if unmatched or len(seen) != len(binding.expected_uuids):
        out.append(f"the process computes on {', '.join(seen) or 'no GPU'} instead of"
                   f" {', '.join(binding.expected_uuids)}")
    return out


def check(binding: Binding, where: str) -> None:
    """Raise `GpuMismatch` naming `where` (node), Ray's ids and what the process sees, if they differ."""
    found = problems(binding)
    if found:
        raise GpuMismatch(f"{where}: Ray assigned GPU {', '.join(binding.assigned)}, but " + "; ".join(found)
                          + " (a process bound to another GPU would measure another pair's; not measured)")


# -- fake GPUs -------------------------------------------------------------------------------
class FakeCudaContext:
    """Which fake GPUs a process computes on: those `CUDA_VISIBLE_DEVICES` named when the
    process first asked (every GPU of the node where it was unset), kept for the process's life,
    exactly as a CUDA context binds. One per process, like CUDA's own state: `PROCESS_FAKE_CUDA`."""

    def __init__(self) -> None:
        self._bound = False
        self._env: str | None = None

    def bind(self, visible_env: str | None) -> None:
        """Bind now to `visible_env` (no effect once bound), as a first CUDA call would."""
        if not self._bound:
            self._bound, self._env = True, visible_env

    def device_ids(self, node_gpu_ids: Sequence[str]) -> list[str]:
        """The GPU ids this process computes on (binding to the current environment if not yet bound)."""
        self.bind(os.environ.get(VISIBLE_ENV))
        return _ids(self._env) if self._env is not None else list(node_gpu_ids)


PROCESS_FAKE_CUDA = FakeCudaContext()


def fake_binding(assigned: Sequence[str], node_id: str, node_gpus: int,
                 context: FakeCudaContext = PROCESS_FAKE_CUDA) -> Binding:
    """The binding of a task on Ray's fake GPUs (numeric ids) of node `node_id` with `node_gpus` GPUs."""
    count = max([node_gpus, *(int(i) + 1 for i in assigned if i.isdigit())])
    devices = FakeDevices(count, node=node_id)
    uuid = {str(g.info.index): g.info.uuid for g in devices.gpus}
    seen = context.device_ids([str(i) for i in range(node_gpus)])
    return Binding(assigned=tuple(assigned), visible_env=os.environ.get(VISIBLE_ENV),
                   seen_uuids=tuple(uuid.get(i, f"no fake GPU {i}") for i in seen),
                   expected_uuids=tuple(uuid.get(i, f"no fake GPU {i}") for i in assigned))


# -- real GPUs -------------------------------------------------------------------------------
def prefer_pci_order() -> None:
    """Number CUDA devices in PCI bus order (NVML's) unless the node chose an order; call before CUDA starts."""
    os.environ.setdefault(ORDER_ENV, PCI_ORDER)


def cuda_binding(assigned: Sequence[str]) -> Binding:
    """The binding of this process's CUDA devices (initialises CUDA) against NVML's UUIDs of `assigned`."""
    import torch

    from moecluster.devices import DeviceError
    from moecluster.devices.cuda import UUID_PREFIXES, cuda_uuid

    seen = [cuda_uuid(i) for i in range(torch.cuda.device_count())]
    expected: tuple[str, ...] | None
    if all(a.startswith(UUID_PREFIXES) for a in assigned):
        expected = tuple(assigned)  # the node lists its GPUs by UUID
    elif os.environ.get(ORDER_ENV, PCI_ORDER) != PCI_ORDER or not all(a.isdigit() for a in assigned):
        expected = None
    else:
        try:
            from moecluster.devices.nvml import NvmlDevices

            with NvmlDevices() as nvml:
                by_index = {g.info.index: g.info.uuid for g in nvml.gpus}
            expected = tuple(by_index.get(int(a), f"no NVML GPU {a}") for a in assigned)
        except DeviceError:
            expected = None  # no NVML here: the count is all that can be compared
    return Binding(assigned=tuple(assigned), visible_env=os.environ.get(VISIBLE_ENV), seen_uuids=tuple(seen),
                   expected_uuids=expected)


def check_task_gpus(device: str, meter: str, assigned: Sequence[str], *, node_id: str, node_gpus: int,
                    where: str) -> None:
    """`check` the GPUs of a task on `device` metered by `meter` (nothing to check without Ray GPUs,
    or on the CPU with a real meter: that task computes on no GPU)."""
    if not assigned:
        return
    if device == "cuda":
        check(cuda_binding(assigned), where)
    elif meter == "fake":
        check(fake_binding(assigned, node_id, node_gpus), where)
