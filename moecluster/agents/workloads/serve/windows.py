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
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from moecluster.spec.records import Percentiles, ServeWindow

from .load import RequestRecord

TokenCounter = Callable[[str], int]


def pipeline_filled(records: Sequence[RequestRecord], concurrency: int) -> float | None:
    """When the `concurrency`-th response ended (the pipeline has filled), None before."""
    ends = sorted(r.ended_s for r in records if r.ended_s is not None)
    return ends[concurrency - 1] if len(ends) >= concurrency else None


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
                 count: TokenCounter | None = None, running_batch: float | None = None) -> ServeWindow:
    """What the window [start_s, end_s] served (see the module's docstring)."""
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
    return ServeWindow(responses=len(ended), output_tokens=round(output), input_tokens=round(inputs),
                       ttft_s=percentiles(ttft), tpot_s=percentiles(tpot), itl_s=percentiles(itl),
                       in_flight=in_flight(records, start_s, end_s), running_batch=running_batch)
