"""The report's serve section (`workload: serve`): per served pair and load (a concurrency, or an open loop's
request rate), the MoE beside each dense comparison and their ratio — output tokens/J, J/response,
responses/s, output and input tokens/s, tokens per response, the batch the server ran; for an open loop the
rate that arrived and the queue at the windows' close, and a side that fell behind its offered load marked
overloaded, its comparison's ratios withheld — then latency percentiles and the seed's normalisations.

Everything is computed by `aggregate.serve`; this module only formats it (and gives the export's `serve` rows).
"""
from __future__ import annotations

from typing import Any

from moecluster.report.aggregate import Aggregate
from moecluster.report.aggregate.serve import LATENCIES, QUANTILES, ServeComparison, ServeSide, serve_comparisons

from moecluster.report import fmt
from moecluster.report.cells import TableData

THROUGHPUT = ("output_tokens_per_j", "j_per_response", "responses_per_s", "output_tokens_per_s", "input_tokens_per_s",
              "tokens_per_response")
NORMALISATIONS = ("ws_per_response_per_total_param", "ws_per_response_per_active_param",
                  "ws_per_token_per_active_param")
LATENCY_NAMES = {"ttft_s": "TTFT", "tpot_s": "TPOT", "itl_s": "ITL"}


def _heading(c: ServeComparison) -> str:
    spec = c.pair.moe.spec
    served = spec.serve
    level = served.load_label() if served is not None else ""
    match = c.pair.dense.spec.match or ""
    return f"{spec.pair_id}: {level} · MoE {c.moe.stats.spec.model_name} vs dense {c.dense.stats.spec.model_name}" \
           f" ({match})"


def _side_name(side: ServeSide) -> str:
    return f"{side.stats.spec.kind} {side.stats.spec.model_name}" + (" (overloaded)" if side.overload else "")


def _open_loop(side: ServeSide) -> str:
    return f"{fmt.num(side.arrivals_per_s, 3)} / {fmt.num(side.queued_close, 3)}"


def _batch(side: ServeSide) -> str:
    server = fmt.num(side.running_batch, 3) if side.running_batch is not None else "n/a"
    return f"{server} / {fmt.num(side.in_flight, 3)}"


def throughput_table(comparisons: list[ServeComparison]) -> TableData:
    open_loop = any(side.arrivals_per_s is not None for c in comparisons for side in (c.moe, c.dense))
    t = TableData("Served models: MoE against dense under load (ratio: MoE / dense; † interval contains 1)",
                  ["side", "output tokens / J", "J / response", "responses / s", "output tokens / s",
                   "input tokens / s", "tokens / response", "batch: server / in flight"]
                  + (["arriving / s · queued at close"] if open_loop else []))
    notes: list[str] = []
    for c in comparisons:
        t.group(_heading(c))
        for side in (c.moe, c.dense):
            t.add_row(_side_name(side), *(fmt.est(side.figures[n]) for n in THROUGHPUT), _batch(side),
                      *([_open_loop(side)] if open_loop else []))
            if side.server_note:
                notes.append(f"{side.stats.task_id}: {side.server_note}")
            if side.overload:
                notes.append(f"{side.stats.task_id}: {side.overload}")
            notes.append(f"{side.stats.task_id}: token counts from {side.token_counts}")
        if c.overloaded:
            t.add_row("ratio MoE / dense", *["overloaded: none"] * len(THROUGHPUT), "", *([""] if open_loop else []),
                      style="bold")
            continue
        t.add_row("ratio MoE / dense", *(fmt.ratio(c.ratios[n]) for n in THROUGHPUT), "",
                  *([""] if open_loop else []), style="bold")
    covers = list(dict.fromkeys(c.pair.ci_covers for c in comparisons))
    t.covers = covers[0] if len(covers) == 1 else ""
    t.footnotes += list(dict.fromkeys(notes))
    t.footnotes.append("batch: the server's own running requests (its /metrics, n/a where it exports none) / the"
                       " client's requests in flight, averaged over the windows")
    if open_loop:
        t.footnotes.append("open loop: requests arriving per second in the windows (the seeded schedule's, the same"
                           " on every side) · requests arrived and not yet answered at a window's close, averaged;"
                           " a side that answered fewer than its arrivals beyond the tolerance is overloaded, and"
                           " its comparison shows no ratio")
    return t


def latency_table(comparisons: list[ServeComparison]) -> TableData:
    cols = [f"{LATENCY_NAMES[lat]} {q}" for lat in LATENCIES for q in QUANTILES]
    t = TableData("Served models: latency (TTFT: time to first token; TPOT: per output token after the first;"
                  " ITL: between streamed tokens), mean over windows", ["side", *cols])
    for c in comparisons:
        t.group(_heading(c))
        for side in (c.moe, c.dense):
            t.add_row(_side_name(side), *(fmt.seconds(side.latency_s[f"{lat}.{q}"]) for lat in LATENCIES
                                          for q in QUANTILES))
    return t


