#!/usr/bin/env bash
# Installs what the tests need on a fresh machine and runs them: a venv with the CPU build of
# torch (pinned first, so the package's own torch range installs nothing more), the package
# with its test extras, Debian's prometheus and chromium for the integration tests, then ruff,
# mypy and pytest. With CI_TIMES=<file>, each step appends "<step> <wall seconds>" to that file
# (benchmarks/ci_time.py turns it and pytest's --junitxml into benchmarks/results/ci_time.md).
set -euo pipefail
cd "$(dirname "$0")/.."
step() {
  local name=$1 t0_us=${EPOCHREALTIME/./} rc=0 us
  shift
  "$@" || rc=$?
  us=$((${EPOCHREALTIME/./} - t0_us))
  [ -z "${CI_TIMES:-}" ] || printf '%s %d.%06d\n' "$name" $((us / 1000000)) $((us % 1000000)) >> "$CI_TIMES"
  return $rc
}
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -d .venv ] || python3 -m venv .venv
  . .venv/bin/activate
fi
step pip-upgrade python -m pip install -q --upgrade pip
# --no-compile: no .pyc for the ~3 GB installed (Python compiles what the tests import, as they
# import it); measured: torch's install 17 s instead of 30 s
step install-torch python -m pip install -q --no-compile torch==2.13.0
step install-package python -m pip install -q --no-compile -e '.[test]'
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt_install() { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
    step apt-get apt_install "${need[@]}"
  else
    echo "scripts/test.sh: missing ${need[*]}; the tests that need them will be skipped" >&2
  fi
fi
# lint and type check first: cheap, and a failure names the file and line
step ruff python -m ruff check .
step mypy python -m mypy -p moecluster
step pytest python -m pytest -q "$@"
