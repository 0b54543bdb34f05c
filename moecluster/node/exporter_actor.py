"""The node agent's exporter inside a Ray actor process on one node (the head makes it an actor).

Serves on the node's address at `port`; if that port is taken, on a free one instead (a port of
0 asks for a free one from the start). `describe()` says where it serves, for Prometheus.
"""
from __future__ import annotations

import logging


class NodeAgentActor:
    """Runs `moecluster.node.agent.Agent` for the node labelled `node`."""

    def __init__(self, node: str, port: int, device: str, interval_s: float) -> None:
        import ray
        from moecluster.node.agent.server import Agent, AgentConfig

        logging.basicConfig(level=logging.INFO, format="%(asctime)s moecluster-agent %(levelname)s %(message)s")
        host = ray.util.get_node_ip_address()
        config = AgentConfig(host=host, port=port, device=device, node=node, interval_s=interval_s)
        try:
            self._agent = Agent(config).start()
        except OSError as exc:
            if port == 0:
                raise
            logging.getLogger("moecluster.agent").warning(
                "port %d on %s is taken (%s); serving on a free port instead", port, host, exc.strerror)
            self._agent = Agent(AgentConfig(host=host, port=0, device=device, node=node,
                                            interval_s=interval_s)).start()
        self._address = f"{host}:{self._agent.port}"
        self._node = node

    def describe(self) -> dict[str, str]:
        """Where the agent serves (`host:port`) and its node label."""
        return {"address": self._address, "node": self._node}

    def stop(self) -> None:
        """Stop serving (the actor itself stays until killed)."""
        self._agent.stop()
