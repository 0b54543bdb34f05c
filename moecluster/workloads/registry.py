"""The registered workloads: name → plug-in. A new workload's head side is one line in `PLUGINS` (its node
side one line in `workload.registry()`, which node code reads instead of this module).

Head code looks a workload up here (`workload(name)`) or iterates `WORKLOADS`; it never tests a name.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from moecluster.head.sweep.schema import DEFAULT_WORKLOAD

from moecluster.workloads.base import WorkloadPlugin
from moecluster.workloads.llm.plugin import LlmWorkload
from moecluster.workloads.mlp.plugin import MlpWorkload
from moecluster.workloads.serve.plugin import ServeWorkload

#: Every workload's plug-in, in the order sweeps and reports list them.
PLUGINS: tuple[WorkloadPlugin, ...] = (MlpWorkload(), LlmWorkload(), ServeWorkload())
#: name → plug-in (read-only).
WORKLOADS: Mapping[str, WorkloadPlugin] = MappingProxyType({p.name: p for p in PLUGINS})


def workload(name: str) -> WorkloadPlugin:
    """The plug-in of workload `name`; a name this version does not know (a record written by another one)
    reads as the default workload's, as records did before workloads had plug-ins."""
    return WORKLOADS.get(name, WORKLOADS[DEFAULT_WORKLOAD])
