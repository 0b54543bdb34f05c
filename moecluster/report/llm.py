"""The report's LLM section: per phase, tokens/J of each MoE against both dense twins over the batch,
the critical batch size marked and the analytic estimate beside each measurement; seed 000's
normalisations in tokens and responses; the rows for the exports (its figure: `plots.llm_efficiency`).

Everything is computed by `aggregate.llm`; this module only formats it.
"""
from __future__ import annotations

from typing import Any

from moecluster.report.aggregate import Aggregate, Estimate
from moecluster.report.aggregate.llm import LlmPoint, LlmSeries, tokens_per_response

from moecluster.report import fmt
from moecluster.report.cells import TableData, mean_over

MATCHES = ("total", "active")
BELOW, DENSE_BOUND, BOTH_BOUND = "", "▲", "▲▲"
EST_NOTE = ("est.: seed 004's analytic MoE/dense ratio (moecluster estimate): tokens/J at the datasheet roofline"
            " and TDP, FLOPs 2 × active parameters per token, bytes the weights a forward reads once (experts hit"
            " under uniform routing) over its tokens; attention and the KV cache are left out, which the measured"
            " roofline fraction counts")


def _tokens_j(s: Any) -> Estimate | None:
    return s.tokens_per_j if s is not None else None


def _roof(s: Any) -> str:
    rl = s.result.roofline if s is not None else None
    return fmt.pct(rl.fraction, 0) if rl is not None else "n/a"


def regime(series: LlmSeries, point: LlmPoint) -> str:
    """▲ at or past the critical batch (a dense matmul is compute-bound), ▲▲ past the MoE's (E/k times it)."""
    c = series.critical
    if c is None:
        return BELOW
    if point.tokens_per_forward >= c.moe_tokens:
        return BOTH_BOUND
    return DENSE_BOUND if point.tokens_per_forward >= c.dense_tokens else BELOW


def _batch(point: LlmPoint, series: LlmSeries) -> str:
    if series.key.phase == "prefill":
        return f"{point.batch_size} × {point.prompt_len}"
    return str(point.batch_size)


def series_title(series: LlmSeries) -> str:
    c = series.critical
    crit = (f"critical batch {c.dense_tokens:,.0f} tokens per forward, the MoE's {c.moe_tokens:,.0f}"
            if c is not None else "critical batch unknown (no datasheet, no measured peaks)")
    return f"{series.key.label()} — {crit}"


def llm_table(agg: Aggregate) -> TableData:
    """tokens/J of MoE and both twins over the batch, their ratios [95 % CI] beside the analytic estimate."""
    t = TableData("LLM: tokens/J of the MoE against its dense twins over the batch, per phase (geometric mean over"
                  f" {mean_over(p.moe for p in agg.pairs)}; ratio = MoE / dense [95 % CI]; est. = analytic)",
                  ["batch", "tokens / forward", "B*", "tok/J MoE", "tok/J dense/total", "tok/J dense/active",
                   "MoE / total", "est.", "MoE / active", "est.", "roofline MoE · total · active"], left=1)
    sources: list[str] = []
    covered = t.covered(r.ci_covers for series in agg.llm for pt in series.points for r in pt.ratios.values())
    for series in agg.llm:
        t.group(series_title(series))
        if series.critical is not None and series.critical.source not in sources:
            sources.append(series.critical.source)
        for pt in series.points:
            note = pt.moe.energy_note or next((s.energy_note for s in pt.twins.values() if s.energy_note), None)
            mark = t.note(note) if note else ""
            est = pt.estimate
            covers = " ".join(filter(None, {covered(r.ci_covers) for r in pt.ratios.values()}))
            cells = [f"{_batch(pt, series)} {covers}".rstrip(), f"{pt.tokens_per_forward:,}", regime(series, pt),
                     fmt.est(_tokens_j(pt.moe)) + mark]
            cells += [fmt.est(_tokens_j(pt.twins.get(m))) + (mark if m in pt.twins else "") for m in MATCHES]
            for m in MATCHES:
                r = pt.ratios.get(m)
                cells.append(fmt.ratio(r.inferences_per_j) if r is not None else "n/a")
                if est is not None and m in est.ratio:
                    cells.append(f"{est.ratio[m]:.3f}")
                else:
                    cells.append("n/a" + (t.note(f"est.: {pt.estimate_note}") if pt.estimate_note else ""))
            cells.append(" · ".join([_roof(pt.moe), *(_roof(pt.twins.get(m)) for m in MATCHES)]))
            t.add_row(*cells)
    t.caption = (f"B*: {DENSE_BOUND} at or past the critical batch (peak FLOP/s ÷ bandwidth × bytes / 2, in tokens per"
                 f" forward: a dense matmul turns compute-bound), {BOTH_BOUND} past the MoE's (E/k times it: each"
                 f" expert sees k/E of the tokens); {'; '.join(sources) or 'no critical batch known'}. {EST_NOTE}."
                 " † the ratio's CI contains 1.")
    return t


