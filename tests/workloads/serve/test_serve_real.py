"""Against a real `transformers serve` (CPU, continuous batching) serving the tiny MoE: the load generator
keeps its requests in flight and records streamed tokens and the server's usage; a serve task pointed at the
running server by `url` measures it (fake meter: the NVML stand-in) and says the GPUs are metered as they are;
the server's whole process group is gone once stopped. One server start for the module."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from moecluster.devices import GpuInfo
from moecluster.spec.records import ServeSpec, TaskResult, TaskSpec
from moecluster.measure.runner import run_task
from moecluster.workloads.serve.load import LoadGenerator
from moecluster.workloads.serve.server import Server
from moecluster.workloads.serve.tiny import TinyModel
from moecluster.workloads.serve.windows import pipeline_filled, serve_window

pytest.importorskip("fastapi")
TRANSFORMERS = str(Path(sys.executable).parent / "transformers")
PROMPTS = ("Why are experts sparse?", "Write a haiku about graphics cards.", "What is 17 multiplied by 23?")


class Recorder:
    """A task observer that keeps what it heard (what the node agent's task labels are written from)."""

    def __init__(self) -> None:
        self.tasks: list[str] = []
        self.counts: list[int] = []
        self.statuses: list[str] = []

    def started(self, spec: TaskSpec, gpus: Sequence[GpuInfo]) -> None:
        self.tasks.append(spec.task_id)

    def progress(self, inferences_total: int) -> None:
        self.counts.append(inferences_total)

    def finished(self, result: TaskResult) -> None:
        self.statuses.append(result.status)


@pytest.fixture(scope="module")
def server(tiny_served_models: tuple[TinyModel, TinyModel], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    moe, _ = tiny_served_models
    os.environ["HF_HUB_OFFLINE"] = "1"
    started = Server.start(f"{TRANSFORMERS} serve {{model}} --port {{port}} --device cpu --continuous-batching",
                           model=str(moe.path), gpus="", log=tmp_path_factory.mktemp("log") / "moe.log",
                           startup_timeout_s=300)
    yield started
    started.stop()
    assert started.process is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(started.process.pid, 0)  # the server's whole group went with it


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_the_load_generator_keeps_requests_in_flight_and_records_usage(
        server: Server, tiny_served_models: tuple[TinyModel, TinyModel]) -> None:
    load = LoadGenerator(server.base_url, str(tiny_served_models[0].path), PROMPTS, concurrency=3, max_tokens=12)
    start = time.monotonic()
    load.start()
    time.sleep(4.0)
    load.stop()
    load.check()
    records = load.snapshot()
    assert len(records) >= 6 and {r.prompt for r in records} == set(PROMPTS) and min(r.sent_s for r in records) >= start
    for r in records:
        assert r.error is None and r.ended_s is not None and r.chunks
        assert r.sent_s < r.chunks[0] <= r.chunks[-1] <= r.ended_s and r.chunks == sorted(r.chunks)
        assert r.completion_tokens is not None and 0 < r.completion_tokens <= 12  # the cap held, usage reported
        assert r.prompt_tokens is not None and r.prompt_tokens > 0
    filled = pipeline_filled(records, 3)
    assert filled is not None
    last_end = max(r.ended_s for r in records if r.ended_s is not None)
    window = serve_window(records, filled, filled + 2.0)
    assert window.responses > 0 and window.output_tokens > 0 and window.input_tokens > 0
    assert window.in_flight == pytest.approx(3.0, abs=0.3)  # three in flight throughout, before the drain
    assert filled + 2.0 < last_end


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_serve_task_measures_a_running_server_by_url_and_says_its_gpus_are_metered_as_they_are(
        server: Server, tiny_served_models: tuple[TinyModel, TinyModel]) -> None:
    moe, _ = tiny_served_models
    serve = ServeSpec(name="tiny-moe", model=str(moe.path), url=server.base_url, concurrency=2, max_tokens=8,
                      prompts=PROMPTS)
    spec = TaskSpec(task_id="url-moe", pair_id="url", kind="moe", impl="served", workload="serve", device="cpu",
                    meter="fake", duration_s=1.0, warmup_s=0.2, repeats=2, run_id="serve-url",
                    model={"params_total": moe.params_total, "params_active": moe.params_active}, serve=serve)
    seen = Recorder()
    result = run_task(spec, observer=seen)
    assert result.status == "ok", result.error
    # the node agent's labels: the task named once it runs, a live token count that only grows, ending on the
    # windows' own count
    assert seen.tasks == ["url-moe"] and len(seen.counts) >= 2 and seen.counts == sorted(seen.counts)
    assert seen.counts[-1] == sum(w.inferences for w in result.windows) and seen.statuses == ["ok"]
    assert result.serve is not None and result.serve.server == "external" and server.base_url in result.serve.note
    assert "metered as they are" in result.serve.note
    assert len(result.windows) == len(result.serve.windows) == 2
    assert all(w.energy_j and w.aligned and w.inferences == s.output_tokens > 0
               for w, s in zip(result.windows, result.serve.windows))
    assert result.params is not None and result.params.active_per_token == moe.params_active
    server.check_alive()  # an external server is left running


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_server_answering_errors_fails_the_task_naming_them_and_no_figure_is_kept(
        server: Server, tiny_served_models: tuple[TinyModel, TinyModel]) -> None:
    moe, _ = tiny_served_models
    # transformers serve refuses vLLM's `ignore_eos`/`min_tokens` (what `output: fixed` sends) with HTTP 422
    serve = ServeSpec(name="tiny-moe", model=str(moe.path), url=server.base_url, concurrency=2, max_tokens=8,
                      prompts=PROMPTS, output="fixed")
    spec = TaskSpec(task_id="url-fixed", pair_id="url", kind="moe", impl="served", workload="serve", device="cpu",
                    meter="fake", duration_s=1.0, warmup_s=0.2, run_id="serve-url", model={}, serve=serve)
    result = run_task(spec)
    assert result.status == "failed" and not result.windows and result.serve is None
    assert result.error is not None and "request failed: HTTP 422" in result.error and "ignore_eos" in result.error
    server.check_alive()
