"""What a Ray task or actor runs on a node, for the head's scheduler (node side, no head code).

- `names`: the `node` label of each Ray node, shared with the node agents;
- `place`: where a task runs (node id and label, the GPUs Ray gave it) and its fake devices;
- `progress`: the tracker running pairs report to, and the observer that reports to it;
- `task`: the body of a single-GPU pair task;
- `gang`: one rank of an expert-parallel gang (a Ray actor's body);
- `capability`: whether this installation has the node side of gangs;
- `device_lock`: the node-local locks by which a task holds its devices against other runs;
- `exporter_actor`: the node agent's exporter inside a Ray actor.

The head applies `ray.remote` to these plain functions and classes, so a node process
imports only `moecluster.agents` (never `moecluster.orchestrator`).
"""
