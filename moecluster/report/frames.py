"""The report's tables as pandas DataFrames: the source of the exports.

Every figure with an interval becomes three columns, `<name>`, `<name>_lo`, `<name>_hi`: the
geometric mean over windows and its 95 % log-scale t interval (empty with a single window).
Units are in the column names; the `inferences_*` columns count the workload's items, which `item`
names: "inference" for the MLP, "token" for an LLM (`head.items`). Energy that was
not measured is an empty cell with `energy_note` = "unavailable: <reason>", never a zero. A task's
warnings (fewer than 3 windows, a roofline above 1, a coarse energy counter, the node's own) are in
`warnings`, "; "-separated; the form its model ran in is in `form_*`, how clearly it won its choice in
`choice_*` (of the least clear replicate: its lead over the runner-up `choice_margin` and the noise
`choice_noise`, relative; whether any replicate chose within noise; `forms_differ`: replicates ran
different forms), its drift in `drift_*`;
`windows` lists every measurement window, with the replicate (process) and run it belongs to. A task or
pair measured by several processes (replicates, or runs `report` pools) is one row whose intervals are
over the replicates (`replicates` says how many); `ci_covers` says in words what each row's intervals
cover ("3 replicates on 2 GPUs of 1 node, 3 windows each", or "3 windows, 1 process").
Total energy is the headline and above idle stands beside it: `energy_views_disagree` says, on a pair
and on both rows of a break-even series, where the two views disagree (`aggregate.views`), empty
where they agree. A break-even interpolated between sizes more than 2× apart names them
(`bracket_lo_params`, `bracket_hi_params`, `gap_factor`, `gap_note`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from moecluster.spec.records import TaskResult, TaskSpec
from moecluster.report.aggregate import Aggregate, BreakEven, Estimate, SeriesKey
from moecluster.report.aggregate.bootstrap import RNG_SEED
from moecluster.report.aggregate.checks import few_windows, form_ran
from moecluster.report.aggregate.pairs import RATIOS
from moecluster.report.aggregate.views import break_even_disagreement, by_series, pair_disagreement
from moecluster.head.items import item_names
from moecluster.head.estimate.measured import compare

from moecluster.report.ep import ep_rows
from moecluster.report.llm import rows as llm_rows
from moecluster.report.serve import rows as serve_rows
from moecluster.report.howran import FORM_KEYS
from moecluster.report.labels import model_name

TABLES = ("tasks", "windows", "normalisations", "pairs", "breakeven", "breakeven_points", "roofline", "ep",
          "cluster_gpus", "cluster", "failed", "llm", "serve")


def _e(row: dict[str, Any], name: str, e: Estimate | None) -> None:
    row[name] = e.mean if e else None
    row[f"{name}_lo"] = e.lo if e else None
    row[f"{name}_hi"] = e.hi if e else None


def _frame(rows: Iterable[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    """Rows as a frame; an empty table keeps its key column so every export has a header."""
    rows = list(rows)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns or [])


def _item(spec: TaskSpec) -> str:
    """What the row's `inferences_*` columns count: "inference" (MLP) or "token" (LLM)."""
    return item_names([spec.workload])[0]


def _joined(values: Iterable[str]) -> str:
    return "; ".join(values)


def _form(form: Mapping[str, str]) -> dict[str, Any]:
    """`form_layout`, `form_kernel`, `form_graph` and every entry in `form` ("key=value; ...")."""
    row: dict[str, Any] = {f"form_{k}": form.get(k) for k in FORM_KEYS}
    row["form"] = _joined(f"{k}={v}" for k, v in form.items())
    return row


def _choice(results: Sequence[TaskResult]) -> dict[str, Any]:
    """`choice_*` of a task's replicates: each one's story ("r2: ..." where several), the least clear one's
    margin, noise and rounds, whether any chose within noise, and whether they ran different forms."""
    named = [(f"r{r.spec.replicate}: " if len(results) > 1 else "", r.choice) for r in results]
    known = [c for _, c in named if c is not None]
    raced = [c for c in known if c.margin is not None]
    least = min(raced, key=lambda c: abs(c.margin or 0.0) - (c.noise or 0.0), default=None)
    return {"choice": _joined(f"{name}{c.describe()}" for name, c in named if c is not None) or None,
            "choice_margin": least.margin if least else None, "choice_noise": least.noise if least else None,
            "choice_rounds": least.rounds if least else None,
            "choice_within_noise": any(c.within_noise for c in known) if known else None,
            "forms_differ": len({form_ran(r) for r in results}) > 1}


