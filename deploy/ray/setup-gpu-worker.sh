#!/usr/bin/env bash
# A GPU worker: the node agent as a systemd service (deploy/systemd/moecluster-agent.service),
# run as this user so that it reads the task labels the Ray workers (same user) publish in
# /tmp/moecluster-<uid>/tasks, from the virtualenv setup-node.sh made.
set -euo pipefail
source "$(dirname "$0")/units.sh"
install_unit moecluster-agent "ExecStart=
ExecStart=$HOME/venv/bin/moecluster agent \$MOECLUSTER_AGENT_ARGS
Environment=MOECLUSTER_AGENT_ARGS=\"--port 9400 --device nvml\""
for _ in $(seq 30); do
  curl -sf localhost:9400/healthz >/dev/null && break
  sleep 1
done
curl -sf localhost:9400/metrics | grep -m1 '^moecluster_agent_gpus'
