"""What a Ray task or actor runs on a node, for the head's scheduler (node side, no head code).

- `names`: the `node` label of each Ray node, shared with the node agents;
- `place`: where a task runs (node id and label, the GPUs Ray gave it) and its fake devices;
- `progress`: the start report a pair hands the head first, and the observer of its progress;
- `binding`: the check that a task's process computes on exactly the GPUs Ray gave it;
- `raycfg`: the Ray settings a process on the node runs with (how fast a lost node is noticed);
- `task`: the body of a single-GPU pair task;
- `gang`: one rank of an expert-parallel gang (a Ray actor's body);
- `capability`: whether this installation has the node side of gangs;
- `device_lock`: the node-local locks by which a task holds its devices against other runs;
- `exporter_actor`: the node agent's exporter inside a Ray actor.

The head applies `ray.remote` to these plain functions and classes, so a node process
imports only `moecluster.agents` (never `moecluster.orchestrator`).
"""