def tasks_frame(agg: Aggregate) -> pd.DataFrame:
    rows = []
    for s in agg.tasks:
        r, spec = s.result, s.spec
        row: dict[str, Any] = {
            "task_id": spec.task_id, "pair_id": spec.pair_id, "label": spec.label(), "kind": spec.kind,
            "impl": spec.impl, "match": spec.match, "preset": spec.preset, "model": model_name(spec),
            "workload": spec.workload, "item": _item(spec),
            "dtype": spec.dtype, "batch_size": spec.batch_size, "expert_parallel": spec.expert_parallel,
            "device": spec.device, "phase": spec.phase, "prompt_len": spec.prompt_len,
            "gen_tokens": spec.gen_tokens, "path": spec.path, "architecture": spec.architecture, "node": r.node,
            "gpus": ";".join(dict.fromkeys(f"{g.node}/{g.index}" for p in s.processes for g in p.result.gpus)),
            "gpu_uuids": ";".join(dict.fromkeys(g.uuid for p in s.processes for g in p.result.gpus)),
            "gpu_name": ", ".join(sorted({g.name for g in r.gpus})), "total_params": s.total_params,
            "active_params": s.active_params, "windows": s.n_windows, "replicates": len(s.processes),
            "ci_covers": s.ci_covers, "inferences": s.inferences, "measured_s": s.measured_s}
        _e(row, "inferences_per_s", s.inferences_per_s)
        _e(row, "power_w", s.power_w)
        _e(row, "energy_j", s.energy_j)
        _e(row, "inferences_per_j", s.inferences_per_j)
        _e(row, "energy_above_idle_j", s.energy_above_idle_j)
        _e(row, "inferences_per_j_above_idle", s.inferences_per_j_above_idle)
        row.update(idle_power_w=r.idle_power_w, idle_settle_s=r.idle_settle_s, idle_note=r.idle_note,
                   energy_source=r.energy_source, energy_note=s.energy_note, above_idle_note=s.above_idle_note,
                   device_access=r.device_access, device_wait_s=r.device_wait_s,
                   seed=spec.seed, train_epochs=spec.train_epochs, load=spec.load, zipf_s=spec.zipf_s,
                   compile=spec.compile, cuda_graphs=spec.cuda_graphs)
        row.update(_form(r.form))
        row.update(_choice([p.result for p in s.processes]))
        row.update({f"drift_{k}": v for k, v in r.drift.items()})
        row.update(roofline_fraction=r.roofline.fraction if r.roofline else None,
                   roofline_note=r.roofline.note if r.roofline else None,
                   few_windows=few_windows(s.n_windows) is not None, warnings=_joined(s.warnings))
        rows.append(row)
    return _frame(rows, ["task_id"])


def windows_frame(agg: Aggregate) -> pd.DataFrame:
    """Every measurement window of every task: what it counted and what its energy reading can resolve."""
    rows = [{"task_id": p.task_id, "replicate": p.spec.replicate, "run_id": p.spec.run_id, "window": i,
             "position": w.position, "started_at": w.started_at,
             "duration_s": w.duration_s, "inferences": w.inferences, "energy_j": w.energy_j,
             "energy_resolution_j": w.energy_resolution_j, "aligned": w.aligned, "avg_power_w": w.avg_power_w,
             "max_power_w": w.max_power_w}
            for s in agg.tasks for p in s.processes for i, w in enumerate(p.result.windows)]
    return _frame(rows, ["task_id"])


def normalisations_frame(agg: Aggregate) -> pd.DataFrame:
    rows = []
    for s in agg.tasks:
        row: dict[str, Any] = {"task_id": s.task_id, "label": s.spec.label(), "preset": s.spec.preset,
                               "model": model_name(s.spec), "item": _item(s.spec),
                               "total_params": s.total_params, "active_params": s.active_params}
        _e(row, "j_per_inference", s.j_per_inference)
        _e(row, "j_per_inference_above_idle", s.j_per_inference_above_idle)
        _e(row, "j_per_inference_per_total_param", s.j_per_inference_per_total_param)
        _e(row, "j_per_inference_per_active_param", s.j_per_inference_per_active_param)
        _e(row, "j_per_token_per_active_param", s.j_per_token_per_active_param)
        _e(row, "tokens_per_j", s.tokens_per_j)
        row["energy_note"] = s.energy_note
        row["ci_covers"] = s.ci_covers
        rows.append(row)
    return _frame(rows, ["task_id"])


