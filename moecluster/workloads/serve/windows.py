"""From the load generator's request records to what one energy window served (`ServeWindow`).

Edges. A server's throughput is not steady at the start of a load (its batch is filling, caches are
cold) nor at its end (the batch drains as requests finish and none are sent). So a task waits, with the
load running, until the pipeline has filled — `pipeline_filled`: `concurrency` responses have ended
(every worker has gone round once, so each request in flight was sent into a full batch) and the
warm-up time has passed — before the first window opens on a counter update; and the drain (no new
request, waiting for those in flight) only starts after the last window has closed. Inside a window the
load is the same throughout: `concurrency` requests in flight.

Counting inside a window [start_s, end_s] (the meter's clock): a response's tokens are spread over its
streamed chunks (its `usage.completion_tokens` divided by its chunks; one token a chunk where the server
sent no usage), and the window counts the chunks that arrived inside it; responses are those that ended
inside it; input tokens those of requests whose first token came inside it (their prefill ran in it).
Latencies are those of the responses that ended inside the window.

Open loop (a `request_rate` load). Requests arrive whether or not the server keeps up, so "filled" means
the server's queue has reached its steady level: `open_loop_settled` waits until `SETTLE_RESPONSES`
responses have ended and the load has run at least `SETTLE_LATENCIES` times their median latency (the
first arrivals' whole life lies behind; by Little's law the number in flight is then about rate × latency)
and the warm-up has passed. A window also counts its arrivals and the requests queued (arrived, not yet
answered) at its edges. The arrivals a window receives minus the responses it gives are exactly how much
that queue grew, so `overload_note` flags a task whose windows, pooled, answered fewer than
(1 − `OVERLOAD_TOLERANCE`) of their arrivals (and at least `OVERLOAD_MIN_REQUESTS` fewer): the server fell
behind the offered load, its queue grew, and its tokens/J are those of a saturated server at some other
load, not of the one asked for. Arrivals counted are those of the drawn schedule, not rate × duration, so
the sample's own Poisson spread is not taken for overload.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from moecluster.spec.records import Percentiles, ServeWindow

from moecluster.workloads.serve.load import RequestRecord

TokenCounter = Callable[[str], int]
SETTLE_RESPONSES = 3
SETTLE_LATENCIES = 2.0
OVERLOAD_TOLERANCE = 0.10
OVERLOAD_MIN_REQUESTS = 2


def pipeline_filled(records: Sequence[RequestRecord], concurrency: int) -> float | None:
    """When the `concurrency`-th response ended (the pipeline has filled), None before."""
    ends = sorted(r.ended_s for r in records if r.ended_s is not None)
    return ends[concurrency - 1] if len(ends) >= concurrency else None


def open_loop_settled(records: Sequence[RequestRecord], started_s: float, now_s: float) -> bool:
    """Whether an open-loop load has reached its steady state at `now_s` (see the module's docstring)."""
    latencies = sorted(r.ended_s - r.sent_s for r in records if r.ended_s is not None)
    if len(latencies) < SETTLE_RESPONSES:
        return False
    return now_s - started_s >= SETTLE_LATENCIES * latencies[len(latencies) // 2]


def queued_at(due_s: Sequence[float], records: Sequence[RequestRecord], t: float) -> int:
    """Requests arrived by `t` and not answered by then: waiting at the client or in flight at the server."""
    arrived = sum(1 for d in due_s if d <= t)
    answered = sum(1 for r in records if r.due_s is not None and r.due_s <= t and r.ended_s is not None
                   and r.ended_s <= t)
    return arrived - answered


def overload_note(windows: Sequence[ServeWindow], durations_s: Sequence[float], request_rate: float) -> str:
    """Why an open-loop task's figures are not those of its offered load, "" where the server kept up (see
    the module's docstring)."""
    arrivals = sum(w.arrivals or 0 for w in windows)
    responses = sum(w.responses for w in windows)
    span = sum(durations_s)
    behind = arrivals - responses
    if span <= 0 or behind <= max(OVERLOAD_TOLERANCE * arrivals, OVERLOAD_MIN_REQUESTS - 1):
        return ""
    first, last = windows[0].queued_open, windows[-1].queued_close
    return (f"overloaded: answered {responses / span:.3g} requests/s of {arrivals / span:.3g}/s arriving in the"
            f" windows (offered {request_rate:g}/s; tolerance {OVERLOAD_TOLERANCE:.0%}); {last} requests queued or"
            f" in flight at the last window's close ({first} at the first's opening): the server did not keep up,"
            " so its figures are not those of the offered load")


def percentiles(values: Sequence[float]) -> Percentiles:
    """p50, p90, p99 by linear interpolation between order statistics (None for no values)."""
    if not values:
        return Percentiles()
    data = sorted(values)

    def at(q: float) -> float:
        pos = q * (len(data) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return data[lo] + (data[hi] - data[lo]) * (pos - lo)
    return Percentiles(p50=at(0.5), p90=at(0.9), p99=at(0.99))


def completion_tokens(record: RequestRecord, count: TokenCounter | None) -> float:
    """A response's output tokens: the server's `usage`, else the tokenizer's count of its text, else its chunks."""
    if record.completion_tokens is not None:
        return float(record.completion_tokens)
    if count is not None:
        return float(count("".join(record.text)))
    return float(len(record.chunks))


def prompt_tokens(record: RequestRecord, count: TokenCounter | None) -> float:
    """A request's input tokens: the server's `usage`, else the tokenizer's count of the prompt, else 0."""
    if record.prompt_tokens is not None:
        return float(record.prompt_tokens)
    return float(count(record.prompt)) if count is not None else 0.0


def token_source(records: Sequence[RequestRecord], count: TokenCounter | None) -> str:
    """Where the token counts of `records` came from: `usage`, `tokenizer` or `stream chunks`."""
    if all(r.completion_tokens is not None for r in records):
        return "usage"
    return "tokenizer" if count is not None else "stream chunks (one token a chunk; no usage, no tokenizer)"


def in_flight(records: Sequence[RequestRecord], start_s: float, end_s: float) -> float | None:
    """Requests in flight averaged over [start_s, end_s], from their send and end times."""
    span = end_s - start_s
    if span <= 0:
        return None
    busy = sum(max(0.0, min(r.ended_s, end_s) - max(r.sent_s, start_s)) for r in records if r.ended_s is not None)
    return busy / span


def serve_window(records: Sequence[RequestRecord], start_s: float, end_s: float,
                 count: TokenCounter | None = None, running_batch: float | None = None,
                 due_s: Sequence[float] | None = None) -> ServeWindow:
    """What the window [start_s, end_s] served (see the module's docstring); `due_s`, an open loop's arrival
    times, adds its arrivals and queue."""
    def inside(t: float | None) -> bool:
        return t is not None and start_s <= t < end_s
    output = 0.0
    inputs = 0.0
    ended: list[RequestRecord] = []
    itl: list[float] = []
    for r in records:
        if r.chunks:
            per_chunk = completion_tokens(r, count) / len(r.chunks)
            output += per_chunk * sum(1 for t in r.chunks if inside(t))
        if inside(r.first_token_s):
            inputs += prompt_tokens(r, count)
        if inside(r.ended_s):
            ended.append(r)
    ttft = [r.chunks[0] - r.sent_s for r in ended if r.chunks]
    tpot = []
    for r in ended:
        n = completion_tokens(r, count)
        if r.chunks and n > 1 and r.ended_s is not None:
            tpot.append((r.chunks[-1] - r.chunks[0]) / (n - 1))
        per_chunk = n / len(r.chunks) if r.chunks else 1.0
        itl += [(b - a) / max(per_chunk, 1.0) for a, b in zip(r.chunks, r.chunks[1:])]
    queue: dict[str, int | None] = {}
    if due_s is not None:
        queue = dict(arrivals=sum(1 for d in due_s if inside(d)), queued_open=queued_at(due_s, records, start_s),
                     queued_close=queued_at(due_s, records, end_s))
    return ServeWindow(responses=len(ended), output_tokens=round(output), input_tokens=round(inputs),
                       ttft_s=percentiles(ttft), tpot_s=percentiles(tpot), itl_s=percentiles(itl),
                       in_flight=in_flight(records, start_s, end_s), running_batch=running_batch, **queue)
