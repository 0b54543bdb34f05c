#!/usr/bin/env bash
# Installs what the tests need on a fresh machine and runs them: a venv with the CPU build of
# torch (pinned first, so the package's own torch range installs nothing more), the package
# with its test extras, Debian's prometheus and chromium for the integration tests, then ruff,
# mypy and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -d .venv ] || python3 -m venv .venv
  . .venv/bin/activate
fi
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[test]'
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "scripts/test.sh: missing ${need[*]}; the tests that need them will be skipped" >&2
  fi
fi
# lint and type check first: cheap, and a failure names the file and line
python -m ruff check .
typed=$(mktemp -d) && mkdir "$typed/moecluster" && ln -s "$PWD/agents" "$typed/moecluster/agents" \
  && ln -s "$PWD/orchestrator" "$typed/moecluster/orchestrator" && ln -s "$PWD/dashboards" "$typed/moecluster/dashboards"
(cd "$typed" && python -m mypy --config-file "$OLDPWD/pyproject.toml" -p moecluster.agents -p moecluster.orchestrator \
  -p moecluster.dashboards)
rm -rf "$typed"
exec python -m pytest -q "$@"