def pairs_frame(agg: Aggregate) -> pd.DataFrame:
    rows = []
    for p in agg.pairs:
        m, d = p.moe, p.dense
        row: dict[str, Any] = {
            "pair_id": p.pair_id, "moe_task": m.task_id, "dense_task": d.task_id, "impl": m.spec.impl,
            "match": p.match, "preset": m.spec.preset, "model": model_name(m.spec), "item": _item(m.spec),
            "dtype": m.spec.dtype, "batch_size": m.spec.batch_size,
            "expert_parallel": m.spec.expert_parallel, "moe_total_params": m.total_params,
            "moe_active_params": m.active_params, "dense_params": d.total_params}
        for name in RATIOS:
            row[f"moe_{name}"] = getattr(m, name).mean if getattr(m, name) else None
            row[f"dense_{name}"] = getattr(d, name).mean if getattr(d, name) else None
            _e(row, f"ratio_{name}", getattr(p, name))
        row["ci_contains_1"] = ",".join(p.flags)
        row["energy_views_disagree"] = pair_disagreement(p) or ""
        row.update(replicates=len(p.replicates) or 1, ci_covers=p.ci_covers)
        row["energy_note"] = m.energy_note or d.energy_note
        row.update(seed=m.spec.seed, gpu_name=", ".join(sorted({g.name for g in m.result.gpus})),
                   warnings=_joined(p.warnings))
        rows.append(row)
    for ip in agg.incomplete:
        rows.append({"pair_id": ip.pair_id, "energy_note": f"incomplete: {ip.reason}"})
    return _frame(rows, ["pair_id"])


def _be_rows(bes: Iterable[BreakEven], disagree: Mapping[SeriesKey, str]) -> tuple[list[dict[str, Any]],
                                                                                  list[dict[str, Any]]]:
    series, points = [], []
    for b in bes:
        k = b.key
        ci = b.interval
        bracket = b.bracket
        series.append({"series": k.label(), "metric": b.metric, "impl": k.impl, "dtype": k.dtype,
                       "expert_parallel": k.expert_parallel, "batch_size": k.batch_size, "match": k.match,
                       "workload": k.workload, "device": k.device, "load": k.load, "zipf_s": k.zipf_s,
                       "train_epochs": k.train_epochs, "compile": k.compile, "cuda_graphs": k.cuda_graphs,
                       "gpu_name": k.gpu, "sizes": len(b.points), "min_params": b.min_params,
                       "max_params": b.max_params, "break_even_params": b.params,
                       "break_even_params_lo": b.params_lo, "break_even_params_hi": b.params_hi,
                       "ci": b.interval_text, "ci_method": ci.method if ci else None,
                       "ci_resamples": ci.resamples if ci else None, "ci_rng_seed": RNG_SEED if ci else None,
                       "resamples_moe_ahead_everywhere": ci.below if ci else None,
                       "resamples_dense_ahead_everywhere": ci.above if ci else None,
                       "resamples_without_upward_crossing": ci.neither if ci else None,
                       "crossings": ";".join(f"{c.direction}@{c.total_params:.4g}" for c in b.crossings),
                       "bracket_lo_params": bracket[0].total_params if bracket else None,
                       "bracket_hi_params": bracket[1].total_params if bracket else None,
                       "gap_factor": b.gap_factor, "gap_note": b.gap_note,
                       "energy_views_disagree": disagree.get(k, ""), "verdict": b.verdict})
        for p in b.points:
            row: dict[str, Any] = {"series": k.label(), "metric": b.metric, "impl": k.impl, "match": k.match,
                                   "total_params": p.total_params, "pairs": ";".join(p.pair_ids),
                                   "seeds": ";".join(str(s) for s in p.seeds), "ci_method": p.method,
                                   "ci_covers": f"{len(p.pair_ids)} process(es) at this size (seeds, replicates),"
                                                " each over its windows"}
            _e(row, "ratio", p.ratio)
            points.append(row)
    return series, points


def breakeven_frames(agg: Aggregate) -> tuple[pd.DataFrame, pd.DataFrame]:
    disagree = {k: why for k, t, a in by_series(agg.break_evens, agg.break_evens_above_idle)
                if (why := break_even_disagreement(t, a))}
    s1, p1 = _be_rows(agg.break_evens, disagree)
    s2, p2 = _be_rows(agg.break_evens_above_idle, disagree)
    return _frame(s1 + s2, ["series"]), _frame(p1 + p2, ["series"])