def normalisations_table(agg: Aggregate) -> TableData:
    """Seed 000's figures for every LLM task: per token and per response, per total and active parameter."""
    t = TableData("LLM: seed 000's normalisations (J = watt-seconds; a response is one sequence's generated tokens in"
                  " decode, its prompt in prefill)",
                  ["task", "tokens/s", "tokens/J", "J / token", "J / response", "J / response / total param",
                   "J / response / active param", "J / token / active param"])
    covered = t.covered(s.ci_covers for series in agg.llm for pt in series.points
                        for s in (pt.moe, *pt.twins.values()))
    for series in agg.llm:
        t.group(series.key.label())
        for pt in series.points:
            for name, s in [("moe", pt.moe), *((f"dense/{m}", pt.twins[m]) for m in MATCHES if m in pt.twins)]:
                label = f"b{pt.batch_size} p{pt.prompt_len} {name} {covered(s.ci_covers)}".rstrip()
                if s.energy_note:
                    t.add_row(label, fmt.est(s.inferences_per_s), *[f"n/a{t.note(s.energy_note)}"] * 6)
                    continue
                per_response = s.j_per_inference.scale(tokens_per_response(s.spec)) if s.j_per_inference else None
                total, active = s.total_params, s.active_params
                t.add_row(label, fmt.est(s.inferences_per_s), fmt.est(s.tokens_per_j),
                          fmt.est(s.j_per_inference, fmt.sci), fmt.est(per_response, fmt.sci),
                          fmt.est(per_response.scale(1 / total) if per_response and total else None, fmt.sci),
                          fmt.est(per_response.scale(1 / active) if per_response and active else None, fmt.sci),
                          fmt.est(s.j_per_token_per_active_param, fmt.sci))
    return t


def tables(agg: Aggregate) -> list[TableData]:
    return [llm_table(agg), normalisations_table(agg)] if agg.llm else []


def rows(agg: Aggregate) -> list[dict[str, Any]]:
    """One export row per MoE task of an LLM series: its twins, ratios, estimates and the critical batch."""
    out: list[dict[str, Any]] = []
    for series in agg.llm:
        k, c = series.key, series.critical
        for pt in series.points:
            row: dict[str, Any] = {
                "series": k.label(), "model": k.model, "impl": k.impl, "phase": k.phase, "dtype": k.dtype,
                "path": k.path, "gpu_name": k.gpu, "batch_size": pt.batch_size, "prompt_len": pt.prompt_len,
                "gen_tokens": pt.moe.spec.gen_tokens, "tokens_per_forward": pt.tokens_per_forward,
                "critical_batch_tokens": c.dense_tokens if c else None,
                "moe_critical_batch_tokens": c.moe_tokens if c else None, "critical_source": c.source if c else None,
                "moe_task": pt.moe.task_id,
                "moe_tokens_per_j": pt.moe.tokens_per_j.mean if pt.moe.tokens_per_j else None,
                "moe_roofline_fraction": pt.moe.result.roofline.fraction if pt.moe.result.roofline else None,
                "estimate_note": pt.estimate_note, "ci_covers": pt.moe.ci_covers}
            for m in MATCHES:
                twin, ratio = pt.twins.get(m), pt.ratios.get(m)
                e = ratio.inferences_per_j if ratio else None
                row.update({f"dense_{m}_task": twin.task_id if twin else None,
                            f"dense_{m}_tokens_per_j": twin.tokens_per_j.mean if twin and twin.tokens_per_j else None,
                            f"ratio_{m}": e.mean if e else None, f"ratio_{m}_lo": e.lo if e else None,
                            f"ratio_{m}_hi": e.hi if e else None,
                            f"estimate_ratio_{m}": pt.estimate.ratio.get(m) if pt.estimate else None})
            if pt.estimate:
                row.update({f"estimate_tokens_per_j_{name.replace('/', '_')}": v
                            for name, v in pt.estimate.tokens_per_j.items()})
            out.append(row)
    return out
