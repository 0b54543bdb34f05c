"""Read the GPU energy counters of a whole cluster from Prometheus' HTTP API.

The agents export `moecluster_gpu_energy_joules_total{node, gpu, uuid, name}` for every GPU
of every node, busy or not. Rather than `increase()` (which extrapolates to the window's
edges and so can be off by a scrape interval's worth of energy), this fetches the raw
samples of the counter over the run with a range selector (`metric[Ns]` in an instant
query; chunked for long runs) and integrates locally: the counter is interpolated linearly
between scrapes, so the energy between any two instants inside the scraped span is exact to
the power's variation within one scrape interval. Counter resets (an agent restart) are
undone as Prometheus' `increase()` does.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

ENERGY_METRIC = "moecluster_gpu_energy_joules_total"


class PrometheusError(RuntimeError):
    """Prometheus could not be queried; the message names the URL and the cause."""


@dataclass(frozen=True, order=True)
class GpuKey:
    """One GPU as the exporter labels it."""

    node: str
    gpu: str
    uuid: str
    name: str = ""

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> GpuKey:
        return cls(node=labels.get("node", ""), gpu=labels.get("gpu", ""), uuid=labels.get("uuid", ""),
                   name=labels.get("name", ""))


@dataclass(frozen=True)
class Prometheus:
    """A Prometheus server's query API at `url` (e.g. http://head:9090)."""

    url: str
    timeout_s: float = 15.0

    def query(self, expr: str, at_s: float) -> tuple[str, list[dict[str, Any]]]:
        """An instant query at `at_s` (Unix seconds): (resultType, result)."""
        endpoint = self.url.rstrip("/") + "/api/v1/query"
        try:
            resp = requests.get(endpoint, params={"query": expr, "time": f"{at_s:.3f}"}, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise PrometheusError(f"Prometheus at {self.url} unreachable: {type(exc).__name__}: {exc}") from None
        try:
            body = resp.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {self.url} answered HTTP {resp.status_code} without JSON"
                                  f" for {expr!r}") from None
        if resp.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"Prometheus at {self.url} rejected {expr!r}: HTTP {resp.status_code}"
                                  f" {body.get('errorType', '')} {body.get('error', '')}".rstrip())
        data = body.get("data", {})
        return data.get("resultType", ""), data.get("result", [])


@dataclass
class CounterSeries:
    """Raw samples of one GPU's energy counter; `joules` is made monotonic (resets undone)."""

    key: GpuKey
    raw: dict[float, float] = field(default_factory=dict)
    times_s: list[float] = field(default_factory=list)
    joules: list[float] = field(default_factory=list)

    def add_raw(self, samples: list[tuple[float, float]]) -> None:
        self.raw.update(samples)
        self.times_s = sorted(self.raw)
        offset, prev = 0.0, None
        mono: list[float] = []
        for t in self.times_s:
            v = self.raw[t]
            if prev is not None and v < prev:
                offset += prev
            mono.append(v + offset)
            prev = v
        self.joules = mono

    def at(self, t_s: float) -> float | None:
        """The counter at `t_s`, interpolated between samples; None outside the scraped span."""
        ts = self.times_s
        if not ts or t_s < ts[0] or t_s > ts[-1]:
            return None
        i = bisect.bisect_left(ts, t_s)
        if ts[i] == t_s:
            return self.joules[i]
        t0, t1 = ts[i - 1], ts[i]
        j0, j1 = self.joules[i - 1], self.joules[i]
        return j0 + (j1 - j0) * (t_s - t0) / (t1 - t0)

    def energy_j(self, t0_s: float, t1_s: float) -> float | None:
        a, b = self.at(t0_s), self.at(t1_s)
        return None if a is None or b is None else b - a


def energy_series(prom: Prometheus, start_s: float, end_s: float, *, margin_s: float = 120.0,
                  chunk_s: float = 3600.0, metric: str = ENERGY_METRIC) -> dict[GpuKey, CounterSeries]:
    """Raw counter samples of every GPU from `start_s - margin_s` to `end_s + margin_s`.

    The margin lets the counter be interpolated at the run's very edges (it must exceed the
    scrape interval). Long spans are fetched in chunks of `chunk_s` to stay below the
    server's per-query sample limit.
    """
    if end_s < start_s:
        raise ValueError(f"end {end_s} before start {start_s}")
    t, final = start_s - margin_s, end_s + margin_s
    out: dict[GpuKey, CounterSeries] = {}
    while t < final:
        t_end = min(t + chunk_s, final)
        window = max(1, math.ceil(t_end - t))
        kind, result = prom.query(f"{metric}[{window}s]", at_s=t_end)
        if result and kind != "matrix":
            raise PrometheusError(f"Prometheus at {prom.url} returned {kind!r} for a range selector")
        for series in result:
            key = GpuKey.from_labels(series.get("metric", {}))
            samples = [(float(ts), float(v)) for ts, v in series.get("values", [])]
            out.setdefault(key, CounterSeries(key)).add_raw(samples)
        t = t_end
    return out