def roofline_frame(agg: Aggregate) -> pd.DataFrame:
    rows = []
    for r in agg.results:
        c = compare(r)
        if c is None:
            continue
        rows.append({"task_id": c.task_id, "label": c.label, "gpu_name": c.gpu_name, "gpus": c.gpus,
                     "measured_s_per_inference": c.measured_s_per_inference,
                     "roofline_s_per_inference": c.roofline_s_per_inference,
                     "roofline_fraction": c.roofline_fraction, "bound": c.bound, "peak_source": c.peak_source,
                     "datasheet": c.datasheet, "datasheet_s_per_inference": c.datasheet_s_per_inference,
                     "datasheet_fraction": c.datasheet_fraction,
                     "measured_j_per_inference": c.measured_j_per_inference,
                     "roofline_j_per_inference": c.roofline_j_per_inference,
                     "energy_over_roofline": c.energy_over_roofline, "power_ref_w": c.power_ref_w,
                     "power_ref_source": c.power_ref_source})
    return _frame(rows, ["task_id"])


def ep_frame(agg: Aggregate) -> pd.DataFrame:
    return _frame(ep_rows(agg), ["task_id"])


def cluster_frames(agg: Aggregate) -> tuple[pd.DataFrame, pd.DataFrame]:
    c = agg.cluster
    if c is None:
        return (_frame([], ["node"]),
                _frame([{"source": agg.cluster_note, "inferences": sum(s.inferences for s in agg.tasks)}]))
    gpus = [{"node": g.key.node, "gpu": g.key.gpu, "uuid": g.key.uuid, "name": g.key.name, "ran_tasks": g.ran_tasks,
             "energy_j": g.energy_j} for g in c.gpus]
    chk = c.check
    summary = {"source": agg.cluster_note, "start_s": c.start_s, "end_s": c.end_s, "duration_s": c.duration_s,
               "gpus": len(c.gpus), "task_gpus": sum(g.ran_tasks for g in c.gpus), "energy_j": c.total_j,
               "task_gpus_energy_j": c.task_gpus_j, "idle_gpus_energy_j": c.idle_gpus_j,
               "inferences": c.inferences, "cluster_inferences_per_j": c.inferences_per_j,
               "tasks_energy_j": c.tasks_energy_j, "tasks_inferences_per_j": c.tasks_inferences_per_j,
               "check_prometheus_j": chk.prometheus_j if chk else None, "check_tasks_j": chk.tasks_j if chk else None,
               "check_rel_diff": chk.rel_diff if chk else None, "check_ok": chk.ok if chk else None,
               "check_placement": chk.placement if chk else None, "notes": "; ".join(c.notes)}
    return _frame(gpus, ["node"]), _frame([summary])


def failed_frame(agg: Aggregate) -> pd.DataFrame:
    return _frame(({"task_id": r.spec.task_id, "pair_id": r.spec.pair_id, "label": r.spec.label(), "node": r.node,
                    "error": r.error} for r in agg.failed), ["task_id"])


@dataclass(frozen=True)
class Frames:
    tasks: pd.DataFrame
    windows: pd.DataFrame
    normalisations: pd.DataFrame
    pairs: pd.DataFrame
    breakeven: pd.DataFrame
    breakeven_points: pd.DataFrame
    roofline: pd.DataFrame
    ep: pd.DataFrame
    cluster_gpus: pd.DataFrame
    cluster: pd.DataFrame
    failed: pd.DataFrame
    llm: pd.DataFrame  # LLM series over the batch: tokens/J of MoE and twins, ratios, estimates, critical batch
    serve: pd.DataFrame  # served models: each side's figures, latencies and MoE/dense ratios

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [(name, getattr(self, name)) for name in TABLES]


def frames(agg: Aggregate) -> Frames:
    be, be_points = breakeven_frames(agg)
    cg, cs = cluster_frames(agg)
    return Frames(tasks=tasks_frame(agg), windows=windows_frame(agg), normalisations=normalisations_frame(agg),
                  pairs=pairs_frame(agg), breakeven=be, breakeven_points=be_points, roofline=roofline_frame(agg),
                  ep=ep_frame(agg), cluster_gpus=cg, cluster=cs, failed=failed_frame(agg),
                  llm=_frame(llm_rows(agg), ["series"]), serve=_frame(serve_rows(agg), ["pair", "task"]))
