"""One `serve` task on this node: idle, server up, load running, steady-state windows, server down.

The runner (`measure.runner.run_task`) hands a spec of workload `serve` here; the pair engine
(`measure.pair.run_pair`) calls it once per window of each side in counterbalanced order (A B B A), so
every side's window starts a fresh server, and server start, model load, warm-up and drain all fall
outside windows. In order:

1. the task's GPUs and meter, as for every workload (`runner.open_task_devices`, `select_gpus`), and the
   run's idle power (`meters.idle`, read while nothing runs);
2. with a `command`: refuse where another process computes on the task's GPUs (NVML; fake and CPU devices
   cannot tell), start the server (`server.Server.start`, log in `<run>/servers/<task>.log`) and wait for
   health; with a `url`: the external server, whose GPUs are metered as they are;
3. the load generator (`load.LoadGenerator`), `concurrency` requests in flight or requests arriving at
   `request_rate` (`arrivals.Arrivals`, seeded: every side of a pair gets the same arrivals), and, where
   the server has a `/metrics` running-batch gauge, its poller;
4. the pipeline fills (`windows.pipeline_filled`; open loop: `windows.open_loop_settled`) and the warm-up
   passes;
5. each window opens and closes on energy-counter updates (`EnergyMeter.measure` with `keep_busy`: the
   load simply goes on until the closing update), the server's health checked throughout;
6. no new request; those in flight finish (the drain); the window's figures are counted from the
   request records (`windows.serve_window`), an open loop's server that fell behind flagged
   (`windows.overload_note`); the server is stopped (process group, SIGTERM, SIGKILL).

Any failure — a server that exits, is never healthy, answers an error — fails the task with the cause and
the server log's last lines; nothing of it is reported as a number.
"""
from __future__ import annotations

import os
import socket
import time
import traceback
from typing import TYPE_CHECKING, Callable, Sequence

from moecluster.devices import DeviceSet, Gpu
from moecluster.measure.meters.energy import EnergyMeter, EnergyReading, Until
from moecluster.measure.meters.idle import IdleCache, idle_for_run, idle_scope
from moecluster.spec.records import ParamCounts, ServeSpec, ServeStats, ServeWindow, TaskResult, TaskSpec, Window

from moecluster.workloads.serve.arrivals import Arrivals
from moecluster.workloads.serve.load import LoadGenerator
from moecluster.workloads.serve.metrics import BatchPoller
from moecluster.workloads.serve.server import Server, ServerFailed, log_path
from moecluster.workloads.serve.windows import (
    TokenCounter, open_loop_settled, overload_note, pipeline_filled, serve_window, token_source
)

if TYPE_CHECKING:
    from moecluster.measure.observer import TaskObserver

POLL_S = 0.05
PROGRESS_EVERY_S = 0.5
EXIT_WAIT_S = 2.0  # how long a failed request waits to see whether the server died (its exit is then the cause)
EXTERNAL_NOTE = ("external server at {url}: not started by moecluster; the task's GPUs are metered as they are,"
                 " with whatever else runs on them")


def params_of(spec: TaskSpec) -> ParamCounts:
    """The served model's parameter counts, as the sweep gave them (total and active per token)."""
    return ParamCounts(total=int(spec.model.get("params_total", 0)),
                       active_per_token=int(spec.model.get("params_active", 0)))


def busy_gpus(gpus: Sequence[Gpu], own: set[int]) -> str | None:
    """Which of `gpus` another process computes on (None where none, or where the devices cannot tell)."""
    for g in gpus:
        pids = set(g.process_ids() or ()) - own
        if pids:
            return f"GPU {g.info.index} is in use by process(es) {sorted(pids)[:5]}"
    return None


def gpus_placeholder(gpus: Sequence[Gpu]) -> str:
    """What `{gpus}` becomes: `CUDA_VISIBLE_DEVICES` as Ray set it, else the GPUs' indices, comma-separated."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return visible
    return ",".join(str(g.info.index) for g in gpus)


def _token_counter(model: str) -> TokenCounter | None:
    """The served model's tokenizer as a counter, where transformers can load it locally (else None)."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model, local_files_only=True)
    except Exception:  # noqa: BLE001 - no tokenizer: counts come from stream chunks, and the result says so
        return None
    return lambda text: len(tok.encode(text, add_special_tokens=False))


def load_of(serve: ServeSpec, base_url: str) -> LoadGenerator:
    """The task's load generator: closed loop, or open loop on the spec's seeded arrivals."""
    arrivals = None if serve.request_rate is None else Arrivals(serve.request_rate, serve.burstiness,
                                                                  serve.arrival_seed)
    return LoadGenerator(base_url, serve.model, serve.prompts, concurrency=serve.concurrency,
                         max_tokens=serve.max_tokens, output=serve.output, request_timeout_s=serve.request_timeout_s,
                         arrivals=arrivals, max_in_flight=serve.max_in_flight)


