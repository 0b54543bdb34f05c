"""`moecluster agent`: the node agent exporting GPU power, energy and task labels to Prometheus."""
from __future__ import annotations

import logging
import socket
from pathlib import Path

import click

from moecluster.node.agent.server import ALL_INTERFACES, DEVICE_KINDS, AgentConfig, serve
from moecluster.node.agent.web_config import WebConfigError
from moecluster.node.private_dir import UnsafeDirectory

from moecluster.cli.errors import InputError

FAKE_OPTIONS = ("fake_gpus", "fake_idle_w", "fake_busy_w", "fake_load", "fake_fault_file")


@click.command("agent")
@click.option("--port", type=int, default=9400, show_default=True, help="TCP port of /metrics (0: any free port).")
@click.option("--host", default=None,
              help="Address to bind (that one only); 127.0.0.1 to serve this machine only (e.g. behind a TLS"
                   " proxy).  [default: this node's own address, the source address of its default route,"
                   " and 127.0.0.1]")
@click.option("--all-interfaces", is_flag=True,
              help=f"Bind every interface ({ALL_INTERFACES}) instead of the node's own address.")
@click.option("--interval", "interval_s", type=float, default=0.1, show_default=True,
              help="Seconds between background power samples (feeds the per-scrape average and maximum).")
@click.option("--device", type=click.Choice(DEVICE_KINDS), default="auto", show_default=True,
              help="GPU backend: nvml, fake (test double), none, or auto (NVML if it starts, else none).")
@click.option("--node", default=None, help="Value of the `node` label.  [default: this host's name]")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory where running tasks publish their labels.  "
                   "[default: $MOECLUSTER_STATE_DIR, else /tmp/moecluster-<uid>/tasks]")
@click.option("--web-config-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="exporter-toolkit style web config; its tls_server_config switches on HTTPS.")
@click.option("--fake-gpus", type=int, default=None, help="fake: number of GPUs.  [default: 2]")
@click.option("--fake-idle-w", type=float, default=None, help="fake: power at load 0, W.  [default: 60]")
@click.option("--fake-busy-w", type=float, default=None, help="fake: power at load 1, W.  [default: 300]")
@click.option("--fake-load", type=float, default=None, help="fake: constant load 0..1.  [default: 0]")
@click.option("--fake-fault-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="fake: file listing GPU indices (one per line) that fail from now on; edit it to inject faults.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info", show_default=True)
def agent(port: int, host: str | None, all_interfaces: bool, interval_s: float, device: str, node: str | None,
          state_dir: Path | None, web_config_file: Path | None, log_level: str, **fake: object) -> None:
    """Serve this node's GPU power, energy and running tasks at /metrics for Prometheus.

    Per GPU: power (instant, and mean/max of the samples since the last scrape), NVML's energy
    counter, utilisation, SM clock, temperature, memory, power limit and `up`; per running
    task: `moecluster_task_info` and `moecluster_task_inferences_total`. Read-only; stops
    cleanly on SIGTERM.
    """
    if all_interfaces and host is not None:
        raise InputError(f"--all-interfaces binds {ALL_INTERFACES}: give it or --host {host}, not both")
    given = {k: v for k, v in fake.items() if v is not None}
    if given and device != "fake":
        name = "--" + next(iter(given)).replace("_", "-")
        raise InputError(f"{name} needs --device fake (got --device {device})")
    try:
        config = AgentConfig(host=ALL_INTERFACES if all_interfaces else host, port=port, interval_s=interval_s,
                             device=device, node=node or socket.gethostname(), state_dir=state_dir,
                             web_config_file=web_config_file, **given)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(str(exc)) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s moecluster-agent %(levelname)s %(message)s")
    try:
        serve(config)
    except (WebConfigError, UnsafeDirectory) as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"agent cannot serve on {config.bind_host()}:{port}: {exc.strerror or exc}") \
            from None


COMMANDS = [agent]
