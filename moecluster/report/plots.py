"""The report's figures (matplotlib, Agg backend), returned as PNG bytes.

Each function returns None when the run has nothing to plot for it, with the reason left to
the caller (the HTML page says why a figure is absent instead of drawing an empty one).
"""
from __future__ import annotations

import io
import math
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from moecluster.spec.records import TaskResult  # noqa: E402
from moecluster.report.aggregate import Aggregate, BreakEven, Estimate, SeriesKey, replicate_ci  # noqa: E402
from moecluster.report.aggregate.breakeven import series_key  # noqa: E402
from moecluster.report.aggregate.ep import EpPoint  # noqa: E402
from moecluster.report.aggregate.llm import LlmSeries  # noqa: E402
from moecluster.head.items import item_names  # noqa: E402
from moecluster.head.estimate.measured import compare  # noqa: E402
from moecluster.workloads.registry import workload  # noqa: E402

from moecluster.report import fmt  # noqa: E402
from moecluster.report.labels import model_name, pair_order, setting  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

STYLE: dict[RcKeyType, Any] = {
    "font.family": "serif", "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.6, "figure.dpi": 150, "savefig.dpi": 150,
}
DENSE_COLOR = "#222222"
IMPL_COLORS = {"naive": "#d62728", "sorted": "#1f77b4", "grouped": "#2ca02c", "library": "#ff7f0e"}
FALLBACK = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def color(name: str) -> str:
    """The one colour of an implementation (or any other named line) in every figure and panel: the
    MoE implementations' own, dense black, anything else a palette colour fixed by its name."""
    if name in IMPL_COLORS:
        return IMPL_COLORS[name]
    if name == "dense":
        return DENSE_COLOR
    return FALLBACK[zlib.crc32(name.encode()) % len(FALLBACK)]


def _color(name: str, seen: dict[str, str]) -> str:
    """`color(name)` for an implementation; for any other line the palette's first colour after its own
    that no other line of the figure has (`seen`: the names the figure drew, and their colours)."""
    if name in seen:
        return seen[name]
    if name in IMPL_COLORS or name == "dense":
        seen[name] = color(name)
        return seen[name]
    start = FALLBACK.index(color(name))
    taken = set(seen.values())
    free = [FALLBACK[(start + i) % len(FALLBACK)] for i in range(len(FALLBACK))]
    seen[name] = next((c for c in free if c not in taken), free[0])
    return seen[name]


def _span(values: Iterable[int]) -> str:
    """"1", "1, 4, 16" or "1–4,096" (more than four values): numbers in numeric order."""
    vs = sorted(set(values))
    if len(vs) > 4:
        return f"{vs[0]:,}–{vs[-1]:,}"
    return ", ".join(f"{v:,}" for v in vs)


def context_title(results: Iterable[TaskResult], what: str = "") -> str:
    """A figure's title: what it shows, then the dtype(s), batch size(s) and GPU(s) of its tasks, so a
    figure saved apart from the page still says what it measured."""
    rs = list(results)
    dtypes = ", ".join(sorted({r.spec.dtype for r in rs})) or "?"
    gpus = ", ".join(sorted({g.name for r in rs for g in r.gpus})) or ", ".join(sorted({r.spec.device for r in rs}))
    parts = [what] if what else []
    parts += [dtypes, f"batch {_span(r.spec.batch_size for r in rs)}", gpus or "?"]
    return " · ".join(parts)


def _titled(fig: Figure, title: str) -> None:
    """`title` over the whole figure and the panels laid out under it, a fixed 0.45 inch kept for it
    whatever the figure's height (so it never runs into the first panel's own title)."""
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.45 / fig.get_figheight()))


