"""What the head asks of a workload: the `WorkloadPlugin` protocol, and helpers its plug-ins share.

Every property that differs between workloads is a member here (what its throughput counts, whether
its pairs form series over model size, what to lower when a task does not fit, ...), so that head
code reads the member instead of testing the workload's name. A member is data where the head only
needs to know (`counts`, `own_report_section`) and a method where the workload computes something
(its expansion, its memory beside the weights, its label in a table).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: the plug-ins import these at run time, this module does not
    from moecluster.head.estimate.models import ModelShape
    from moecluster.head.sweep.pairs import Plan
    from moecluster.head.sweep.schema import ModelEntry, SweepFile
    from moecluster.spec.records import TaskSpec

#: What a workload's `inferences_*` figures count: (singular, plural, short), e.g. ("token", "tokens", "tok").
ItemNames = tuple[str, str, str]
GIB = 2**30
#: Bytes per element of the sweep's dtypes (the benchmark core's three).
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def gib_text(n_bytes: float) -> str:
    """`174 GiB`, or `3.05e+13 GiB` for a figure too long to read digit by digit."""
    gib = n_bytes / GIB
    return f"{gib:,.0f} GiB" if gib < 1e7 else f"{gib:.3g} GiB"


@runtime_checkable
class WorkloadPlugin(Protocol):
    """One workload's head-side parts. `registry.WORKLOADS` maps each `name` to its plug-in."""

    @property
    def name(self) -> str:
        """The sweep's `workload:` value and `TaskSpec.workload`."""

    @property
    def counts(self) -> ItemNames:
        """What one item of its throughput is (an MLP inference, a token, a served output token)."""

    @property
    def tokens_per_item(self) -> int:
        """Tokens one item holds (the seed's per-token normalisations divide by it)."""

    @property
    def grid_axes(self) -> tuple[str, ...]:
        """The sweep keys that form its grid, in pair-id order."""

    @property
    def own_report_section(self) -> bool:
        """Its pairs and tasks have a report section of their own; False: the seed's normalisations and
        break-even tables (the MLP's) take them."""

    @property
    def series_over_batch(self) -> bool:
        """Its pairs form series over the batch (its own figure and tables), not over model size, so the
        efficiency figure and break-even leave them out."""

    @property
    def refines_break_even(self) -> bool:
        """`refine` may plan models between the sizes that bracket one of its break-evens."""

    @property
    def setting_prefix(self) -> str:
        """The word before a setting's name in the report's tables ("" for the default workload)."""

    @property
    def report_rank(self) -> int:
        """Where its settings come in the report's reading order (lower first)."""

    @property
    def memory_knobs(self) -> str | None:
        """What to lower when a task cannot fit (named in the message); None: not checked at load (a
        served model's memory is its server's business)."""

    @property
    def estimate_refusal(self) -> str | None:
        """Why `moecluster estimate` cannot take its sweeps; None where it can."""

    def check_model(self, entry: ModelEntry) -> None:
        """Raise `schema.FieldProblem` naming the key where a `models` entry is not one of its models."""

    def check_sweep(self, sweep: SweepFile) -> None:
        """Raise `schema.FieldProblem` naming the key where the sweep's keys do not fit this workload."""

    def varying(self, sweep: SweepFile) -> list[str]:
        """The grid axes with more than one value, in `grid_axes` order."""

    def task_count(self, sweep: SweepFile) -> tuple[int, str]:
        """The tasks its expansion builds at most (before replicates), and the product that gives them."""

    def expand(self, sweep: SweepFile, run_id: str) -> Plan:
        """Every pair of the sweep, in file order, one replicate (the head adds replicates)."""

    def with_run_dir(self, plan: Plan, run_dir: Path) -> Plan:
        """The plan as it runs under `run_dir` (e.g. where its servers' logs go)."""

    def batch_bytes(self, spec: TaskSpec) -> tuple[float, str]:
        """Bytes a task needs beside its weights, and what they are (for the message)."""

    def analytic_shape(self, spec: TaskSpec, name: str) -> ModelShape:
        """The task's model for the analytic estimate (`estimate`); ShapeError, TypeError where unknown."""

    def ep_comm_shape(self, spec: TaskSpec) -> ModelShape | None:
        """The MoE task's model whose all-to-all the expert-parallel prediction counts; None where the
        workload has no expert-parallel prediction."""

    def setting_parts(self, spec: TaskSpec, parts: list[str]) -> list[str]:
        """The words of a task's setting (dtype, batch, EP degree, device, knobs) as this workload says them."""

    def model_label(self, spec: TaskSpec) -> str | None:
        """A short name of the task's model from its shape (None: the report uses the pair id)."""

    def describe(self, spec: TaskSpec) -> str:
        """The task's model in one line for the dry-run table."""
