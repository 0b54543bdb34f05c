"""Choose how a model runs, by measurement: its fastest form, once per process.

A *form* is one way to compute the same function from the same weights: a weight layout and
GEMM call for a dense MLP, a grouped kernel for an MoE, each run eagerly or replayed from a
CUDA graph. At prepare time, never inside a measurement window, every form that can run is
checked against the first form's output and timed (median of a few runs: the screen); the close
ones race in interleaved rounds and the choice follows `race`'s rule, so that replicates agree
unless the forms really differ: within noise of the fastest, the first in the tie-break order
(forms in the order offered; of one form, its graph before its eager run, since a replay leaves
the host out of the loop). The choice, every candidate's screened time and how clearly the choice
won (`ChoiceMargin`) go into the task's record (`form`, `choice`), so a reader sees that neither
side of a comparison was handicapped, nor a coin tossed. Choices are cached per process under a
key the workload builds (shape, dtype, batch, device, load), so the repeats of a pair, which
prepare their model afresh, do not measure again.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor

from moecluster.spec.records import ChoiceMargin

from moecluster.workloads import race
from moecluster.workloads.graphs import Capture, GraphPolicy, Replayable, capture_graph
from moecluster.workloads.timing import time_call_s, time_sample_s

Timer = Callable[[Callable[[], object], torch.device], float]
CACHED = "cached: measured at an earlier prepare in this process"


def _no_tensors() -> Sequence[Tensor]:
    return ()


@dataclass(frozen=True)
class GraphPlan:
    """Whether and how a form can be captured in a CUDA graph.

    `blocker`: why it cannot (e.g. a host sync in its forward), None if it can. `note`: how
    the task's record reads when it is captured. `context`: entered around the capture only
    (e.g. fixing per-expert counts that the eager form reads from the device each batch).
    """

    blocker: str | None = None
    note: str = "captured"
    context: Callable[[], AbstractContextManager[object]] = nullcontext


@dataclass(frozen=True)
class FormOption:
    """One candidate form of a model, before it is timed.

    `aspects` are recorded as they are (e.g. `layout`, `kernel`); `use()` puts the model into
    this form; `keepalive()` names the tensors a graph of it reads besides the model's
    parameters and inputs (derived copies of weights), so they outlive the graph.
    """

    name: str
    aspects: tuple[tuple[str, str], ...]
    use: Callable[[], None]
    graph: GraphPlan = GraphPlan()
    keepalive: Callable[[], Sequence[Tensor]] = _no_tensors


@dataclass(frozen=True)
class Timing:
    """One measured candidate: a form, eager or graph, its median seconds or why it failed."""

    option: str
    graph: bool
    time_s: float | None = None
    failure: str | None = None

    @property
    def name(self) -> str:
        """"grouped graph": the candidate, as the choice's record names it."""
        return f"{self.option} {'graph' if self.graph else 'eager'}"

    def label(self) -> str:
        if self.time_s is None:
            return f"{self.name}: {self.failure}"
        return f"{self.name} {self.time_s * 1e3:.3f} ms"


@dataclass(frozen=True)
class FormChoice:
    """What was chosen (a form, graph or not), every candidate's timing, the record, and how clearly
    the choice won (`margin`; None where nothing recorded it)."""

    option: str
    graph: bool
    timings: tuple[Timing, ...]
    form: tuple[tuple[str, str], ...]
    margin: ChoiceMargin | None = None


@dataclass(frozen=True)
class ChosenForm:
    """The model in its chosen form: `step()` runs one batch; `form` is for the record."""

    step: Callable[[], object]
    form: dict[str, str]
    choice: FormChoice
    graph: Replayable | None = None


@dataclass
class FormCache:
    """Form choices per key, kept for the life of one process (the one explicit cache object)."""

    _choices: dict[Hashable, FormChoice] = field(default_factory=dict)
    _replicate: int = 1  # the replicate (`TaskSpec.replicate`) whose choices these are

    def for_replicate(self, replicate: int) -> None:
        """Forget every choice when this process goes on to another replicate: a replicate is an
        independent measurement, so it chooses its forms afresh (a reused worker would otherwise
        hand one replicate's choice to the next)."""
        if replicate != self._replicate:
            self._choices.clear()
            self._replicate = replicate

    def get(self, key: Hashable) -> FormChoice | None:
        return self._choices.get(key)

    def put(self, key: Hashable, choice: FormChoice) -> None:
        self._choices[key] = choice

    def drop(self, key: Hashable) -> None:
        self._choices.pop(key, None)

    def __len__(self) -> int:
        return len(self._choices)


