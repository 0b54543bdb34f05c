"""The load generator: `concurrency` streaming chat completions kept in flight against one server.

Written on `httpx` (which the `openai` client is built on) rather than taken from aiperf or guidellm:
those are whole benchmark programs that own the timeline (their own warm-up, duration and report),
while a task here must keep the load running across windows whose edges the energy counter places,
and needs each request's send time, every streamed chunk's arrival and the server's `usage` — all on
the meter's clock (`time.monotonic`). A request is `POST /v1/chat/completions` with `stream: true` and
`stream_options: {include_usage: true}`; the server-sent events are read line by line.

`LoadGenerator` runs an asyncio loop in a thread. Closed loop: `concurrency` workers each send the next
prompt (round-robin) as soon as their previous response ended, so the server always holds `concurrency`
requests. Open loop (`arrivals`): each request is due at its time of the seeded arrival schedule
(`arrivals.Arrivals`) counted from the load's start, and is sent then whatever the server does — unless
`max_in_flight` requests are already sent and unanswered, when it waits at the client (still counted as
queued: its due time is kept in `due`). `stop()` sends no new request (those waiting at the client are
dropped) and waits for those in flight (the drain: outside every window).
A request answered with an HTTP error, a broken stream or no content is recorded as an error; the task
fails on the first one, naming it.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Sequence

import httpx

from moecluster.workloads.serve.arrivals import Arrivals

POLL_S = 0.05  # how often the open loop's dispatcher looks whether it was stopped while waiting for an arrival


@dataclass
class RequestRecord:
    """One request: times on the `time.monotonic` clock; `chunks` holds the arrival of every streamed chunk
    with text; token counts from the server's `usage` (None where it sent none)."""

    prompt: str
    sent_s: float
    chunks: list[float] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    ended_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    due_s: float | None = None  # open loop: when its arrival was scheduled (it may have waited for the cap)

    @property
    def first_token_s(self) -> float | None:
        return self.chunks[0] if self.chunks else None


def request_body(model: str, prompt: str, max_tokens: int, output: Literal["natural", "fixed"]) -> dict[str, Any]:
    """The chat-completion request for one prompt. `fixed` asks for exactly `max_tokens` (vLLM's and SGLang's
    `ignore_eos` and `min_tokens`; a server that ignores them stops early, which the result shows in its
    tokens per response)."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}],
                            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True},
                            "temperature": 0.0}
    if output == "fixed":
        body.update(ignore_eos=True, min_tokens=max_tokens)
    return body


def _consume(record: RequestRecord, data: str, clock: Callable[[], float]) -> bool:
    """Read one server-sent event's data into `record`; False at `[DONE]`."""
    if data.strip() == "[DONE]":
        return False
    event = json.loads(data)
    if "error" in event:
        raise ValueError(f"server error in stream: {str(event['error'])[:200]}")
    for choice in event.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            record.chunks.append(clock())
            record.text.append(content)
    usage = event.get("usage")
    if usage:
        record.prompt_tokens = usage.get("prompt_tokens")
        record.completion_tokens = usage.get("completion_tokens")
    return True


async def send_one(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                   clock: Callable[[], float] = time.monotonic) -> RequestRecord:
    """Send one streaming request and record it (errors recorded, not raised)."""
    record = RequestRecord(prompt=body["messages"][0]["content"], sent_s=clock())
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode("utf-8", "replace")
                record.error = f"HTTP {response.status_code}: {text[:300]}"
                return record
            async for line in response.aiter_lines():
                if line.startswith("data:") and not _consume(record, line[5:].strip(), clock):
                    break
        if not record.chunks:
            record.error = "the response streamed no text"
    except (httpx.HTTPError, ValueError) as exc:
        record.error = f"{type(exc).__name__}: {str(exc)[:300]}"
    record.ended_s = clock()
    return record


