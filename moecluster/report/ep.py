"""The report's expert-parallel section: per MoE configuration and degree, measured beside predicted.

One group per MoE configuration (shape, implementation and setting, the degree apart), one row
per degree, `EP 1` first: inferences/s and inferences/J with their 95 % intervals; against EP 1
the speedup and the inferences/J ratio, where both were run; then the gang's communication as
measured in its own timed pass — the share of the step's time and of its energy spent in
dispatch + combine, the dispatch's bandwidth as a fraction of the raw all-to-all at the same
bytes, the all-to-all bytes per token — and beside them seed 004's prediction (bytes per token,
and the time share at the datasheet link bandwidth with the compute at its roofline), labelled
as predicted. A task without measured phases shows no communication figure at all: neither a
measurement it does not have nor a prediction with nothing to test it against.
"""
from __future__ import annotations

from typing import Any

from moecluster.report.aggregate import Aggregate, Estimate
from moecluster.report.aggregate.ep import EpComm, EpPoint, config_key, ep_left_out
from moecluster.head.estimate.ep import PredictedComm, predicted_comm

from moecluster.report import fmt
from moecluster.report.labels import model_name, setting
from moecluster.report.cells import TableData

PREDICTED = "predicted (seed 004)"
NO_COMM = "—"  # EP 1: nothing is communicated
# the dispatch's bus bandwidth (bytes each rank sends to the other ranks / dispatch time) over the raw
# all-to-all's (nccl-tests' busbw, send buffer × (n − 1)/n / time) at the same bytes: at equal bytes,
# raw all-to-all time / dispatch time; 100 % is a dispatch as fast as the bare exchange
BUSBW_COLUMN = "dispatch busbw / raw all-to-all busbw"
COLUMNS = ["EP degree", "GPUs", "inferences/s", "inferences/J", "speedup vs EP 1", "inf/J vs EP 1",
           "comm share of time", "comm share of energy", BUSBW_COLUMN, "all-to-all bytes/token",
           f"comm share of time, {PREDICTED}", f"all-to-all bytes/token, {PREDICTED}"]
CAPTION = (
    "Communication figures are measured by each gang: dispatch + combine time over the step's time (timed pass); "
    "their energy per step (each phase's own where measured, else the raw all-to-all's per call at its size, "
    "measured in its own window) over the window energy per step; the dispatch's bus bandwidth (bytes each rank "
    "sends to the others / dispatch time) over the raw all-to-all's bus bandwidth as nccl-tests defines it (send "
    "buffer × (n − 1)/n / time), measured in the same task at the same size: raw time / dispatch time at equal "
    "bytes. Seed 004's prediction counts "
    "k × (input + output width) × bytes × (d − 1)/d per token and times it at the GPUs' datasheet link "
    "bandwidth with the compute at its roofline, latency ignored (n/a where the GPUs have no datasheet).")


def shown(agg: Aggregate) -> bool:
    """Whether the report has an expert-parallel section (points, or tasks left out of them)."""
    return bool(agg.ep) or bool(ep_left_out(agg.tasks))


def configuration_title(p: EpPoint) -> str:
    """The group heading: model, implementation and the setting without its EP degree."""
    spec = p.stats.spec
    rest = [part for part in setting(spec).split(" · ") if not part.startswith("EP ")]
    return " · ".join([model_name(spec), f"MoE {spec.impl}", *rest])


def _gpus(p: EpPoint) -> str:
    names = sorted({g.name for g in p.stats.result.gpus})
    return f"{len(p.stats.result.gpus)} × {', '.join(names)}" if names else p.stats.spec.device


def _prediction(p: EpPoint) -> PredictedComm | None:
    """Seed 004's figures, only beside a measured communication."""
    return predicted_comm(p.stats.result) if p.comm is not None else None


def _versus(p: EpPoint, ratio: Estimate | None) -> str:
    """A ratio against EP 1: the ratio, "—" at EP 1 itself, or why there is none."""
    if p.degree == 1:
        return NO_COMM
    return fmt.ratio(ratio) if p.baseline is not None else "no EP 1 task"


