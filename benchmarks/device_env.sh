# Sourced at the start of a command on the lent GPU machine (no network, torch preinstalled):
# makes `moecluster` importable from this checkout without pip, and installs carried wheels.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
# The tree's commit (benchmarks/device_commit.sh wrote .sent/commit here): a one-commit repository whose
# HEAD is that commit, made only if the tree sent hashes to the commit's tree, so `git status` there
# compares the tree against it and environment.json names the commit and whether it was changed.
# Only on the lent machine ($OUT is set there alone), and the repository there is moved aside, not deleted.
if [ -f .sent/commit ] && [ -n "${OUT:-}" ] \
    && [ "$(git rev-parse HEAD 2>/dev/null)" != "$(git hash-object -t commit .sent/commit)" ]; then
  { [ ! -e .git ] || mv .git "$(mktemp -d)/stale.git"; } && git init -q && cat .sent/exclude >> .git/info/exclude && git add -A
  sent_tree=$(git write-tree)
  if [ "$sent_tree" = "$(sed -n 's/^tree //p' .sent/commit | head -n 1)" ]; then
    sent=$(git hash-object -t commit -w .sent/commit) && echo "$sent" > .git/shallow && git update-ref HEAD "$sent" \
      && git reset -q && echo "device_env.sh: the tree is commit $sent"
  else
    echo "device_env.sh: the tree sent is not the tree of .sent/commit; environment.json will not name a commit" >&2
    rm -rf .git  # the empty repository just made
  fi
fi
