"""Whether this installation can run expert-parallel gangs: the node side must be there.

The head asks before it plans a sweep with `expert_parallel > 1`, so that such a sweep is
refused in one line instead of running something that is not expert parallelism.
"""
from __future__ import annotations

NEEDED = {"moecluster.measure.parallel.gang": ("run_gang_rank",),
          "moecluster.measure.parallel.group": ("GangContext", "free_port")}


def gang_problem() -> str | None:
    """None when gangs can run here; else why not, in one line."""
    import importlib

    for module, names in NEEDED.items():
        try:
            loaded = importlib.import_module(module)
        except ImportError as exc:
            return f"the node side of expert parallelism is not installed ({module}: {exc})"
        missing = [n for n in names if not hasattr(loaded, n)]
        if missing:
            return f"the node side of expert parallelism lacks {', '.join(missing)} in {module}"
    import torch.distributed

    if not torch.distributed.is_available():
        return "this torch build has no torch.distributed, which expert-parallel gangs need"
    return None