def _energy_share(c: EpComm) -> str:
    """Dispatch + combine's share of the step's energy; the dispatch's alone as a lower bound where
    only its energy was measured; else "not measured"."""
    if c.energy_share is not None:
        return fmt.pct(c.energy_share)
    if c.dispatch_energy_share is not None:
        return f"≥ {fmt.pct(c.dispatch_energy_share)} (dispatch only)"
    return "not measured"


def _comm_cells(p: EpPoint) -> list[str]:
    if p.degree == 1:
        return [NO_COMM] * 6
    c, pred = p.comm, _prediction(p)
    if c is None:
        return ["not measured"] * 4 + [NO_COMM] * 2
    return [fmt.pct(c.time_share), _energy_share(c), fmt.pct(c.dispatch_bandwidth_fraction),
            fmt.si(c.bytes_per_token, "B"), fmt.pct(pred.time_share if pred else None),
            fmt.si(pred.bytes_per_token if pred else None, "B")]


def ep_table(agg: Aggregate) -> TableData:
    """The expert-parallel table: one group per MoE configuration, one row per degree."""
    t = TableData("Expert parallelism: per MoE configuration and degree, measured and predicted", list(COLUMNS),
                  left=1, text_columns=(1,))
    t.caption = CAPTION
    current: tuple[object, ...] | None = None
    covered = t.covered(p.stats.ci_covers for p in agg.ep)
    for p in agg.ep:
        key = config_key(p.stats)
        if key != current:
            t.group(configuration_title(p))
            current = key
        t.add_row(f"EP {p.degree} {covered(p.stats.ci_covers)}".rstrip(), _gpus(p), fmt.est(p.stats.inferences_per_s),
                  fmt.est(p.stats.inferences_per_j), _versus(p, p.speedup), _versus(p, p.energy_ratio), *_comm_cells(p))
    left_out = ep_left_out(agg.tasks)
    if left_out:
        t.caption += (f" Left out: {len(left_out)} task(s) at a degree above 1 recorded before gangs were measured"
                      f" (world size 1: every rank ran the whole MoE alone), e.g. {left_out[0].task_id}.")
    return t


def _estimate(row: dict[str, Any], name: str, e: Estimate | None) -> None:
    row[name] = e.mean if e else None
    row[f"{name}_lo"] = e.lo if e else None
    row[f"{name}_hi"] = e.hi if e else None


def ep_rows(agg: Aggregate) -> list[dict[str, Any]]:
    """The table's figures as plain values, one dict per point (for CSV, Parquet and JSON)."""
    rows = []
    for p in agg.ep:
        spec = p.stats.spec
        row: dict[str, Any] = {"task_id": p.stats.task_id, "impl": spec.impl, "preset": spec.preset,
                               "model": model_name(spec),
                               "dtype": spec.dtype, "batch_size": spec.batch_size, "expert_parallel": p.degree,
                               "world_size": p.stats.result.world_size,
                               "baseline_task": p.baseline.task_id if p.baseline else None,
                               "ci_covers": p.stats.ci_covers}
        _estimate(row, "inferences_per_s", p.stats.inferences_per_s)
        _estimate(row, "inferences_per_j", p.stats.inferences_per_j)
        _estimate(row, "speedup", p.speedup)
        _estimate(row, "scaling_loss", p.scaling_loss)
        _estimate(row, "energy_ratio", p.energy_ratio)
        c, pred = p.comm, _prediction(p)
        row.update(comm_time_share=c.time_share if c else None, comm_energy_share=c.energy_share if c else None,
                   dispatch_energy_share=c.dispatch_energy_share if c else None,
                   dispatch_bandwidth_fraction=c.dispatch_bandwidth_fraction if c else None,
                   all_to_all_bytes_per_token=c.bytes_per_token if c else None,
                   predicted_seed004_comm_time_share=pred.time_share if pred else None,
                   predicted_seed004_all_to_all_bytes_per_token=pred.bytes_per_token if pred else None)
        rows.append(row)
    return rows
