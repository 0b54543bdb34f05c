"""The Cluster dashboard: every GPU of every node, from the node agents' series.

Power comes two ways, each labelled: the agent's mean of its 100 ms power samples since the
previous scrape (`moecluster_gpu_power_avg_watts`, catches what a scrape-time reading would
miss), and the rate of NVML's energy counter (`moecluster_gpu_energy_joules_total`, which
misses nothing between scrapes and is what energy over a range integrates).
"""
from __future__ import annotations

from typing import Any

from moecluster.report.dashboards.panels import (
    DS, finish, label_variable, new_dashboard, organize, prom, stat_panel, table_panel, timeseries_panel
)
from moecluster.report.dashboards.sdk import Row, dashboard_models, statetimeline

UID = "moecluster-cluster"
TITLE = "moecluster / Cluster"
GPUS = 'node=~"$node", gpu=~"$gpu"'  # the GPUs the variables select


def _sel(metric: str) -> str:
    return f"{metric}{{{GPUS}}}"


ENERGY = _sel("moecluster_gpu_energy_joules_total")


def _up_timeline() -> Any:
    up = dashboard_models.ValueMap(options={
        "1": dashboard_models.ValueMappingResult(text="up", color="green"),
        "0": dashboard_models.ValueMappingResult(text="down", color="red")})
    return (statetimeline.Panel().title("GPU up").description(
        "moecluster_gpu_up per GPU: 1 when every reading of the GPU worked at that scrape; a GPU that fell off "
        "the bus or whose NVML calls fail shows down while the node's other GPUs go on.")
        .datasource(DS).span(24).height(6).mappings([up])
        .with_target(prom(_sel("moecluster_gpu_up"), "{{node}}/{{gpu}}")))


def build() -> dict[str, Any]:
    d = (new_dashboard(TITLE, UID, "Power, energy and state of every GPU the moecluster node agents see.")
         .with_variable(label_variable("node", "node", "moecluster_gpu_up", title="Node"))
         .with_variable(label_variable("gpu", "gpu", 'moecluster_gpu_up{node=~"$node"}', title="GPU")))
    d = (d.with_row(Row("Cluster"))
         .with_panel(stat_panel(
             "Power now", "Sum of the selected GPUs' power at the last scrape (moecluster_gpu_power_watts).", "watt",
             prom(f"sum({_sel('moecluster_gpu_power_watts')})", "power", instant=True)))
         .with_panel(stat_panel(
             "Mean power over the range", "Increase of the GPUs' energy counters over the selected time range, per "
             "second of it.", "watt", prom(f"sum(rate({ENERGY}[$__range]))", "mean power", instant=True)))
         .with_panel(stat_panel(
             "Energy over the range", "Increase of the selected GPUs' energy counters (NVML's hardware counter) "
             "over the selected time range.", "joule",
             prom(f"sum(increase({ENERGY}[$__range]))", "energy", instant=True)))
         .with_panel(stat_panel(
             "GPUs up / seen", "GPUs whose readings all worked at the last scrape (moecluster_gpu_up), and GPUs the "
             "agents report.", "short",
             prom(f"sum({_sel('moecluster_gpu_up')})", "up", instant=True),
             prom(f"count({_sel('moecluster_gpu_up')})", "seen", instant=True), decimals=0)))
    d = (d.with_row(Row("Power and energy rate"))
         .with_panel(timeseries_panel(
             "Cluster power", "Sum over the selected GPUs: the rate of their energy counters (solid) and the mean "
             "of the agents' 100 ms power samples (avg).", "watt",
             prom(f"sum(rate({ENERGY}[$__rate_interval]))", "energy rate"),
             prom(f"sum({_sel('moecluster_gpu_power_avg_watts')})", "sampled power (avg)"), span=24))
         .with_panel(timeseries_panel(
             "Power per node", "Mean of each GPU's 100 ms power samples since the previous scrape, summed per node.",
             "watt", prom(f"sum by (node) ({_sel('moecluster_gpu_power_avg_watts')})", "{{node}}")))
         .with_panel(timeseries_panel(
             "Energy rate per node", "Rate of the GPUs' energy counters, summed per node (watts: joules per "
             "second).", "watt", prom(f"sum by (node) (rate({ENERGY}[$__rate_interval]))", "{{node}}")))
         .with_panel(timeseries_panel(
             "Power per GPU", "Mean and maximum of each GPU's 100 ms power samples since the previous scrape.",
             "watt", prom(_sel("moecluster_gpu_power_avg_watts"), "{{node}}/{{gpu}} mean"),
             prom(_sel("moecluster_gpu_power_max_watts"), "{{node}}/{{gpu}} max")))
         .with_panel(timeseries_panel(
             "Energy rate per GPU", "Rate of each GPU's energy counter.", "watt",
             prom(f"rate({ENERGY}[$__rate_interval])", "{{node}}/{{gpu}}"))))
    d = (d.with_row(Row("GPU state"))
         .with_panel(timeseries_panel(
             "Utilisation", "Fraction of the last sample period in which a kernel ran (NVML).", "percentunit",
             prom(_sel("moecluster_gpu_utilization_ratio"), "{{node}}/{{gpu}}"), span=8, max_val=1.0))
         .with_panel(timeseries_panel(
             "SM clock", "Streaming-multiprocessor clock.", "hertz",
             prom(_sel("moecluster_gpu_sm_clock_hertz"), "{{node}}/{{gpu}}"), span=8))
         .with_panel(timeseries_panel(
             "Temperature", "GPU core temperature.", "celsius",
             prom(_sel("moecluster_gpu_temperature_celsius"), "{{node}}/{{gpu}}"), span=8, min_val=None))
         .with_panel(timeseries_panel(
             "Memory used", "Framebuffer memory in use.", "bytes",
             prom(_sel("moecluster_gpu_memory_used_bytes"), "{{node}}/{{gpu}}")))
         .with_panel(timeseries_panel(
             "Power against the limit", "Mean sampled power over the enforced power limit: near 1, the GPU is "
             "power-capped and its clocks drop.", "percentunit",
             prom(f"{_sel('moecluster_gpu_power_avg_watts')} / on (node, uuid) "
                  f"{_sel('moecluster_gpu_power_limit_watts')}", "{{node}}/{{gpu}}")))
         .with_panel(_up_timeline())
         .with_panel(table_panel(
             "Energy per node over the range", "Increase of the energy counters of each node's selected GPUs over "
             "the selected time range.",
             prom(f"sum by (node) (increase({ENERGY}[$__range]))", instant=True, table_format=True),
             transformations=[organize(exclude=["Time"], rename={"Value": "energy"})], unit="joule", span=24,
             height=6)))
    return finish(d)