# From this time per eager call on, a CUDA graph is not tried: it removes launch gaps of a
# few microseconds per kernel, under 0.1 % of such a call, and capturing and checking it
# costs several calls (a minute at xxl, fp32, batch 8,192).
GRAPH_NEEDLESS_FROM_S = 0.2

PROCESS_FORM_CACHE = FormCache()  # per process: a worker's later tasks reuse its choices, as PeakCache's peaks


@dataclass(frozen=True)
class Tools:
    """How candidates are timed (`timer`: the screen's median; `sample`: one sample of a race round)
    and captured (real ones by default; tests pass doubles)."""

    timer: Timer = time_call_s
    capture: Capture = capture_graph
    sample: Timer = time_sample_s


def output_tolerance(dtype: torch.dtype) -> float:
    """Relative error two forms of one function may show: different GEMM algorithms round
    differently, more so in half precision (and in float32 where TF32 is allowed)."""
    if dtype in (torch.bfloat16, torch.float16):
        return 3e-2
    return 1e-2 if torch.backends.cuda.matmul.allow_tf32 else 1e-3


def rel_err(out: Tensor, ref: Tensor) -> float:
    """Relative Frobenius error of `out` against `ref`, in float64, over the finite entries;
    infinite where the two are not finite in the same places (an overflow in one form only)."""
    ref64, out64 = ref.detach().double(), out.detach().double()
    finite = torch.isfinite(ref64)
    if out64.shape != ref64.shape or not torch.equal(finite, torch.isfinite(out64)):
        return float("inf")
    diff = torch.where(finite, out64 - ref64, 0.0)
    return float(diff.norm() / torch.where(finite, ref64, 0.0).norm().clamp_min(1e-30))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:160]}" if text else type(exc).__name__


class _Mismatch(RuntimeError):
    """A graph replay disagreed with the eager output of the same form."""


def _capture_checked(option: FormOption, run: Callable[[], Tensor], eager_out: Tensor, keepalive: Sequence[Tensor],
                     tools: Tools, tolerance: float) -> Replayable:
    """Capture `option` and check one replay against its eager output."""
    with option.graph.context():
        graph = tools.capture(run, [*keepalive, *option.keepalive()])
    graph.replay()
    err = rel_err(graph.output, eager_out)
    if not err <= tolerance:
        raise _Mismatch(f"graph output differs from eager (relative error {err:.2e})")
    return graph


@dataclass(frozen=True)
class _Plan:
    """The candidates of one choice, before any is run."""

    eager: bool  # eager candidates allowed
    graphs: dict[str, str | None]  # per option: why no graph (None: try one)

    def count(self, options: Sequence[FormOption]) -> int:
        return sum(int(self.eager) + int(self.graphs[o.name] is None) for o in options)


def _plan(options: Sequence[FormOption], policy: GraphPolicy) -> _Plan:
    graphs = {o.name: policy.blocker or o.graph.blocker for o in options}
    if policy.wanted and all(v is not None for v in graphs.values()):
        raise ValueError("cuda_graphs: true, but no form can be captured: "
                         + "; ".join(f"{name}: {why}" for name, why in graphs.items()))
    return _Plan(eager=policy.wanted is not True, graphs=graphs)


def _measure(options: Sequence[FormOption], run: Callable[[], Tensor], plan: _Plan, device: torch.device,
             keepalive: Sequence[Tensor], tools: Tools, tolerance: float) -> list[Timing]:
    """Run, check and time every candidate; a failing one is recorded with its reason."""
    timings: list[Timing] = []
    reference: Tensor | None = None
    for option in options:
        option.use()
        try:
            out = run()
        except (RuntimeError, NotImplementedError, ValueError) as exc:
            timings.append(Timing(option.name, False, failure=f"failed: {_first_line(exc)}"))
            continue
        if reference is None:
            reference = out
        elif not rel_err(out, reference) <= tolerance:
            failure = f"output differs from {options[0].name} (relative error {rel_err(out, reference):.2e})"
            timings.append(Timing(option.name, False, failure=failure))
            continue
        eager_s = tools.timer(run, device) if plan.eager else None
        if eager_s is not None:
            timings.append(Timing(option.name, False, time_s=eager_s))
        if plan.graphs[option.name] is None and eager_s is not None and eager_s >= GRAPH_NEEDLESS_FROM_S:
            timings.append(Timing(option.name, True, failure=f"graph not tried: one eager call takes"
                                  f" {eager_s * 1e3:,.0f} ms, beside which launch gaps are negligible"))
            continue
        if plan.graphs[option.name] is None:
            try:
                graph = _capture_checked(option, run, out, keepalive, tools, tolerance)
            except (RuntimeError, NotImplementedError) as exc:
                timings.append(Timing(option.name, True, failure=f"capture failed: {_first_line(exc)}"))
                continue
            timings.append(Timing(option.name, True, time_s=tools.timer(graph.replay, device)))
            del graph
    return timings


