"""The batch the server actually ran, from its own Prometheus `/metrics` where it has one.

vLLM exports `vllm:num_requests_running`, SGLang `sglang:num_running_reqs`, TGI `tgi_batch_current_size`:
the requests in the running batch now. `BatchPoller` reads the endpoint every `interval_s` in a thread
(parsed with `prometheus_client.parser`, summed over the gauge's label sets) and `mean(start_s, end_s)` is
the average of the samples taken inside a window. A server without the endpoint or the gauge (`transformers
serve`) gives None: the result then shows no running batch, not a guess.
"""
from __future__ import annotations

import threading
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

RUNNING_GAUGES = ("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size")


def running_batch(text: str) -> tuple[str, float] | None:
    """The first known running-batch gauge in a `/metrics` page and its value summed over label sets."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in RUNNING_GAUGES:
                found[sample.name] = found.get(sample.name, 0.0) + float(sample.value)
    name = next((g for g in RUNNING_GAUGES if g in found), None)
    return (name, found[name]) if name is not None else None


class BatchPoller:
    """Samples the server's running batch every `interval_s` until `stop()`; gives up on the first page
    without a known gauge (the server has none)."""

    def __init__(self, base_url: str, interval_s: float = 0.5) -> None:
        self.url = base_url.rstrip("/") + "/metrics"
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self.gauge = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="moecluster-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(self.url)
                    found = running_batch(response.text) if response.status_code == 200 else None
                except (httpx.HTTPError, ValueError):
                    found = None
                if found is None:
                    return
                self.gauge = found[0]
                self.samples.append((time.monotonic(), found[1]))
                self._stop.wait(self.interval_s)

    def mean(self, start_s: float, end_s: float) -> float | None:
        values = [v for t, v in list(self.samples) if start_s <= t <= end_s]
        return sum(values) / len(values) if values else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)
