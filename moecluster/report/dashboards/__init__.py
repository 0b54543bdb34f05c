"""Grafana dashboards as code (grafana-foundation-sdk 0.0.21, the `grafana` extra).

Three dashboards, built by the SDK's builders and exported as Grafana's dashboard JSON
(schemaVersion 42), never edited by hand:

- `cluster` ("moecluster / Cluster"): power, energy rate, utilisation, clocks, temperature and
  memory per node and GPU, GPUs up, the cluster's power and energy over the selected range;
- `sweep` ("moecluster / Sweep (live)"): the running tasks with their labels, live inferences/s,
  inferences/J and watts per task from the agents' series, run progress, dense and MoE of each
  pair side by side;
- `results` ("moecluster / Results"): finished tasks' efficiency with 95 % intervals, MoE/dense
  ratios, expert-parallel communication share and costs, from the head's results exporter.

Every panel queries Prometheus through a `datasource` variable (default: the datasource that
`dashboards push` and deploy/grafana/provisioning create), so the dashboards also work on a
Prometheus datasource the user already has. `export` writes the JSON; `push` uploads it
through Grafana's HTTP API.
"""

#: uid of the Prometheus datasource that `push` and the provisioning file create
DATASOURCE_UID = "moecluster-prometheus"
DATASOURCE_NAME = "moecluster Prometheus"
#: the folder the dashboards live in (push and file provisioning alike)
FOLDER_UID = "moecluster"
FOLDER_TITLE = "moecluster"
