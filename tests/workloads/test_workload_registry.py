"""The workload registry: every plug-in keeps the protocol, names are unique, every example sweep loads and
expands through its plug-in, and a new workload needs no change to the sweep's schema."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from moecluster.head.sweep import SweepFile, expand, load_sweep
from moecluster.head.sweep.schema import DEFAULT_WORKLOAD, plugin_context
from moecluster.head.sweep.size import task_count
from moecluster.workloads.base import WorkloadPlugin
from moecluster.workloads.registry import PLUGINS, WORKLOADS, workload

ROOT = Path(__file__).resolve().parents[2]
#: The committed sweeps: the examples and the studies' own.
EXAMPLES = sorted([*(ROOT / "examples").glob("*.yaml"), *(ROOT / "benchmarks" / "sweeps").glob("*.yaml")])


def test_every_plugin_keeps_the_protocol_under_its_own_name() -> None:
    assert len(PLUGINS) == len(WORKLOADS) >= 3  # names unique: none shadows another
    for name, plugin in WORKLOADS.items():
        assert isinstance(plugin, WorkloadPlugin)
        assert plugin.name == name
        assert len(plugin.counts) == 3 and plugin.tokens_per_item >= 1
        assert plugin.grid_axes and len(set(plugin.grid_axes)) == len(plugin.grid_axes)
    assert DEFAULT_WORKLOAD in WORKLOADS
    assert not WORKLOADS[DEFAULT_WORKLOAD].setting_prefix  # the default's settings read without a prefix


def test_the_grid_axes_are_keys_of_the_sweep() -> None:
    serve_keys = set(SweepFile.model_fields["serve"].annotation.__args__[0].model_fields)  # type: ignore[union-attr]
    for plugin in PLUGINS:
        missing = set(plugin.grid_axes) - set(SweepFile.model_fields) - serve_keys
        assert not missing, (plugin.name, missing)


def test_an_unknown_name_reads_as_the_default_workload() -> None:
    assert workload("a-newer-workload") is WORKLOADS[DEFAULT_WORKLOAD]


@pytest.mark.parametrize("path", EXAMPLES, ids=[f"{p.parent.name}/{p.name}" for p in EXAMPLES])
def test_every_example_loads_and_expands_through_its_plugin(path: Path) -> None:
    sweep = load_sweep(path)
    assert sweep.grid_axes() == WORKLOADS[sweep.workload].grid_axes  # the sweep asks its own plug-in
    plan = expand(sweep)
    assert plan.pairs and {t.workload for t in plan.tasks} == {sweep.workload}
    assert len(plan.tasks) <= task_count(sweep)[0]  # the count is the upper bound, computed without expanding


def test_examples_cover_every_registered_workload() -> None:
    assert {load_sweep(p).workload for p in EXAMPLES} == set(WORKLOADS)


@pytest.mark.parametrize("module", ["moecluster.workloads.registry",
                                    *[f"moecluster.workloads.{name}.plugin" for name in WORKLOADS]])
def test_each_plugin_imports_first_without_a_cycle(module: str) -> None:
    """A plug-in imports the sweep's leaf modules, never one that imports the registry: imported first, in a
    fresh interpreter, it loads (a cycle would stop on a half-initialised module)."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]


class _Toy:
    """A workload the schema has never heard of: it measures nothing and takes only the common keys."""

    name = "toy"
    counts = ("thing", "things", "thg")
    tokens_per_item = 1
    grid_axes = ("accelerator_type",)
    own_report_section = True
    series_over_batch = False
    refines_break_even = False
    setting_prefix = "toy"
    report_rank = 2
    memory_knobs = None
    estimate_refusal = "toys have no shape"
    checked: list[str] = []

    def check_model(self, entry: Any) -> None:
        return None

    def check_sweep(self, sweep: Any) -> None:
        self.checked.append(sweep.name)

    def __getattr__(self, name: str) -> Any:  # the hooks this test does not reach
        raise AttributeError(name)


def test_a_new_workload_needs_no_change_to_the_schema() -> None:
    toy = _Toy()
    registry = {**WORKLOADS, toy.name: toy}
    sweep = SweepFile.model_validate({"name": "t", "workload": "toy"}, context=plugin_context(registry, "toy"))
    assert toy.checked == ["t"] and sweep.grid_axes() == toy.grid_axes
    with pytest.raises(ValidationError, match="is not one of mlp, llm, serve"):
        SweepFile.model_validate({"name": "t", "workload": "toy"}, context=plugin_context(WORKLOADS, "toy"))


def test_a_sweep_is_validated_with_its_workloads() -> None:
    with pytest.raises(TypeError, match="plugin_context"):
        SweepFile.model_validate({"name": "t"})
