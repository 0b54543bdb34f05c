"""What runs on a node: the bodies Ray runs (pair tasks, gang ranks, GPU binding, device locks) and the
node agent, the Prometheus exporter of GPU power and the running task's labels (`agent`: "agent" means
only this).

- `names`: the `node` label of each Ray node, shared with the node agents;
- `place`: where a task runs (node id and label, the GPUs Ray gave it) and its fake devices;
- `progress`: the start report a pair hands the head first, and the observer of its progress;
- `binding`: the check that a task's process computes on exactly the GPUs Ray gave it;
- `raycfg`: the Ray settings a process on the node runs with (how fast a lost node is noticed);
- `task`: the body of a single-GPU pair task; `gang`: one rank of an expert-parallel gang (an actor's body);
- `capability`: whether this installation has the node side of gangs;
- `device_lock`: the node-local locks by which a task holds its devices against other runs;
- `exporter_actor`: the node agent inside a Ray actor; `address`, `private_dir`: where it listens and
  where tasks publish their labels.

The head applies `ray.remote` to these plain functions and classes, so a node process imports
`moecluster.node`, `measure`, `workloads`, `devices` and `spec`, never `moecluster.head`, `report` or `cli`.
"""
