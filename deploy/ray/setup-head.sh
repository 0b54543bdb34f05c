#!/usr/bin/env bash
# The head: the results exporter as a systemd service, and Prometheus + Grafana from
# deploy/compose.yaml with the provisioning in deploy/grafana/provisioning. Grafana's admin
# password is generated here into ~/.moecluster/grafana-admin-password (mode 600), never printed.
set -euo pipefail
SRC="$HOME/moecluster"
RUNS="$HOME/runs"
source "$(dirname "$0")/units.sh"
install_unit moecluster-results "Environment=MOECLUSTER_RUNS_DIR=$RUNS
ReadWritePaths=$RUNS
ExecStart=
ExecStart=$HOME/venv/bin/moecluster dashboards serve-results \$MOECLUSTER_RESULTS_ARGS"
if ! command -v docker >/dev/null || ! docker compose version >/dev/null 2>&1; then
  sudo apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose-v2 >/dev/null
fi
mkdir -p "$HOME/.moecluster" && chmod 700 "$HOME/.moecluster"
PASSWORD_FILE="$HOME/.moecluster/grafana-admin-password"
[ -s "$PASSWORD_FILE" ] || (umask 077 && openssl rand -hex 24 > "$PASSWORD_FILE")
sudo chgrp 0 "$PASSWORD_FILE" && chmod 640 "$PASSWORD_FILE"   # Grafana's container: uid 472, gid 0
# Prometheus reads submit's file_sd targets from the runs directory: start with an empty list.
[ -f "$RUNS/prometheus_targets.json" ] || echo '[]' > "$RUNS/prometheus_targets.json"
cd "$SRC/deploy"
sudo MOECLUSTER_RUNS_DIR="$RUNS" GRAFANA_ADMIN_PASSWORD_FILE="$PASSWORD_FILE" docker compose up -d
