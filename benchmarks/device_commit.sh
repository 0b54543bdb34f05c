#!/usr/bin/env bash
# Here, before a device call whose results will be committed: records the commit this tree is, so
# benchmarks/device_env.sh there can name it in every run's environment.json. The lent machine's copy
# of the tree arrives without this repository's history; the record is the commit object itself
# (`.sent/commit`, carried, with this checkout's own ignore list), which names its tree by hash, so there
# the tree sent is checked against it.
# Refuses a tree with uncommitted changes: a result must come from a commit.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "device_commit.sh: the tree has uncommitted changes; commit them first" >&2
  exit 2
fi
mkdir -p .sent && git cat-file commit HEAD > .sent/commit
# what this checkout ignores beyond .gitignore (carried folders such as .whl/), so the tree there is hashed
# as it is here
{ echo /.sent/; cat .git/info/exclude 2>/dev/null; } > .sent/exclude
echo "device_commit.sh: .sent/commit is $(git rev-parse --short HEAD); carry .sent"
