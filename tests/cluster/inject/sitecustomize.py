"""A fault for the tests (on PYTHONPATH of one Ray node only): one process on the wrong GPUs.

When `$MOECLUSTER_TEST_STALE_CUDA` names a file that exists, the first Ray worker process of this
node to load moecluster's GPU check (`moecluster.node.binding`, loaded by every pair task,
and by nothing else) claims the file (renames it: exactly one process wins) and binds its fake
CUDA context to every GPU of the node, as a process that initialised CUDA before Ray gave it its
GPU would. The claim (pid, time) is written to `<file>.claimed`.
"""
import os
import sys
import types

_TOKEN = os.environ.get("MOECLUSTER_TEST_STALE_CUDA")
_TARGET = "moecluster.node.binding"


def _claim(module: types.ModuleType) -> None:
    import json
    import time

    claimed = _TOKEN + ".claimed"
    try:
        os.rename(_TOKEN, claimed)
    except OSError:
        return  # not armed, or another process won
    module.PROCESS_FAKE_CUDA.bind(None)  # every GPU of the node, whatever Ray assigns later
    with open(claimed, "w") as fh:
        json.dump({"pid": os.getpid(), "at": time.time()}, fh)


if _TOKEN and sys.argv and sys.argv[0].endswith("default_worker.py"):
    import importlib.abc
    import importlib.util

    class _AfterImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object, target: object = None) -> object:
            if name != _TARGET:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)  # by the finders behind this one (the editable install's)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module: types.ModuleType) -> None:
                run(module)
                _claim(module)

            setattr(spec.loader, "exec_module", exec_module)  # noqa: B010 - a patch of this one loader
            return spec

    sys.meta_path.insert(0, _AfterImport())
