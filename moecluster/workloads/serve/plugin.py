"""Served models (`workload: serve`), head side: sweep checks, expansion, labels.

Its sweep section is `head.sweep.serve_schema`, its node side (starting a server, the load,
the windows) the rest of this folder with its engine in `measure.serve`, its report section `report.serve`.
"""
from __future__ import annotations

from pathlib import Path

from moecluster.head.estimate.models import ModelShape
from moecluster.head.sweep.pairs import Plan
from moecluster.head.sweep.schema import SERVE_AXES, FieldProblem, ModelEntry, SweepFile
from moecluster.spec.records import TaskSpec

from moecluster.workloads.base import ItemNames
from moecluster.workloads.serve.expand import expand_serve, serve_task_count, with_log_dir

#: The top-level sweep keys a serve sweep takes (its served models, prompts and load are under `serve:`).
OWN_KEYS = {"name", "workload", "serve", "duration_s", "warmup_s", "repeats", "replicates", "device", "meter",
            "sample_power", "accelerator_type", "placement_strategy"}
#: Why `moecluster estimate` cannot take a serve sweep.
NO_SHAPE = ("workload serve: the analytic estimate needs each model's shape (experts, widths), which a served"
            " model's sweep does not give (only its parameter counts)")


class ServeWorkload:
    """A served MoE against served dense models under a request load; an item is an output token."""

    name = "serve"
    counts: ItemNames = ("token", "tokens", "tok")
    tokens_per_item = 1
    grid_axes = SERVE_AXES
    own_report_section = True
    series_over_batch = False
    refines_break_even = False
    setting_prefix = "serve"
    report_rank = 1
    memory_knobs: str | None = None  # a served model's memory is its server's
    estimate_refusal: str | None = NO_SHAPE

    def check_model(self, entry: ModelEntry) -> None:
        return None  # a serve sweep names no `models` (its served models are under `serve.pairs`)

    def check_sweep(self, sweep: SweepFile) -> None:
        """Its `serve` section given, and no key of the other workloads set."""
        if sweep.serve is None:
            raise FieldProblem(("serve",), "workload serve needs a serve section (pairs of served models, prompts,"
                               " concurrency or request_rate)")
        if sweep.models:  # (a resolved sweep, dumped, lists an empty `models`)
            raise FieldProblem(("models",), "workload serve names its served models under serve.pairs")
        sweep.only_keys(OWN_KEYS, "serve:, duration_s, warmup_s, repeats, replicates, device, meter, accelerator_type")

    def varying(self, sweep: SweepFile) -> list[str]:
        return [sweep.serve.load_axis] if sweep.serve is not None and len(sweep.serve.load_levels()) > 1 else []

    def task_count(self, sweep: SweepFile) -> tuple[int, str]:
        return serve_task_count(sweep)

    def expand(self, sweep: SweepFile, run_id: str) -> Plan:
        return expand_serve(sweep, run_id)

    def with_run_dir(self, plan: Plan, run_dir: Path) -> Plan:
        return with_log_dir(plan, run_dir)

    def batch_bytes(self, spec: TaskSpec) -> tuple[float, str]:
        return 0.0, ""

    def analytic_shape(self, spec: TaskSpec, name: str) -> ModelShape:
        raise TypeError(NO_SHAPE)

    def ep_comm_shape(self, spec: TaskSpec) -> ModelShape | None:
        return None

    def setting_parts(self, spec: TaskSpec, parts: list[str]) -> list[str]:
        return parts

    def model_label(self, spec: TaskSpec) -> str | None:
        return None

    def describe(self, spec: TaskSpec) -> str:
        """The served model, its server and its load."""
        if spec.serve is None:
            return spec.model_name or spec.pair_id
        how = f"at {spec.serve.url}" if spec.serve.url else "started"
        return f"{spec.serve.name} ({how}) {spec.serve.load_id}"
