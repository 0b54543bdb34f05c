#!/usr/bin/env bash
# Every node of a moecluster Ray cluster (run by the cluster launcher's setup_commands, from the
# checkout it synced to ~/moecluster): a virtualenv with torch and moecluster, and the shell
# environment every later command (ray start, moecluster submit) runs in.
#
#   MOECLUSTER_EXTRAS   extras to install, e.g. "dashboard,report,grafana" on the head (default: none)
#   TORCH_SPEC          the torch requirement (default: torch==2.13.0, PyPI's CUDA build on Linux x86_64)
#   TORCH_INDEX         an index to take it from, e.g. https://download.pytorch.org/whl/cpu for the CPU
#                       build on a node without GPU (the head)
set -euo pipefail
VENV="$HOME/venv"
SRC="$HOME/moecluster"
if ! python3 -c 'import ensurepip' 2>/dev/null; then
  sudo apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
[ -d "$VENV" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "${TORCH_SPEC:-torch==2.13.0}"
"$VENV/bin/python" -m pip install -q -e "$SRC${MOECLUSTER_EXTRAS:+[$MOECLUSTER_EXTRAS]}"
# Login shells (the launcher runs every command in one) get the venv, Ray's token authentication
# (the token itself is the file ~/.ray/auth_token that file_mounts copies: never a variable here)
# and the runs directory that submit writes and the results exporter reads.
if ! grep -q '# moecluster environment' "$HOME/.bashrc" 2>/dev/null; then
  cat >> "$HOME/.bashrc" <<'RC'
# moecluster environment
source "$HOME/venv/bin/activate"
export RAY_AUTH_MODE=token
export MOECLUSTER_RUNS_DIR="$HOME/runs"
RC
fi
mkdir -p "$HOME/runs"
chmod 600 "$HOME/.ray/auth_token" 2>/dev/null || true
"$VENV/bin/moecluster" --version
