"""The node agent's Prometheus exporter: GPU power and energy, plus which task runs where.

- `server`: `Agent` (embeddable) and `serve()` (the process loop with SIGTERM handling);
- `collector`: the metrics, read from a `DeviceSet` on every scrape;
- `sampler`: background power sampling for per-scrape average and maximum power;
- `task_labels`: the file mechanism by which a task tells the agent what it is
  (`FileTaskObserver` is the runner's observer);
- `web_config`: TLS from an exporter-toolkit style web config file.
"""
from moecluster.node.agent.collector import GpuCollector
from moecluster.node.agent.sampler import PowerSampler, PowerWindow
from moecluster.node.agent.server import Agent, AgentConfig, serve
from moecluster.node.agent.task_labels import FileTaskObserver, TaskLabel, default_state_dir, read_task_labels

__all__ = [
    "Agent", "AgentConfig", "FileTaskObserver", "GpuCollector", "PowerSampler", "PowerWindow", "TaskLabel",
    "default_state_dir", "read_task_labels", "serve",
]