def normalisations_table(comparisons: list[ServeComparison]) -> TableData:
    t = TableData("Served models: seed 000's normalisations (watt-seconds = J; parameters as the sweep gave them)",
                  ["side", "Ws / response / total param", "Ws / response / active param", "Ws / token / active param",
                   "params total / active"])
    for c in comparisons:
        t.group(_heading(c))
        for side in (c.moe, c.dense):
            s = side.stats
            t.add_row(_side_name(side), *(fmt.est(side.figures[n], fmt.sci) for n in NORMALISATIONS),
                      f"{fmt.params(s.total_params)} / {fmt.params(s.active_params)}")
        t.add_row("ratio MoE / dense", *(fmt.ratio(c.ratios[n]) for n in NORMALISATIONS), "", style="bold")
    return t


def side_tables(sides: list[ServeSide]) -> list[TableData]:
    """The serve tables for served models measured alone (`bench --workload serve` with one server): each
    side's figures, latencies and normalisations, without a comparison."""
    open_loop = any(side.arrivals_per_s is not None for side in sides)
    t = TableData("Served model under load", ["side", "output tokens / J", "J / response", "responses / s",
                                              "output tokens / s", "input tokens / s", "tokens / response",
                                              "batch: server / in flight"]
                  + (["arriving / s · queued at close"] if open_loop else []))
    lat = TableData("Served model: latency, mean over windows",
                    ["side", *(f"{LATENCY_NAMES[x]} {q}" for x in LATENCIES for q in QUANTILES)])
    norm = TableData("Served model: seed 000's normalisations", ["side", "Ws / response / total param",
                                                                 "Ws / response / active param",
                                                                 "Ws / token / active param"])
    for side in sides:
        spec = side.stats.spec
        t.group(f"{spec.task_id}: {spec.serve.load_label() if spec.serve else ''}")
        t.add_row(_side_name(side), *(fmt.est(side.figures[n]) for n in THROUGHPUT), _batch(side),
                  *([_open_loop(side)] if open_loop else []))
        t.footnotes += [f"{side.stats.task_id}: {n}" for n in (side.server_note, side.overload) if n]
        t.footnotes.append(f"{side.stats.task_id}: token counts from {side.token_counts}")
        lat.add_row(_side_name(side), *(fmt.seconds(side.latency_s[f"{x}.{q}"]) for x in LATENCIES for q in QUANTILES))
        norm.add_row(_side_name(side), *(fmt.est(side.figures[n], fmt.sci) for n in NORMALISATIONS))
    return [t, lat, norm]


def tables(agg: Aggregate) -> list[TableData]:
    """The serve section's tables ([] where the run served nothing)."""
    comparisons = serve_comparisons(agg.pairs)
    if not comparisons:
        return []
    return [throughput_table(comparisons), latency_table(comparisons), normalisations_table(comparisons)]


def rows(agg: Aggregate) -> list[dict[str, Any]]:
    """One export row per side of every served comparison (the MoE's row repeated per dense comparison, each
    with its ratios): every figure's mean and interval, the latency percentiles, the batch and the notes."""
    out: list[dict[str, Any]] = []
    for c in serve_comparisons(agg.pairs):
        for side in (c.moe, c.dense):
            spec = side.stats.spec
            row: dict[str, Any] = {
                "pair": c.pair.pair_id, "moe_task": c.moe.stats.task_id, "dense_task": c.dense.stats.task_id,
                "match": c.pair.dense.spec.match, "task": spec.task_id, "kind": spec.kind, "model": spec.model_name,
                "load_axis": ("request_rate" if spec.serve and spec.serve.request_rate is not None
                              else "concurrency"),
                "concurrency": spec.serve.concurrency if spec.serve and spec.serve.request_rate is None else None,
                "request_rate": spec.serve.request_rate if spec.serve else None,
                "burstiness": spec.serve.burstiness if spec.serve and spec.serve.request_rate is not None else None,
                "max_in_flight": spec.serve.max_in_flight if spec.serve else None,
                "arrival_seed": spec.serve.arrival_seed if spec.serve and spec.serve.request_rate is not None
                else None,
                "arrivals_per_s": side.arrivals_per_s, "queued_close": side.queued_close,
                "overloaded": bool(side.overload), "overload": side.overload,
                "params_total": side.stats.total_params, "params_active": side.stats.active_params,
                "running_batch": side.running_batch, "in_flight": side.in_flight,
                "token_counts": side.token_counts, "server_note": side.server_note, "ci_covers": c.pair.ci_covers}
            for name in (*THROUGHPUT, *NORMALISATIONS):
                e, r = side.figures[name], c.ratios[name]
                row.update({name: e.mean if e else None, f"{name}_lo": e.lo if e else None,
                            f"{name}_hi": e.hi if e else None, f"ratio_{name}": r.mean if r else None,
                            f"ratio_{name}_lo": r.lo if r else None, f"ratio_{name}_hi": r.hi if r else None})
            row.update({key.replace(".", "_"): v for key, v in side.latency_s.items()})
            out.append(row)
    return out
