"""The report's serve section (`workload: serve`): per served pair and concurrency, the MoE beside each
dense comparison and their ratio — output tokens/J, J/response, responses/s, output and input tokens/s,
tokens per response, the batch the server ran — then latency percentiles and the seed's normalisations.

Everything is computed by `aggregate.serve`; this module only formats it (and gives the export's `serve` rows).
"""
from __future__ import annotations

from typing import Any

from moecluster.orchestrator.aggregate import Aggregate
from moecluster.orchestrator.aggregate.serve import LATENCIES, QUANTILES, ServeComparison, ServeSide, serve_comparisons

from . import fmt
from .cells import TableData

THROUGHPUT = ("output_tokens_per_j", "j_per_response", "responses_per_s", "output_tokens_per_s", "input_tokens_per_s",
              "tokens_per_response")
NORMALISATIONS = ("ws_per_response_per_total_param", "ws_per_response_per_active_param",
                  "ws_per_token_per_active_param")
LATENCY_NAMES = {"ttft_s": "TTFT", "tpot_s": "TPOT", "itl_s": "ITL"}


def _heading(c: ServeComparison) -> str:
    spec = c.pair.moe.spec
    served = spec.serve
    level = f"concurrency {served.concurrency}" if served is not None else ""
    match = c.pair.dense.spec.match or ""
    return f"{spec.pair_id}: {level} · MoE {c.moe.stats.spec.model_name} vs dense {c.dense.stats.spec.model_name}" \
           f" ({match})"


def _side_name(side: ServeSide) -> str:
    return f"{side.stats.spec.kind} {side.stats.spec.model_name}"


def _batch(side: ServeSide) -> str:
    server = fmt.num(side.running_batch, 3) if side.running_batch is not None else "n/a"
    return f"{server} / {fmt.num(side.in_flight, 3)}"


def throughput_table(comparisons: list[ServeComparison]) -> TableData:
    t = TableData("Served models: MoE against dense under load (ratio: MoE / dense; † interval contains 1)",
                  ["side", "output tokens / J", "J / response", "responses / s", "output tokens / s",
                   "input tokens / s", "tokens / response", "batch: server / in flight"])
    notes: list[str] = []
    for c in comparisons:
        t.group(_heading(c))
        for side in (c.moe, c.dense):
            t.add_row(_side_name(side), *(fmt.est(side.figures[n]) for n in THROUGHPUT), _batch(side))
            if side.server_note:
                notes.append(f"{side.stats.task_id}: {side.server_note}")
            notes.append(f"{side.stats.task_id}: token counts from {side.token_counts}")
        t.add_row("ratio MoE / dense", *(fmt.ratio(c.ratios[n]) for n in THROUGHPUT), "", style="bold")
    covers = list(dict.fromkeys(c.pair.ci_covers for c in comparisons))
    t.covers = covers[0] if len(covers) == 1 else ""
    t.footnotes += list(dict.fromkeys(notes))
    t.footnotes.append("batch: the server's own running requests (its /metrics, n/a where it exports none) / the"
                       " client's requests in flight, averaged over the windows")
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
                "concurrency": spec.serve.concurrency if spec.serve else None,
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
