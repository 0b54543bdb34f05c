"""Choose how an LLM task runs on the fast path, by measurement, after checking it against transformers.

A *phase run* is what one measured step does: a prefill forward (`PrefillRun`) or a whole response
of `gen_tokens` greedy decode steps (`DecodeRun`). Each *candidate* is one way the experts run
(moecluster's `grouped_mm` or `gather` kernels, or the library's own dispatch; a dense model has one
candidate). At prepare, never inside a measurement window, every candidate:

1. runs eagerly once; its first-step logits must match transformers' reference (`generate`) within
   the dtype's tolerance, or it is left out with the error (its greedy tokens' agreement is recorded:
   in half precision a near tie may flip a token, after which the sequences part). An MoE's first
   step runs with the reference's routing pinned (`routing.pin_routing`): a near tie in a router
   flips as easily, and would move a token's logits by far more than rounding;
2. is timed eagerly (median of a few runs, CUDA events on a GPU);
3. where the device allows, is captured in a CUDA graph (one decode step, replayed `gen_tokens`
   times per response with no host involvement; or the whole prefill forward), its replay checked
   against its eager output, and timed.

The choice follows `workloads.race`'s rule (the close candidates raced in interleaved rounds; within
noise of the fastest, the first in the tie-break order: candidates in the order offered, of one its
graph first), so replicates agree unless the kernels really differ; the record (`form`) names it,
every candidate's screened time or why it failed, why no graph where none, and the check against
the reference, and `Chosen.margin` how clearly it won. Choices are cached per process under a
key of everything they depend on (in the process's `forms.FormCache`, beside the MLP's), so the
repeats of a pair measure once.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from moecluster.spec.records import ChoiceMargin
from moecluster.workloads import race
from moecluster.workloads.forms import GRAPH_NEEDLESS_FROM_S, FormCache, FormChoice, rel_err
from moecluster.workloads.graphs import WARMUP_CALLS, CapturedGraph, GraphPolicy, Replayable
from moecluster.workloads.timing import time_call_s, time_sample_s
from moecluster.workloads.llm.engine import StaticEngine
from moecluster.workloads.llm.routing import PinReport

CACHED = "cached: measured at an earlier prepare in this process"
Timer = Callable[[Callable[[], object], torch.device], float]
RoutingPin = Callable[[bool], AbstractContextManager[PinReport]]
StepCapture = Callable[[Callable[[], Tensor], Callable[[], None], Sequence[Tensor]], Replayable]


@dataclass(frozen=True)
class Outputs:
    """A response's first-step logits [batch, vocab] and greedy tokens [batch, n]."""

    logits: Tensor
    tokens: Tensor


def token_agreement(out: Tensor, ref: Tensor) -> tuple[int, int]:
    """(steps whose tokens agree in every sequence, steps compared), over the first steps both have."""
    n = min(out.shape[1], ref.shape[1])
    same = (out[:, :n].to(ref.device) == ref[:, :n]).all(dim=0)
    return int(same.sum()), n