def _legend_below(fig: Figure, axes: Iterable[Axes], ncol: int = 3) -> None:
    """One legend for the figure, under its panels (never over the data); each label once."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    later = ("analytic", "critical", "MoE's", "roofline")  # measured lines first, references after
    seen = dict(sorted(seen.items(), key=lambda kv: any(w in kv[0] for w in later)))
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
                   ncol=min(ncol, len(seen)), fontsize=7.5)


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _errbars(ests: Iterable[Estimate]) -> tuple[list[float], list[list[float]]]:
    ys, lo, hi = [], [], []
    for e in ests:
        ys.append(e.mean)
        lo.append(e.mean - e.lo if e.lo is not None else 0.0)
        hi.append(e.hi - e.mean if e.hi is not None else 0.0)
    return ys, [lo, hi]


def _pooled(ests: Sequence[Estimate]) -> Estimate:
    """One point per size: a single task's estimate, or several seeds' pooled (t over seeds)."""
    return replicate_ci(ests)


def _panel_title(k: SeriesKey) -> str:
    parts = [k.dtype, f"batch {k.batch_size}", f"EP {k.expert_parallel}", k.device]
    if k.load != "router":
        parts.append(f"load {k.load}" + (f" (s={k.zipf_s:g})" if k.zipf_s is not None else ""))
    if k.train_epochs:
        parts.append(f"trained {k.train_epochs} epochs")
    if k.gpu:
        parts.append(k.gpu)
    return " · ".join(parts) + f" · dense matched by {k.match}"


def _interval_span(b: BreakEven) -> tuple[float, float] | None:
    """The break-even's interval as drawn: open ends run to the swept range; None when undetermined or absent."""
    ci = b.interval
    if ci is None or ci.undetermined:
        return None
    return (ci.lo or b.min_params, ci.hi or b.max_params)


def efficiency_vs_params(agg: Aggregate) -> bytes | None:
    """Inferences/J against total parameters: each MoE implementation and its dense twin, break-even marked.

    One panel per series but for the implementation (every other axis fixed). Several seeds at one
    size are drawn as one point, their geometric mean with the t interval over seeds. When every
    implementation was compared with the same dense tasks, one black dense line is drawn; otherwise
    each implementation's own twins are drawn dashed in its colour, so every break-even is the
    crossing of two lines of one colour. A panel with a single size (a lone point says nothing about
    size) and the LLM's pairs (their own figure, `llm_efficiency`) are left to the tables.
    """
    moe: dict[SeriesKey, dict[str, dict[int, list[Estimate]]]] = defaultdict(lambda: defaultdict(dict))
    dense: dict[SeriesKey, dict[str, dict[int, dict[str, Estimate]]]] = defaultdict(lambda: defaultdict(dict))
    drawn: dict[SeriesKey, list[TaskResult]] = defaultdict(list)
    for p in agg.pairs:
        total = p.moe.total_params
        if workload(p.moe.spec.workload).series_over_batch or p.moe.inferences_per_j is None \
                or p.dense.inferences_per_j is None or not total:
            continue
        k = series_key(p)
        panel = replace(k, impl="")
        moe[panel][k.impl].setdefault(total, []).append(p.moe.inferences_per_j)
        dense[panel][k.impl].setdefault(total, {})[p.dense.task_id] = p.dense.inferences_per_j
        drawn[panel] += [p.moe.result, p.dense.result]
    for panel in [k for k, impls in moe.items() if max(len(sizes) for sizes in impls.values()) < 2]:
        del moe[panel]
    if not moe:
        return None
    with plt.rc_context(STYLE):
        n = len(moe)
        fig, axes = plt.subplots(n, 1, figsize=(7.6, 3.9 * n), squeeze=False)
        extra: dict[str, str] = {}
        for ax, panel in zip(axes.flat, sorted(moe, key=SeriesKey.sort_key)):
            twins = dense[panel]
            shared = len({tuple(sorted((x, tuple(sorted(ids))) for x, ids in pts.items()))
                          for pts in twins.values()}) == 1
            lines: list[tuple[str, str, dict[int, Estimate], bool]] = []
            if shared:
                only = next(iter(twins.values()))
                lines.append((f"dense, matched by {panel.match}", DENSE_COLOR,
                               {x: _pooled(list(ids.values())) for x, ids in only.items()}, True))
            for impl in sorted(moe[panel]):
                color = _color(impl, extra)
                lines.append((f"MoE {impl}", color, {x: _pooled(es) for x, es in moe[panel][impl].items()}, False))
                if not shared:
                    lines.append((f"dense twin of {impl}", color,
                                  {x: _pooled(list(ids.values())) for x, ids in twins[impl].items()}, True))
            for label, color, pts_map, is_dense in lines:
                pts = sorted(pts_map.items())
                ys, err = _errbars(e for _, e in pts)
                ax.errorbar([x for x, _ in pts], ys, yerr=err, color=color, marker="s" if is_dense else "o", ms=4,
                            lw=1.3, capsize=2.5, ls="--" if is_dense else "-", label=label,
                            mfc="white" if is_dense and color != DENSE_COLOR else color)
            marks = [b for b in agg.break_evens if b.params is not None and replace(b.key, impl="") == panel]
            ax.set_xscale("log")
            x0, x1 = (math.log10(v) for v in ax.get_xlim())
            for i, b in enumerate(marks):
                if b.params is None:
                    continue
                color = _color(b.key.impl, extra)
                ax.axvline(b.params, color=color, lw=1.0, ls=":")
                span = _interval_span(b)
                if span is not None:
                    ax.axvspan(*span, color=color, alpha=0.10, lw=0)
                right = (math.log10(b.params) - x0) / (x1 - x0) > 0.6
                ax.annotate(f"break-even {b.key.impl}: {fmt.params(b.params)}", xy=(b.params, 1),
                            xycoords=("data", "axes fraction"), xytext=(-4 if right else 4, -4 - 11 * i),
                            textcoords="offset points", va="top", ha="right" if right else "left", fontsize=7,
                            color=color)
            ax.set_yscale("log")
            ax.set_xlabel("total parameters of the MoE")
            ax.set_ylabel("inferences / J")
            ax.set_title(_panel_title(panel))
            ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        _titled(fig, context_title((r for k in moe for r in drawn[k]), "inferences/J against model size"))
        return png(fig)