def _eager_reason(option: str, plan: _Plan, timings: Sequence[Timing]) -> str:
    """Why the chosen form runs eagerly."""
    blocker = plan.graphs[option]
    if blocker is not None:
        return blocker
    mine = {t.graph: t for t in timings if t.option == option}
    graph, eager = mine.get(True), mine.get(False)
    if graph is None:
        return "no graph was tried"
    if graph.time_s is None or eager is None or eager.time_s is None:
        return graph.failure or "its graph did not run"
    if eager.time_s > graph.time_s:  # screened slower, yet its graph lost the race (`choice` says by how much)
        return f"its graph was not ahead in the race (screened: eager {eager.time_s * 1e3:.3f} ms, graph" \
               f" {graph.time_s * 1e3:.3f} ms)"
    return f"its eager run measured faster than its graph ({eager.time_s * 1e3:.3f} ms vs {graph.time_s * 1e3:.3f} ms)"


def tie_break_key(options: Sequence[FormOption], timing: Timing) -> tuple[int, int]:
    """The fixed tie-break order (`race`): forms in the order offered, of one form its graph first."""
    return next(i for i, o in enumerate(options) if o.name == timing.option), 0 if timing.graph else 1


def _race(options: Sequence[FormOption], ok: Sequence[Timing], run: Callable[[], Tensor], device: torch.device,
          keepalive: Sequence[Tensor], tools: Tools, tolerance: float) -> tuple[Timing, ChoiceMargin]:
    """The screened candidates `ok` (in tie-break order) decided by `race`'s rule: the close ones raced
    in interleaved rounds (their graphs captured anew and held together), the others out at screening.
    Where a finalist's graph cannot be captured again, the screen decides (the record says not raced)."""
    labels = [t.name for t in ok]
    screen_s = [t.time_s for t in ok]
    picks = race.finalists(screen_s)
    fastest = min(picks, key=lambda i: (screen_s[i] or 0.0, i))
    if len(picks) == 1:
        return ok[picks[0]], race.screened(labels, screen_s, picks[0])
    entrants: list[tuple[FormOption, Callable[[], object]]] = []
    graphs: list[Replayable] = []
    try:
        for i in picks:
            option = next(o for o in options if o.name == ok[i].option)
            option.use()
            if ok[i].graph:
                graphs.append(_capture_checked(option, run, run(), keepalive, tools, tolerance))
                entrants.append((option, graphs[-1].replay))
            else:
                entrants.append((option, run))
    except (RuntimeError, NotImplementedError):
        return ok[fastest], race.screened(labels, screen_s, fastest)

    def sample(k: int) -> float:
        option, call = entrants[k]
        option.use()
        return tools.sample(call, device)

    samples = race.race(len(picks), sample, race.rules_for(device))
    chosen, margin = race.decide([labels[i] for i in picks], samples)
    del graphs
    return ok[picks[chosen]], margin


