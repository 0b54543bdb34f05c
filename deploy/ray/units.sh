# Sourced by setup-gpu-worker.sh and setup-head.sh: install one of deploy/systemd/'s units with a
# drop-in for this cluster (this user, this venv), then (re)start it.
#   install_unit NAME DROP_IN_LINES      (SYSTEMD_DIR: where units go, default /etc/systemd/system)
install_unit() {
  local name="$1" dropin="$2" unit="${SYSTEMD_DIR:-/etc/systemd/system}/$1.service"
  sudo install -m 0644 "$HOME/moecluster/deploy/systemd/$name.service" "$unit"
  sudo mkdir -p "$unit.d"
  printf '[Service]\nUser=%s\nGroup=%s\n%s\n' "$(id -un)" "$(id -gn)" "$dropin" | sudo tee "$unit.d/ray-cluster.conf" >/dev/null
  sudo systemctl daemon-reload
  sudo systemctl enable "$name"
  sudo systemctl restart "$name"   # a re-run of `ray up` picks up a new checkout
}