def _readable_x(ax: Axes, log: bool) -> None:
    """Few, slanted x tick labels, so that long numbers never overlap."""
    if log:
        ax.xaxis.set_major_locator(LogLocator(numticks=5))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")


def throughput_power_per_pair(agg: Aggregate) -> bytes | None:
    """Figure 2 as PNG (see `pairs_figure`), None without a complete pair."""
    fig = pairs_figure(agg)
    return png(fig) if fig is not None else None


def pairs_figure(agg: Aggregate) -> Figure | None:
    """Inferences/s and average W of each pair's MoE and dense task, side by side.

    A task without the figure gets no bar (never one at 0) and its row says "no energy data"; a
    panel with no data at all says so instead of drawing axes. X tick labels are few and slanted.
    """
    pairs = sorted((p for p in agg.pairs if p.moe.inferences_per_s and p.dense.inferences_per_s), key=pair_order)
    if not pairs:
        return None
    several = len({setting(p.moe.spec) for p in pairs}) > 1
    labels = [f"{model_name(p.moe.spec)} · {p.moe.spec.impl} vs dense/{p.match}"
              + (f"\n{setting(p.moe.spec)}" if several else "") for p in pairs]
    with plt.rc_context(STYLE):
        height = max(2.4, 0.42 * len(pairs) + 1.0)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.4, height), sharey=True)
        ys = list(range(len(pairs)))
        w = 0.38
        many = item_names(p.moe.spec.workload for p in pairs)[1]
        panels = ((a1, "inferences_per_s", f"{many} / s", True), (a2, "power_w", "average W", False))
        sides = ((-w / 2, "moe", "#1f77b4", "MoE"), (w / 2, "dense", DENSE_COLOR, "dense"))
        for ax, attr, xlabel, log in panels:
            drawn = False
            for offset, side, color, label in sides:
                rows = [(y + offset, e) for y, p in zip(ys, pairs)
                        if (e := getattr(getattr(p, side), attr)) is not None]
                if not rows:
                    continue
                vals, err = _errbars(e for _, e in rows)
                ax.barh([y for y, _ in rows], vals, height=w, xerr=err, color=color,
                        alpha=0.85 if side == "moe" else 0.55, label=label, error_kw={"elinewidth": 0.8, "capsize": 2})
                drawn = True
            ax.grid(axis="y", visible=False)
            if not drawn:
                ax.text(0.5, 0.5, "no energy data", transform=ax.transAxes, ha="center", va="center",
                        color="#888888")
                ax.set_xticks([])
                ax.set_xlabel(xlabel)
                continue
            for y, p in zip(ys, pairs):
                if getattr(p.moe, attr) is None or getattr(p.dense, attr) is None:
                    ax.annotate("no energy data", xy=(0, y), xycoords=("axes fraction", "data"), xytext=(4, 0),
                                textcoords="offset points", va="center", fontsize=7, color="#888888")
            ax.set_xlabel(xlabel)
            if log:
                ax.set_xscale("log")
            _readable_x(ax, log)
        a1.set_yticks(ys, labels, fontsize=7)
        a1.invert_yaxis()
        _titled(fig, context_title((r for p in pairs for r in (p.moe.result, p.dense.result)),
                                   f"{many}/s and power of each pair"))
        _legend_below(fig, [a1])
        return fig