def capture_step(fn: Callable[[], Tensor], reset: Callable[[], None], keepalive: Sequence[Tensor]) -> CapturedGraph:
    """Capture one call of `fn` in a CUDA graph, after warm-up calls on a side stream, each from `reset()`
    (a decode step advances its position: without the reset, warm-ups would run past the cache)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(WARMUP_CALLS):
            reset()
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    reset()
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
        output = fn()
    reset()
    return CapturedGraph(graph=graph, output=output, keepalive=tuple(keepalive))


class PhaseRun(Protocol):
    unit: str  # what one step is: "response" or "forward"
    tokens_per_step: int
    graph_unit_steps: int  # graph replays per step (decode: gen_tokens)

    def step(self) -> None: ...

    def outputs(self) -> Outputs: ...

    def capture(self, capture: StepCapture) -> Replayable: ...

    def graph_step(self, graph: Replayable) -> Callable[[], None]: ...

    def graph_outputs(self, graph: Replayable) -> Outputs: ...

    def busy_step(self, graph: Replayable | None) -> Callable[[], None] | None: ...


class DecodeRun:
    """A response of `gen_tokens` greedy steps on the engine (which holds the prompt's cache)."""

    unit = "response"

    def __init__(self, engine: StaticEngine, gen_tokens: int) -> None:
        self.engine, self.gen_tokens = engine, gen_tokens
        self.tokens_per_step = engine.batch * gen_tokens
        self.graph_unit_steps = gen_tokens
        self._cursor = 0  # decode steps of the current response that `busy_step` has run (0: start one)

    def step(self) -> None:
        self.engine.reset()
        for _ in range(self.gen_tokens):
            self.engine.decode_step()
        self._cursor = 0  # the engine stands at the response's end

    def busy_step(self, graph: Replayable | None) -> Callable[[], None]:
        """One decode step of a response (eager, or a replay of `graph`), the responses' steps in turn:
        a new response starts after `gen_tokens` of them and after any whole response, so the cache
        is never written past its end."""
        engine, steps = self.engine, self.gen_tokens
        one: Callable[[], object] = engine.decode_step if graph is None else graph.replay

        def decode_one() -> None:
            if self._cursor == 0:
                engine.reset()
            one()
            self._cursor = (self._cursor + 1) % steps
        return decode_one

    def outputs(self) -> Outputs:
        self.engine.reset()
        first = self.engine.decode_step().clone()
        for _ in range(self.gen_tokens - 1):
            self.engine.decode_step()
        return Outputs(first, self.engine.tokens.clone())

    def capture(self, capture: StepCapture) -> Replayable:
        e = self.engine
        return capture(e.decode_step, e.reset, (e.ids, e.pos, e.tokens, *e.keys, *e.values))

    def graph_step(self, graph: Replayable) -> Callable[[], None]:
        engine, steps = self.engine, self.gen_tokens

        def respond() -> None:
            engine.reset()
            for _ in range(steps):
                graph.replay()
            self._cursor = 0
        return respond

    def graph_outputs(self, graph: Replayable) -> Outputs:
        self.engine.reset()
        graph.replay()
        first = graph.output.clone()
        for _ in range(self.gen_tokens - 1):
            graph.replay()
        return Outputs(first, self.engine.tokens.clone())


class PrefillRun:
    """One prefill forward of the prompts on the engine (logits of the last position)."""

    unit = "forward"
    graph_unit_steps = 1

    def __init__(self, engine: StaticEngine, prompt: Tensor) -> None:
        self.engine, self.prompt = engine, prompt
        self.tokens_per_step = prompt.numel()

    def _forward(self) -> Tensor:
        return self.engine.prefill(self.prompt)

    def step(self) -> None:
        self._forward()

    def outputs(self) -> Outputs:
        logits = self._forward().clone()
        return Outputs(logits, logits.argmax(dim=-1, keepdim=True))

    def capture(self, capture: StepCapture) -> Replayable:
        return capture(self._forward, lambda: None, (self.prompt, *self.engine.keys, *self.engine.values))

    def graph_step(self, graph: Replayable) -> Callable[[], None]:
        return graph.replay

    def graph_outputs(self, graph: Replayable) -> Outputs:
        graph.replay()
        logits = graph.output.clone()
        return Outputs(logits, logits.argmax(dim=-1, keepdim=True))

    def busy_step(self, graph: Replayable | None) -> None:
        """None: a forward is the finest unit."""
        return None


@dataclass(frozen=True)
class Candidate:
    """One way the experts (or a dense FFN) run: `use()` switches the model to it."""

    name: str
    kernel: str  # for the record
    use: Callable[[], None]


@dataclass(frozen=True)
class LlmTools:
    """How candidates are timed (`timer`: the screen's median; `sample`: one sample of a race round)
    and captured (real ones by default; CPU tests pass doubles)."""

    timer: Timer = time_call_s
    capture: StepCapture = capture_step
    sample: Timer = time_sample_s




@dataclass(frozen=True)
class Chosen:
    """The phase in its chosen form: `step()` runs one measured step; `form` is for the record."""

    step: Callable[[], None]
    form: dict[str, str]
    graph: Replayable | None = None
    busy: Callable[[], None] | None = None  # a finer unit of the same work (`Prepared.busy_step`)
    margin: ChoiceMargin | None = None  # how clearly the choice won (`workloads.race`)


@dataclass
class _Timed:
    name: str
    graph: bool
    time_s: float | None = None
    failure: str | None = None

    @property
    def entrant(self) -> str:
        """"grouped_mm graph": the candidate, as the choice's record names it."""
        return f"{self.name} {'graph' if self.graph else 'eager'}"

    def label(self, run: PhaseRun) -> str:
        mode = "graph" if self.graph else "eager"
        if self.time_s is None:
            return f"{self.name} {mode}: {self.failure}"
        per_token = self.time_s / max(1, run.tokens_per_step)
        return f"{self.name} {mode} {self.time_s * 1e3:,.3f} ms per {run.unit} ({per_token * 1e6:,.2f} µs/token)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:160]}" if text else type(exc).__name__


def _check_text(err: float, agree: tuple[int, int], tolerance: float) -> str:
    return (f"first-step logits vs transformers generate: relative error {err:.1e} (tolerance {tolerance:g});"
            f" greedy tokens of every sequence agree at {agree[0]}/{agree[1]} of the first steps")


def _checked_outputs(run: PhaseRun, reference: Outputs, pin: RoutingPin | None) -> tuple[Outputs, float, str]:
    """The candidate's own outputs (a free run: what it measures, what its graph is checked against),
    its first-step error against the reference, and, for an MoE, what pinning the routing showed.

    With `pin`, the error is that of a second run whose first step has the reference's routing; the
    free run's error and its flipped router choices go into the text."""
    with pin(False) if pin is not None else nullcontext(PinReport(False)) as free:
        out = run.outputs()
    err = rel_err(out.logits, reference.logits)
    if pin is None or not free.calls:
        return out, err, ""
    with pin(True) as pinned:
        checked = run.outputs()
    pinned_err = rel_err(checked.logits, reference.logits)
    return out, pinned_err, (f"; that error is with the {pinned.describe()}; unpinned: relative error"
                             f" {err:.1e}, {free.describe()}")


class _Graphs:
    """The timed candidates' graphs that may yet race (`race.finalists` of those timed so far), so a
    graph out of the running is freed at once and at most `race.RACE_MAX` are held."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[float, Replayable]] = {}  # candidate name -> (screened seconds, graph)

    def offer(self, name: str, time_s: float, graph: Replayable, best_s: float) -> None:
        self.held[name] = (time_s, graph)
        names = list(self.held)
        keep = race.finalists([self.held[n][0] if self.held[n][0] <= best_s * (1 + race.RACE_RANGE) else None
                               for n in names])
        self.held = {names[i]: self.held[names[i]] for i in keep}


def _graph_skip(policy: GraphPolicy, run: PhaseRun, eager_s: float | None) -> str | None:
    """Why no graph is tried for a candidate (None: try one)."""
    if policy.blocker is not None:
        return policy.blocker
    per_replay = None if eager_s is None else eager_s / run.graph_unit_steps
    if per_replay is not None and per_replay >= GRAPH_NEEDLESS_FROM_S and not policy.wanted:
        return (f"graph not tried: one eager {run.unit if run.graph_unit_steps == 1 else 'step'} takes"
                f" {per_replay * 1e3:,.0f} ms, beside which launch gaps are negligible")
    return None


def choose(candidates: Sequence[Candidate], run: PhaseRun, reference: Outputs, *, device: torch.device,
           policy: GraphPolicy, tolerance: float, tools: LlmTools, cache: FormCache, key: Hashable,
           extra: Mapping[str, str] | None = None, pin: RoutingPin | None = None) -> Chosen:
    """Check, time and capture every candidate (see the module's doc); the fastest, in its form.

    `extra` entries are cached with the choice's record (e.g. the reference's timing). `pin`, for an
    MoE, holds a check's first step to the reference's routing (`routing.pin_routing`; with `False`,
    it only counts a free run's flips).

    Raises ValueError naming every candidate's failure where none can run (or, with
    `policy.wanted`, none can run in a CUDA graph).
    """
    if not candidates:
        raise ValueError("no form to choose from")
    with torch.inference_mode():
        cached = cache.get(key)
        if cached is not None:
            chosen = _apply_cached(cached, candidates, run, tools, tolerance)
            if chosen is not None:
                return chosen
        timings: list[_Timed] = []
        checks: dict[str, str] = {}
        graphs = _Graphs()
        skips: dict[str, str] = {}
        best_s = float("inf")
        for cand in candidates:
            cand.use()
            try:
                out, err, pinned = _checked_outputs(run, reference, pin)
            except (RuntimeError, NotImplementedError, ValueError) as exc:
                timings.append(_Timed(cand.name, False, failure=f"failed: {_first_line(exc)}"))
                continue
            if not err <= tolerance:
                timings.append(_Timed(cand.name, False, failure=f"differs from transformers' reference"
                                      f" (relative error {err:.2e} > {tolerance:g}{pinned})"))
                continue
            checks[cand.name] = _check_text(err, token_agreement(out.tokens, reference.tokens), tolerance) + pinned
            eager_s = tools.timer(run.step, device)
            timings.append(_Timed(cand.name, False, time_s=eager_s))
            if not policy.wanted:
                best_s = min(best_s, eager_s)
            skip = _graph_skip(policy, run, eager_s)
            if skip is not None:
                skips[cand.name] = skip
                continue
            try:
                graph = run.capture(tools.capture)
                g_err = rel_err(run.graph_outputs(graph).logits, out.logits)
                if not g_err <= tolerance:
                    raise RuntimeError(f"graph output differs from eager (relative error {g_err:.2e})")
            except (RuntimeError, NotImplementedError) as exc:
                timings.append(_Timed(cand.name, True, failure=f"capture failed: {_first_line(exc)}"))
                continue
            timed = _Timed(cand.name, True, time_s=tools.timer(run.graph_step(graph), device))
            timings.append(timed)
            best_s = min(best_s, timed.time_s or 0.0)
            graphs.offer(cand.name, timed.time_s or 0.0, graph, best_s)
            del graph
        order = [c.name for c in candidates]
        ok = sorted((t for t in timings if t.time_s is not None and (t.graph or not policy.wanted)),
                    key=lambda t: (order.index(t.name), 0 if t.graph else 1))
        if not ok:
            need = " in a CUDA graph (cuda_graphs: true)" if policy.wanted else ""
            raise ValueError(f"no form of the model could run{need}: " + "; ".join(t.label(run) for t in timings))
        best, margin = _race(candidates, ok, run, graphs, device, tools)
        winner = next(c for c in candidates if c.name == best.name)
        winner.use()
        graph_held = graphs.held[best.name][1] if best.graph else None
        form = {**(extra or {}), **_form(winner, best, timings, skips, checks[winner.name], run, device, margin)}
        cache.put(key, FormChoice(option=winner.name, graph=graph_held is not None, timings=(),
                                  form=tuple(form.items()), margin=margin))
        step = run.graph_step(graph_held) if graph_held is not None else run.step
        return Chosen(step=step, form=form, graph=graph_held, busy=run.busy_step(graph_held), margin=margin)


def _race(candidates: Sequence[Candidate], ok: Sequence[_Timed], run: PhaseRun, graphs: _Graphs,
          device: torch.device, tools: LlmTools) -> tuple[_Timed, ChoiceMargin]:
    """The screened candidates `ok` (in tie-break order) decided by `race`'s rule; a finalist whose graph
    is no longer held (it cannot be: see `_Graphs`) leaves the decision to the screen."""
    labels = [t.entrant for t in ok]
    screen_s = [t.time_s for t in ok]
    picks = race.finalists(screen_s)
    if len(picks) == 1 or any(ok[i].graph and ok[i].name not in graphs.held for i in picks):
        first = min(picks, key=lambda i: (screen_s[i] or 0.0, i))
        return ok[first], race.screened(labels, screen_s, first)
    calls: list[tuple[Callable[[], None], Callable[[], None]]] = []
    for i in picks:
        cand = next(c for c in candidates if c.name == ok[i].name)
        calls.append((cand.use, run.graph_step(graphs.held[cand.name][1]) if ok[i].graph else run.step))

    def sample(k: int) -> float:
        use, call = calls[k]
        use()
        return tools.sample(call, device)

    samples = race.race(len(picks), sample, race.rules_for(device))
    chosen, margin = race.decide([labels[i] for i in picks], samples)
    return ok[picks[chosen]], margin


def _graph_text(winner: _Timed, timings: Sequence[_Timed], skips: dict[str, str], run: PhaseRun) -> str:
    if winner.graph:
        what = ("one CUDA graph per decode step, replayed for every token of a response" if run.unit == "response"
                else "the whole forward in one CUDA graph")
        return f"captured: {what}; replay checked against eager"
    if winner.name in skips:
        return f"eager: {skips[winner.name]}"
    mine = [t for t in timings if t.name == winner.name and t.graph]
    if mine and mine[0].time_s is None:
        return f"eager: {mine[0].failure}"
    if mine:
        eager_s, graph_s = winner.time_s or 0.0, mine[0].time_s or 0.0
        if eager_s > graph_s:  # screened slower, yet its graph lost the race (`Chosen.margin` says by how much)
            return (f"eager: its graph was not ahead in the race (screened: eager {eager_s:.4g} s, graph"
                    f" {graph_s:.4g} s per {run.unit})")
        return (f"eager: its eager run measured faster than its graph ({eager_s:.4g} s vs {graph_s:.4g} s"
                f" per {run.unit})")
    return "eager: no graph was tried"


def _form(winner: Candidate, timed: _Timed, timings: Sequence[_Timed], skips: dict[str, str], check: str,
          run: PhaseRun, device: torch.device, margin: ChoiceMargin) -> dict[str, str]:
    clock = "CUDA events" if device.type == "cuda" else "perf_counter"
    return {"kernel": winner.kernel, "graph": _graph_text(timed, timings, skips, run),
            "candidates": "; ".join(t.label(run) for t in timings),
            "choice": f"by measurement at prepare ({clock}): {margin.describe()}",
            "check": check}


def _apply_cached(cached: FormChoice, candidates: Sequence[Candidate], run: PhaseRun, tools: LlmTools,
                  tolerance: float) -> Chosen | None:
    """The cached choice applied afresh (its graph captured and checked against eager again), or None
    where it can no longer be applied (then the caller measures anew)."""
    cand = next((c for c in candidates if c.name == cached.option), None)
    if cand is None:
        return None
    cand.use()
    form = dict(cached.form)
    form["choice"] = CACHED
    if not cached.graph:
        return Chosen(step=run.step, form=form, busy=run.busy_step(None), margin=cached.margin)
    try:
        eager = run.outputs()
        graph = run.capture(tools.capture)
        if not rel_err(run.graph_outputs(graph).logits, eager.logits) <= tolerance:
            return None
    except (RuntimeError, NotImplementedError):
        return None
    return Chosen(step=run.graph_step(graph), form=form, graph=graph, busy=run.busy_step(graph),
                  margin=cached.margin)
