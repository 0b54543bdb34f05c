"""Served pairs (`workload: serve`): what each side served per joule and per second, the seed's
normalisations per response, latency percentiles, and MoE/dense ratios with intervals. Computes; never
measures.

Every figure is first taken per window (a window's energy, its output tokens as `Window.inferences`, and
what the load generator saw in it, `ServeWindow`), then summarised per process with `log_mean_ci` (a
geometric mean with its t-interval over the windows), then pooled over replicates with `replicate_ci`
(t over processes), and MoE over dense with `ratio_ci` — the same steps as every other workload's figures
(`tasks`, `pairs`, `replicates`). The tokens/J ratio itself is the pair's own (`PairRatio.inferences_per_j`).
Latency percentiles are means over the windows of every process (no interval: a percentile of a few hundred
responses is itself the summary). A figure a window cannot give (no energy, no response) is left out, never 0.
An open-loop side also carries its arrival rate in the windows, the requests queued at their close and the
node's overload note; a comparison where a side fell behind its offered load says so (`overloaded`), and its
ratios are left out: they would compare a saturated server with one at the load asked for.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from moecluster.spec.records import ServeWindow, TaskResult, Window

from moecluster.report.aggregate.pairs import PairRatio
from moecluster.report.aggregate.stats import Estimate, log_mean_ci, ratio_ci, replicate_ci
from moecluster.report.aggregate.tasks import TaskStats

Figure = Callable[[Window, ServeWindow, TaskResult], float | None]


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _params(r: TaskResult, active: bool) -> int | None:
    if r.params is None:
        return None
    return r.params.active_per_token if active else r.params.total


#: name -> (what it is, per-window figure); positive figures only (a missing one is None)
FIGURES: dict[str, tuple[str, Figure]] = {
    "output_tokens_per_j": ("output tokens / J", lambda w, s, r: _div(s.output_tokens, w.energy_j)),
    "j_per_response": ("J / response", lambda w, s, r: _div(w.energy_j, s.responses)),
    "responses_per_s": ("responses / s", lambda w, s, r: _div(s.responses, w.duration_s)),
    "output_tokens_per_s": ("output tokens / s", lambda w, s, r: _div(s.output_tokens, w.duration_s)),
    "input_tokens_per_s": ("input tokens / s", lambda w, s, r: _div(s.input_tokens, w.duration_s)),
    "tokens_per_response": ("output tokens / response", lambda w, s, r: _div(s.output_tokens, s.responses)),
    "ws_per_response_per_total_param": (
        "Ws / response / total param", lambda w, s, r: _div(_div(w.energy_j, s.responses), _params(r, False))),
    "ws_per_response_per_active_param": (
        "Ws / response / active param", lambda w, s, r: _div(_div(w.energy_j, s.responses), _params(r, True))),
    "ws_per_token_per_active_param": (
        "Ws / token / active param", lambda w, s, r: _div(_div(w.energy_j, s.output_tokens), _params(r, True))),
}
LATENCIES = ("ttft_s", "tpot_s", "itl_s")
QUANTILES = ("p50", "p90", "p99")


@dataclass(frozen=True)
class ServeSide:
    """One served model of a pair: its figures (pooled over replicates) and latencies."""

    stats: TaskStats
    figures: Mapping[str, Estimate | None]
    latency_s: Mapping[str, float | None]  # "ttft_s.p50" -> seconds
    running_batch: float | None  # the server's own, averaged; None where it exports none
    in_flight: float | None  # the client's requests in flight, averaged
    token_counts: str
    server_note: str
    arrivals_per_s: float | None = None  # open loop: requests arriving in the windows, per second
    queued_close: float | None = None  # open loop: requests queued or in flight at a window's close, averaged
    overload: str = ""  # open loop: the node's note where the server fell behind (first process that did)


@dataclass(frozen=True)
class ServeComparison:
    """An MoE served model against one dense comparison, with MoE/dense ratios of every figure."""

    pair: PairRatio
    moe: ServeSide
    dense: ServeSide
    ratios: Mapping[str, Estimate | None]

    @property
    def overloaded(self) -> bool:
        """Whether a side fell behind its offered open-loop load (its ratios are then left out)."""
        return bool(self.moe.overload or self.dense.overload)


def _process_estimate(r: TaskResult, figure: Figure) -> Estimate | None:
    if r.serve is None:
        return None
    values = [figure(w, s, r) for w, s in zip(r.windows, r.serve.windows)]
    kept = [v for v in values if v is not None and v > 0]
    return log_mean_ci(kept) if kept and len(kept) == len(values) else None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def serve_side(stats: TaskStats) -> ServeSide:
    """A served model's figures: per process over its windows, pooled over processes."""
    results = [p.result for p in stats.processes]
    figures: dict[str, Estimate | None] = {}
    for name, (_, figure) in FIGURES.items():
        per = [_process_estimate(r, figure) for r in results]
        figures[name] = replicate_ci([e for e in per if e is not None]) if per and all(per) else None
    windows = [w for r in results if r.serve is not None for w in r.serve.windows]
    latency = {f"{lat}.{q}": _mean([getattr(getattr(w, lat), q) for w in windows]) for lat in LATENCIES
               for q in QUANTILES}
    first = results[0].serve
    arrivals = [_div(s.arrivals, w.duration_s) for r in results if r.serve is not None
                for w, s in zip(r.windows, r.serve.windows) if s.arrivals is not None]
    return ServeSide(stats=stats, figures=figures, latency_s=latency,
                     running_batch=_mean([w.running_batch for w in windows]),
                     in_flight=_mean([w.in_flight for w in windows]),
                     token_counts=first.token_counts if first else "", server_note=first.note if first else "",
                     arrivals_per_s=_mean(arrivals),
                     queued_close=_mean([float(w.queued_close) for w in windows if w.queued_close is not None]),
                     overload=next((r.serve.overload for r in results if r.serve and r.serve.overload), ""))


def serve_comparisons(pairs: Sequence[PairRatio]) -> list[ServeComparison]:
    """Every served MoE against each of its dense comparisons, in the pairs' order."""
    out = []
    for p in pairs:
        if p.moe.spec.serve is None:  # not a served model
            continue
        moe, dense = serve_side(p.moe), serve_side(p.dense)
        ratios: dict[str, Estimate | None] = {}
        for name in FIGURES:
            a, b = moe.figures[name], dense.figures[name]
            ratios[name] = ratio_ci(a, b) if a is not None and b is not None else None
        ratios["output_tokens_per_j"] = p.inferences_per_j or ratios["output_tokens_per_j"]
        if moe.overload or dense.overload:
            ratios = {name: None for name in ratios}
        out.append(ServeComparison(pair=p, moe=moe, dense=dense, ratios=ratios))
    return out