def _wait_filled(load: LoadGenerator, server: Server, concurrency: int, warmup_s: float, timeout_s: float) -> None:
    """Until the load is steady — `concurrency` responses have ended (closed loop; `concurrency` 0: the open
    loop has settled, `open_loop_settled`) — and `warmup_s` has passed since the load started."""
    start = time.monotonic()
    while True:
        load.check()
        server.check_alive()
        if concurrency > 0:
            filled = pipeline_filled(load.snapshot(), concurrency) is not None
        else:
            filled = open_loop_settled(load.snapshot(), load.started_s or start, time.monotonic())
        if filled and time.monotonic() - start >= warmup_s:
            return
        if time.monotonic() - start > timeout_s:
            need = f"of {concurrency} responses" if concurrency > 0 else "responses, the open loop never settled,"
            raise server.failure(f"pipeline not filled: {load.completed()} {need} in {timeout_s:g} s")
        time.sleep(POLL_S)


def _watched_sleep(seconds: float, load: LoadGenerator, server: Server,
                   progress: Callable[[float], None] | None = None) -> None:
    """Sleep `seconds` while the load runs, checking the server and the requests every `POLL_S`, and calling
    `progress(now)` every `PROGRESS_EVERY_S` (the node agent's live count)."""
    deadline = time.monotonic() + seconds
    reported = 0.0
    while time.monotonic() < deadline:
        load.check()
        server.check_alive()
        if progress is not None and time.monotonic() - reported >= PROGRESS_EVERY_S:
            reported = time.monotonic()
            progress(reported)
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def _window_of(meter: EnergyMeter, seconds: float, load: LoadGenerator, server: Server,
               observer: "TaskObserver | None" = None, done: int = 0) -> tuple[EnergyReading, float, float, float]:
    """One window: its reading, its start and end on the meter's clock, and its wall-clock start.

    While it runs, `observer` hears `done` plus the window's output tokens so far, counted as the window's own
    (`serve_window`) over the responses ended so far: never more than the window's final count, so the node
    agent's live count (Grafana's tokens/s and tokens/J while the task runs) only grows."""
    edges: list[float] = []

    def live(now: float) -> None:
        if observer is not None:
            observer.progress(done + serve_window(load.snapshot(), edges[0], now).output_tokens)

    def work() -> None:
        edges.extend((time.monotonic(), time.time()))
        _watched_sleep(seconds, load, server, live)
        edges.append(time.monotonic())

    def keep_busy(until: Until) -> None:
        while not until():  # the load goes on by itself: the same work, uncounted, until the closing update
            load.check()
            server.check_alive()
            time.sleep(meter.alignment.poll_s)

    _, reading = meter.measure(work, keep_busy=keep_busy)
    return reading, edges[0], edges[2], edges[1]


def run_serve_task(spec: TaskSpec, *, devices: DeviceSet | None = None, gpu_indices: Sequence[int] | None = None,
                   node: str | None = None, observer: "TaskObserver | None" = None,
                   log: Callable[[str], None] | None = None, idle_cache: IdleCache | None = None) -> TaskResult:
    """Measure the served model of `spec` (see the module's docstring). Never raises for a failing task."""
    from moecluster.measure import runner

    node = node or socket.gethostname()
    started = time.time()
    own = devices is None
    say = log or (lambda _msg: None)
    gpus: list[Gpu] = []
    server: Server | None = None
    load: LoadGenerator | None = None
    poller: BatchPoller | None = None
    try:
        serve = spec.serve
        if serve is None:
            raise ValueError("a serve task needs its `serve` settings")
        if spec.repeats < 1 or spec.duration_s <= 0 or spec.warmup_s < 0:
            raise ValueError("repeats must be >= 1, duration_s > 0 and warmup_s >= 0")
        device = runner.resolve_device(spec.device)
        if devices is None:
            devices = runner.open_task_devices(spec, device, node)
        gpus = runner.select_gpus(devices, device, gpu_indices)
        meter = EnergyMeter(devices, gpus, sample_interval_s=0.1 if spec.sample_power else None)
        runner.set_fake_load(gpus, 0.0)
        cache = idle_cache if idle_cache is not None else IdleCache()
        idle = idle_for_run(meter, idle_scope(spec.run_id, spec.replicate), cache)
        meter.update_period_s()
        server, stats = _server(spec, serve, gpus, say)
        if observer is not None:
            observer.started(spec, [g.info for g in gpus])
        load = load_of(serve, server.base_url)
        poller = BatchPoller(server.base_url)
        runner.set_fake_load(gpus, 1.0)
        load.start()
        poller.start()
        _wait_filled(load, server, serve.concurrency, spec.warmup_s, serve.request_timeout_s)
        measured: list[tuple[EnergyReading, float, float, float]] = []
        for _ in range(spec.repeats):
            done = sum(serve_window(load.snapshot(), m[1], m[2]).output_tokens for m in measured)
            measured.append(_window_of(meter, spec.duration_s, load, server, observer, done))
        load.stop()
        poller.stop()
        runner.set_fake_load(gpus, 0.0)
        load.check()
        server.check_alive()
        windows, stats = _counted(spec, serve, load, server, poller, measured, stats, say)
        if observer is not None:
            observer.progress(sum(w.inferences for w in windows))
        readings = [m[0] for m in measured]
        result = TaskResult(
            spec=spec, node=node, started_at=started, status="ok", gpus=runner.gpu_records(gpus, device, node),
            params=params_of(spec), windows=tuple(windows), energy_source=readings[-1].source,
            energy_unavailable_reason=readings[-1].unavailable_reason,
            idle_power_w=idle.power_w if idle else None, idle_settle_s=idle.settle_s if idle else None,
            idle_note=idle.note if idle else None, versions=runner.versions(devices),
            drift=runner.window_drift(windows), warnings=runner._warnings(readings, idle, gpus), serve=stats,
            finished_at=time.time())
    except Exception as exc:  # noqa: BLE001 - a task failure is data, not a crash
        say(traceback.format_exc())
        if server is not None and server.log is not None and not isinstance(exc, ServerFailed):
            exc = _cause(server, exc)
        result = TaskResult(spec=spec, node=node, started_at=started, status="failed",
                            error=f"{type(exc).__name__}: {exc}", finished_at=time.time())
    finally:
        runner.set_fake_load(gpus, 0.0)
        if load is not None:
            load.stop(timeout_s=5.0)
        if poller is not None:
            poller.stop()
        if server is not None:
            server.stop()
        if own and devices is not None:
            devices.close()
    if observer is not None:
        observer.finished(result)
    return result