def _ep_model(p: EpPoint) -> str:
    m = dict(p.stats.spec.model)
    return f"E{m.get('num_experts', '?')} k{m.get('top_k', '?')} {p.stats.spec.impl}"


def ep_share(agg: Aggregate) -> bytes | None:
    """Against batch size, per MoE configuration and expert-parallel degree d > 1: the measured share
    of the step's time in dispatch + combine (solid, diamonds) and the measured scaling loss
    1 − speedup/d against the same MoE on one GPU (dashed, with its 95 % CI)."""
    pts = [p for p in agg.ep if p.degree > 1]
    if not pts:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        extra: dict[str, str] = {}
        for model, degree in sorted({(_ep_model(p), p.degree) for p in pts}):
            mine = sorted((p for p in pts if _ep_model(p) == model and p.degree == degree),
                          key=lambda p: p.stats.spec.batch_size)
            color = _color(f"{model} d{degree}", extra)
            xs = [p.stats.spec.batch_size for p in mine]
            share = [(x, 100 * p.comm.time_share) for x, p in zip(xs, mine) if p.comm and p.comm.time_share is not None]
            if share:
                ax.plot(*zip(*share), marker="D", color=color, label=f"{model}, d={degree}: dispatch + combine")
            loss = [(x, p.scaling_loss) for x, p in zip(xs, mine) if p.scaling_loss is not None]
            if loss:
                vals, err = _errbars([e for _, e in loss])
                ax.errorbar([x for x, _ in loss], [100 * v for v in vals],
                            yerr=[[100 * v for v in err[0]], [100 * v for v in err[1]]], color=color, ls="--",
                            marker="o", mfc="white", capsize=2, label=f"{model}, d={degree}: scaling loss 1 − S/d")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (global)")
        ax.set_ylabel("share of time (%)")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_title(context_title((p.stats.result for p in pts), "expert parallelism"), fontsize=9)
        fig.tight_layout()
        _legend_below(fig, [ax], ncol=2)
        return png(fig)


def measured_vs_roofline(agg: Aggregate) -> bytes | None:
    """Measured time and energy per inference against the roofline's, log-log, with y = x."""
    compared = [(r, c) for r, c in ((r, compare(r)) for r in agg.results) if c is not None]
    if not compared:
        return None
    cs = [c for _, c in compared]
    one = item_names(r.spec.workload for r, _ in compared)[0]
    with plt.rc_context(STYLE):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.4, 3.8))
        extra: dict[str, str] = {}
        for ax, xs, ys, unit in (
                (a1, [c.roofline_s_per_inference for c in cs], [c.measured_s_per_inference for c in cs], "s"),
                (a2, [c.roofline_j_per_inference for c in cs], [c.measured_j_per_inference for c in cs], "J")):
            done: set[str] = set()
            for c, x, y in zip(cs, xs, ys):
                if x is None or y is None:
                    continue
                impl = c.label.split("/", 1)[1] if c.label.startswith("moe/") else "dense"
                color = DENSE_COLOR if impl == "dense" else _color(impl, extra)
                ax.scatter([x], [y], color=color, marker="s" if impl == "dense" else "o", s=22,
                           label=None if impl in done else ("dense" if impl == "dense" else f"MoE {impl}"))
                done.add(impl)
            if not done:
                ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="#888888")
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            vals = [v for x, y in zip(xs, ys) if x and y for v in (x, y)]
            if vals:
                lo, hi = min(vals) / 1.5, max(vals) * 1.5
                ax.plot([lo, hi], [lo, hi], color="#888888", lw=0.8, ls="--", label="at the roofline")
                for k in (10, 100):
                    ax.plot([lo, hi], [lo * k, hi * k], color="#bbbbbb", lw=0.6, ls=":")
                ax.set_xlim(lo, hi)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(f"roofline {'time' if unit == 's' else 'energy'} per {one} ({unit})")
            ax.set_ylabel(f"measured {'time' if unit == 's' else 'energy'} per {one} ({unit})")
        a1.set_title("time (dotted: 10× and 100× the roofline)")
        a2.set_title("energy (roofline time × reference power)")
        _titled(fig, context_title((r for r, _ in compared), "measured against the roofline"))
        _legend_below(fig, [a1, a2], ncol=5)
        return png(fig)