class LoadGenerator:
    """Keeps `concurrency` requests in flight (or sends them as `arrivals` fall due) against `base_url`, from a
    thread of its own."""

    def __init__(self, base_url: str, model: str, prompts: Sequence[str], *, concurrency: int, max_tokens: int,
                 output: Literal["natural", "fixed"] = "natural", request_timeout_s: float = 300.0,
                 arrivals: Arrivals | None = None, max_in_flight: int | None = None) -> None:
        if not prompts:
            raise ValueError("no prompts to send")
        if arrivals is None and concurrency < 1:
            raise ValueError("a closed-loop load needs concurrency >= 1")
        self.arrivals, self.max_in_flight = arrivals, max_in_flight
        self.due: list[float] = []  # open loop: every arrival reached so far, sent or waiting at the client
        self.started_s: float | None = None
        self.url = base_url.rstrip("/") + "/v1/chat/completions"
        self.model, self.prompts = model, list(prompts)
        self.concurrency, self.max_tokens, self.output = concurrency, max_tokens, output
        self.request_timeout_s = request_timeout_s
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="moecluster-load", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to the task's thread by `check`
            self._crash = exc

    def _limits(self) -> httpx.Limits:
        """Connections enough for every request in flight (none pooled away: a request never waits for one)."""
        most = self.concurrency if self.arrivals is None else self.max_in_flight
        return httpx.Limits(max_connections=None if most is None else most + 4,
                            max_keepalive_connections=None if most is None else most + 4)

    async def _main(self) -> None:
        prompts = itertools.cycle(self.prompts)
        timeout = httpx.Timeout(self.request_timeout_s, connect=30.0)
        async with httpx.AsyncClient(timeout=timeout, limits=self._limits()) as client:
            self.started_s = time.monotonic()  # once the client is built (its TLS setup takes a while)
            if self.arrivals is not None:
                await self._open_loop(client, self.arrivals, prompts)
                return
            async def worker() -> None:
                while not self._stopping.is_set():
                    body = request_body(self.model, next(prompts), self.max_tokens, self.output)
                    record = await send_one(client, self.url, body)
                    with self._lock:
                        self.records.append(record)
                    if record.error:
                        return
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _open_loop(self, client: httpx.AsyncClient, arrivals: Arrivals, prompts: Iterator[str]) -> None:
        """Send each request when its arrival falls due (waiting for the cap where there is one), until `stop`
        or a failed request; then drop those still waiting at the client and wait for those sent."""
        assert self.started_s is not None
        gate = asyncio.Semaphore(self.max_in_flight) if self.max_in_flight else None
        sending: set[asyncio.Task[None]] = set()

        async def one(body: dict[str, Any], due: float) -> None:
            if gate is not None:
                await gate.acquire()
            try:
                if self._stopping.is_set():
                    return  # arrived, waited for the cap, never sent: the drain sends nothing new
                record = await send_one(client, self.url, body)
                record.due_s = due
                with self._lock:
                    self.records.append(record)
            finally:
                if gate is not None:
                    gate.release()

        for offset in arrivals.offsets_s():
            due = self.started_s + offset
            while not self._stopping.is_set() and time.monotonic() < due:
                await asyncio.sleep(min(POLL_S, max(0.0, due - time.monotonic())))
            if self._stopping.is_set() or self._failed():
                break
            with self._lock:
                self.due.append(due)
            task = asyncio.create_task(one(request_body(self.model, next(prompts), self.max_tokens, self.output), due))
            sending.add(task)
            task.add_done_callback(sending.discard)
        if sending:
            await asyncio.gather(*sending)

    def _failed(self) -> bool:
        with self._lock:
            return any(r.error for r in self.records)

    def due_times(self) -> list[float]:
        """Open loop: the arrival times reached so far (each request sent or waiting at the client)."""
        with self._lock:
            return list(self.due)

    def snapshot(self) -> list[RequestRecord]:
        """The finished requests so far."""
        with self._lock:
            return list(self.records)

    def completed(self) -> int:
        with self._lock:
            return len(self.records)

    def check(self) -> None:
        """Raise where a request failed or the generator itself crashed."""
        if self._crash is not None:
            raise RuntimeError(f"load generator crashed: {type(self._crash).__name__}: {self._crash}")
        with self._lock:
            failed = next((r for r in self.records if r.error), None)
        if failed is not None:
            raise RuntimeError(f"request failed: {failed.error}")

    def stop(self, timeout_s: float | None = None) -> None:
        """Send no new request; wait (at most `timeout_s`, default the request timeout) for those in flight."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.request_timeout_s if timeout_s is None else timeout_s)