def _decide(options: Sequence[FormOption], plan: _Plan, timings: Sequence[Timing], policy: GraphPolicy,
            device: torch.device, run: Callable[[], Tensor], keepalive: Sequence[Tensor], tools: Tools,
            tolerance: float) -> FormChoice:
    ok = sorted((t for t in timings if t.time_s is not None and (t.graph or policy.wanted is not True)),
                key=lambda t: tie_break_key(options, t))
    if not ok:
        raise ValueError("no form of the model could run" + (" in a CUDA graph (cuda_graphs: true)"
                                                              if policy.wanted else "") + ": "
                         + "; ".join(t.label() for t in timings))
    best, margin = _race(options, ok, run, device, keepalive, tools, tolerance)
    option = next(o for o in options if o.name == best.option)
    clock = "CUDA events" if device.type == "cuda" else "perf_counter"
    form = dict(option.aspects)
    form["graph"] = option.graph.note if best.graph else f"eager: {_eager_reason(option.name, plan, timings)}"
    form["candidates"] = "; ".join(t.label() for t in timings)
    form["choice"] = f"by measurement at prepare ({clock}): {margin.describe()}"
    return FormChoice(option=option.name, graph=best.graph, timings=tuple(timings), form=tuple(form.items()),
                      margin=margin)


def _only_choice(option: FormOption, plan: _Plan) -> FormChoice:
    """The one candidate there is: nothing to measure."""
    graph = plan.graphs[option.name] is None
    form = dict(option.aspects)
    form["graph"] = option.graph.note if graph else f"eager: {plan.graphs[option.name]}"
    form["candidates"] = f"only one: {option.name} {'graph' if graph else 'eager'}"
    form["choice"] = "the only candidate (nothing to measure)"
    return FormChoice(option=option.name, graph=graph, timings=(), form=tuple(form.items()),
                      margin=ChoiceMargin(chosen=f"{option.name} {'graph' if graph else 'eager'}"))


def _apply(choice: FormChoice, options: Sequence[FormOption], run: Callable[[], Tensor],
           keepalive: Sequence[Tensor], tools: Tools, tolerance: float, cached: bool) -> ChosenForm:
    option = next(o for o in options if o.name == choice.option)
    option.use()
    form = dict(choice.form)
    if cached and choice.timings:
        form["choice"] = CACHED
    if not choice.graph:
        return ChosenForm(step=run, form=form, choice=choice)
    graph = _capture_checked(option, run, run(), keepalive, tools, tolerance)
    return ChosenForm(step=graph.replay, form=form, choice=choice, graph=graph)


def choose_form(options: Sequence[FormOption], run: Callable[[], Tensor], *, device: torch.device,
                policy: GraphPolicy, tolerance: float, cache: FormCache, key: Hashable,
                keepalive: Sequence[Tensor] = (), tools: Tools | None = None) -> ChosenForm:
    """Put the model into its fastest form and return the step that runs one batch in it.

    `run()` runs one batch of the model in whichever form `use()` last set; `keepalive` are
    tensors every graph reads (the inputs). The first candidate's eager output is the
    reference every other candidate must match within `tolerance`; every graph's first
    replay must match its eager output. A choice cached under `key` is applied without
    measuring again (its graph is captured and checked anew). Raises ValueError naming why
    where a required graph (`policy.wanted`) is impossible or no form can run.
    """
    if not options:
        raise ValueError("no form to choose from")
    names = [o.name for o in options]
    if len(set(names)) != len(names):
        raise ValueError(f"form names must be distinct: {names}")
    tools = tools or Tools()
    plan = _plan(options, policy)
    with torch.inference_mode():
        cached = cache.get(key)
        if cached is not None and cached.option in names:
            try:
                return _apply(cached, options, run, keepalive, tools, tolerance, cached=True)
            except (RuntimeError, NotImplementedError):
                cache.drop(key)  # measure afresh below
        if plan.count(options) == 1:
            only = next(o for o in options if plan.eager or plan.graphs[o.name] is None)
            choice = _only_choice(only, plan)
        else:
            timings = _measure(options, run, plan, device, keepalive, tools, tolerance)
            choice = _decide(options, plan, timings, policy, device, run, keepalive, tools, tolerance)
        try:
            chosen = _apply(choice, options, run, keepalive, tools, tolerance, cached=False)
        except (RuntimeError, NotImplementedError) as exc:
            if policy.wanted:
                why = _first_line(exc)
                raise ValueError(f"cuda_graphs: true, but capturing {choice.option} failed: {why}") from exc
            form = dict(choice.form)
            form["graph"] = f"eager: capture of the chosen form failed: {_first_line(exc)}"
            choice = FormChoice(option=choice.option, graph=False, timings=choice.timings, form=tuple(form.items()),
                                margin=choice.margin)
            chosen = _apply(choice, options, run, keepalive, tools, tolerance, cached=False)
        cache.put(key, choice)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # candidates' graphs and copies are gone; give their memory back
    return chosen