def _counted(spec: TaskSpec, serve: ServeSpec, load: LoadGenerator, server: Server, poller: BatchPoller,
             measured: Sequence[tuple[EnergyReading, float, float, float]], stats: ServeStats,
             say: Callable[[str], None]) -> tuple[list[Window], ServeStats]:
    """The measured windows counted from the drained load's records: each `Window` (its output tokens as
    inferences) and the serving side of the result (an open loop's overload note included)."""
    from moecluster.measure import runner

    records = load.snapshot()
    due = load.due_times() if serve.request_rate is not None else None
    count = None if all(r.completion_tokens is not None for r in records) else _token_counter(serve.model)
    serve_windows: list[ServeWindow] = []
    windows: list[Window] = []
    for i, (reading, start_s, end_s, wall_s) in enumerate(measured):
        sw = serve_window(records, start_s, end_s, count, poller.mean(start_s, end_s), due)
        if sw.output_tokens <= 0:
            raise server.failure(f"window {i + 1}: no token streamed in {end_s - start_s:.3g} s")
        serve_windows.append(sw)
        windows.append(runner._window(reading, sw.output_tokens, wall_s, i))
        say(f"{spec.task_id}: window {i + 1}/{spec.repeats}: {sw.output_tokens / reading.duration_s:,.1f}"
            f" output tokens/s, {sw.responses} responses")
    overload = "" if serve.request_rate is None else overload_note(
        serve_windows, [m[2] - m[1] for m in measured], serve.request_rate)
    if overload:
        say(f"{spec.task_id}: {overload}")
    return windows, ServeStats(server=stats.server, windows=tuple(serve_windows), note=stats.note,
                               command=stats.command, log=stats.log, token_counts=token_source(records, count),
                               metrics=poller.gauge, overload=overload)


def _cause(server: Server, exc: Exception) -> ServerFailed:
    """What failed a task whose requests failed: the server's exit where it died (the requests' errors follow
    from it; it is given `EXIT_WAIT_S` to be seen), else the requests' errors; either with the log's tail."""
    deadline = time.monotonic() + EXIT_WAIT_S
    while True:
        try:
            server.check_alive()
        except ServerFailed as died:
            return died
        if time.monotonic() >= deadline:
            return server.failure(str(exc))
        time.sleep(POLL_S)


def _server(spec: TaskSpec, serve: ServeSpec, gpus: Sequence[Gpu], say: Callable[[str], None]
            ) -> tuple[Server, ServeStats]:
    """The task's server, started and healthy (or the external one), and what the result says of it."""
    if serve.url:
        return Server.external(serve.url), ServeStats(server="external", note=EXTERNAL_NOTE.format(url=serve.url))
    if serve.command is None:
        raise ValueError("a serve task needs a command or a url")
    busy = busy_gpus(gpus, {os.getpid()})
    if busy:
        raise RuntimeError(f"{busy}: refusing to measure a server on GPUs another process uses")
    log, why = log_path(serve.log_dir, spec.task_id)
    say(f"{spec.task_id}: starting {serve.name} (log {log})")
    model = os.path.expanduser(serve.model) if serve.model.startswith("~/") else serve.model  # this node's home
    server = Server.start(serve.command, model=model, gpus=gpus_placeholder(gpus), log=log,
                          startup_timeout_s=serve.startup_timeout_s)
    return server, ServeStats(server="started", command=server.command, log=str(log), note=why or "")
