"""The open loop without a server (the request itself stood in for by a timed stub): requests are sent when
their seeded arrival falls due whatever the server does, a cap holds the rest at the client (still queued),
the drain sends nothing new; a window counts its arrivals and the queue at its edges; a server that falls
behind is flagged, one that keeps up is not; the open loop settles after the first requests' lifetimes."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from moecluster.workloads.serve import load as load_module
from moecluster.workloads.serve.arrivals import Arrivals
from moecluster.workloads.serve.load import LoadGenerator, RequestRecord
from moecluster.workloads.serve.windows import (OVERLOAD_TOLERANCE, open_loop_settled, overload_note,
                                                       queued_at, serve_window)
from moecluster.spec.records import ServeWindow


def stub(latency_s: float) -> Any:
    """A stand-in for `send_one`: every request takes `latency_s` and streams two chunks."""
    async def send_one(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> RequestRecord:
        record = RequestRecord(prompt=body["messages"][0]["content"], sent_s=time.monotonic())
        await asyncio.sleep(latency_s / 2)
        record.chunks.append(time.monotonic())
        record.text.append("x")
        await asyncio.sleep(latency_s / 2)
        record.chunks.append(time.monotonic())
        record.text.append("y")
        record.completion_tokens, record.prompt_tokens = 2, 3
        record.ended_s = time.monotonic()
        return record
    return send_one


def run_for(seconds: float, arrivals: Arrivals, latency_s: float, monkeypatch: pytest.MonkeyPatch,
            max_in_flight: int | None = None) -> LoadGenerator:
    monkeypatch.setattr(load_module, "send_one", stub(latency_s))
    load = LoadGenerator("http://127.0.0.1:1", "m", ["a", "b"], concurrency=0, max_tokens=4, arrivals=arrivals,
                         max_in_flight=max_in_flight)
    load.start()
    time.sleep(seconds)
    load.stop()
    load.check()
    return load


def test_requests_are_sent_when_their_arrival_falls_due(monkeypatch: pytest.MonkeyPatch) -> None:
    arrivals = Arrivals(20.0, seed=3)
    load = run_for(1.5, arrivals, 0.6, monkeypatch)
    assert load.started_s is not None
    due = load.due_times()
    expected = [load.started_s + t for t in arrivals.schedule_s(len(due))]
    assert due == pytest.approx(expected)  # the seeded schedule, from the load's start
    assert 15 <= len(due) <= 50  # 1.5 s at 20/s
    records = load.snapshot()
    assert len(records) == len(due)  # no cap: every arrival was sent, and the drain waited for all
    late = sorted(r.sent_s - r.due_s for r in records if r.due_s is not None)
    assert len(late) == len(records) and late[0] >= 0
    assert late[len(late) // 2] < 0.05 and late[-1] < 0.6  # sent when due, never after waiting for a reply (0.6 s)
    # several in flight at a time: the open loop does not wait for a response before the next request
    assert max(queued_at(due, records, r.sent_s) for r in records) >= 3


def test_a_cap_holds_arrivals_at_the_client_where_they_count_as_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    load = run_for(1.2, Arrivals(20.0, seed=3), 0.4, monkeypatch, max_in_flight=1)
    records, due = load.snapshot(), load.due_times()
    assert len(due) > len(records) >= 2  # arrived during the load, most never sent: the drain sends nothing new
    spans = sorted((r.sent_s, r.ended_s or 0.0) for r in records)
    assert all(b[0] >= a[1] - 1e-3 for a, b in zip(spans, spans[1:]))  # one at a time
    end = max(r.ended_s or 0.0 for r in records)
    assert queued_at(due, records, end - 1e-3) >= 5  # arrived, waiting for the cap


def rec(due: float, ended: float) -> RequestRecord:
    return RequestRecord(prompt="p", sent_s=due, chunks=[ended], text=["x"], ended_s=ended, completion_tokens=1,
                         due_s=due)


def test_a_window_counts_its_arrivals_and_the_queue_at_its_edges() -> None:
    records = [rec(0.0, 1.0), rec(1.0, 4.5), rec(2.0, 6.0), rec(3.0, 12.0)]
    due = [0.0, 1.0, 2.0, 3.0, 5.0]  # the last arrived but was never answered (dropped at the drain)
    w = serve_window(records, 2.5, 5.5, due_s=due)
    assert (w.arrivals, w.queued_open, w.queued_close, w.responses) == (2, 2, 3, 1)
    assert w.arrivals - w.responses == w.queued_close - w.queued_open  # what arrived and was not answered queued
    assert serve_window(records, 2.5, 10.0).arrivals is None  # closed loop: none of these


def window(arrivals: int, responses: int, queued_open: int = 0) -> ServeWindow:
    return ServeWindow(responses=responses, output_tokens=responses, input_tokens=0, arrivals=arrivals,
                       queued_open=queued_open, queued_close=queued_open + arrivals - responses)


def test_a_server_that_falls_behind_its_arrivals_is_flagged_and_one_that_keeps_up_is_not() -> None:
    kept_up = [window(100, 98, 4), window(100, 103, 6)]
    assert overload_note(kept_up, [10.0, 10.0], 10.0) == ""
    short = round(200 * (1 - OVERLOAD_TOLERANCE)) - 5
    behind = [window(100, short // 2, 4), window(100, short - short // 2, 4 + 100 - short // 2)]
    note = overload_note(behind, [10.0, 10.0], 10.0)
    assert note.startswith("overloaded: answered") and "offered 10/s" in note and "did not keep up" in note
    assert overload_note([window(5, 4)], [1.0], 5.0) == ""  # one request short: within the noise of a few


def test_an_open_loop_settles_once_its_first_requests_lifetimes_lie_behind() -> None:
    records = [rec(0.0, 2.0), rec(0.5, 2.5), rec(1.0, 3.0)]  # every latency 2 s
    assert not open_loop_settled(records[:2], 0.0, 10.0)  # too few responses yet
    assert not open_loop_settled(records, 0.0, 3.5)
    assert open_loop_settled(records, 0.0, 4.0)