LLM_MOE_COLOR = "#2ca02c"
LLM_ACTIVE_COLOR = "#7f7f7f"
LLM_MAX_PANELS = 6


def llm_title(series: LlmSeries, seeds: bool) -> str:
    """A panel's title: what is fixed along it (model, implementation, phase, dtype, path, GPU; the
    seed where a run has several), so no two panels read alike."""
    return series.key.label() + (f" · seed {series.key.seed}" if seeds else "")


def llm_panels(agg: Aggregate) -> list[LlmSeries]:
    """The series the figure draws: those with energy at two or more points (a lone point is in the table)."""
    return [s for s in agg.llm if sum(pt.moe.tokens_per_j is not None for pt in s.points) >= 2][:LLM_MAX_PANELS]


def llm_efficiency(agg: Aggregate) -> bytes | None:
    """The LLM figure as PNG (see `llm_figure`), None without a series of two or more points."""
    fig = llm_figure(agg)
    return png(fig) if fig is not None else None


def llm_figure(agg: Aggregate) -> Figure | None:
    """tokens/J against tokens per forward (log-log), one panel per series with two or more points: the
    MoE and both twins (95 % CI), their analytic estimates dotted, the critical batch sizes as vertical
    lines; one legend under the panels."""
    panels = llm_panels(agg)
    if not panels:
        return None
    seeds = len({s.key.seed for s in agg.llm}) > 1
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 3.8 * rows), squeeze=False)
        for ax, series in zip(axes.flat, panels):
            lines = [("moe", "MoE", LLM_MOE_COLOR, "o", "-"),
                     ("total", "dense matched by total", DENSE_COLOR, "s", "-"),
                     ("active", "dense matched by active", LLM_ACTIVE_COLOR, "^", "--")]
            for which, label, line_color, marker, style in lines:
                pts = [(pt, pt.moe if which == "moe" else pt.twins.get(which)) for pt in series.points]
                have = [(pt, s.tokens_per_j) for pt, s in pts if s is not None and s.tokens_per_j is not None]
                if have:
                    ys, err = _errbars([e for _, e in have])
                    ax.errorbar([pt.tokens_per_forward for pt, _ in have], ys, yerr=err, color=line_color,
                                marker=marker, ms=4, lw=1.2, ls=style, capsize=2, label=label)
                key = "moe" if which == "moe" else f"dense/{which}"
                est = [(pt.tokens_per_forward, pt.estimate.tokens_per_j[key]) for pt in series.points
                       if pt.estimate is not None and key in pt.estimate.tokens_per_j]
                if est:
                    ax.plot([x for x, _ in est], [y for _, y in est], color=line_color, ls=":", lw=1.0,
                            marker=marker, mfc="none", ms=4, label=f"{label}, analytic")
            c = series.critical
            if c is not None:
                ax.axvline(c.dense_tokens, color="#d62728", lw=0.9, ls="--",
                           label=f"critical batch {c.dense_tokens:,.0f}")
                ax.axvline(c.moe_tokens, color="#d62728", lw=0.9, ls=":", label=f"MoE's ({c.moe_tokens:,.0f})")
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):  # a short log range would label its minor ticks on top of each other
                axis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("tokens per forward (decode: batch; prefill: batch × prompt)")
            ax.set_ylabel("tokens / J")
            ax.set_title(llm_title(series, seeds), fontsize=8)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        results = [s.result for series in panels for pt in series.points for s in (pt.moe, *pt.twins.values())]
        _titled(fig, context_title(results, "LLM tokens/J against tokens per forward"))
        _legend_below(fig, axes.flat, ncol=4)
        return fig
