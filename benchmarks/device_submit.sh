#!/usr/bin/env bash
# On the lent GPU machine: run (or resume) a sweep through `moecluster submit` for at most
# LIMIT_S seconds, then stop it with SIGINT (a clean stop: every finished task is already in
# the store) and copy the run directory, its report and the log to $OUT.
#
#   bash benchmarks/device_submit.sh SWEEP RUN_ID LIMIT_S [extra submit args...]
# The run store lives in benchmarks/results/runs/RUN_ID (carried between calls and committed).
set -uo pipefail
sweep=$1 run_id=$2 limit_s=$3; shift 3
. benchmarks/device_env.sh
runs=benchmarks/results/runs
mc() { python3 -c 'from moecluster.cli import main; main()' "$@"; }
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu,power.draw --format=csv
if [ -f "$runs/$run_id/results.sqlite" ]; then
  # a resumed run takes its own stored sweep: extra arguments (--set ...) only shape a new run
  timeout -s INT -k 30 "$limit_s" bash -c "$(declare -f mc); mc submit --resume $run_id --runs-dir $runs --no-agents" \
    2>&1 | tee "$OUT/submit_$run_id.log"
else
  timeout -s INT -k 30 "$limit_s" bash -c "$(declare -f mc); mc submit $sweep --run-id $run_id --runs-dir $runs --no-agents $*" \
    2>&1 | tee "$OUT/submit_$run_id.log"
fi
mc status "$run_id" --runs-dir "$runs" | tail -n 40
mc report "$run_id" --runs-dir "$runs" --format json --out "$runs/$run_id/report" -q || true
tar -C "$runs" -czf "$OUT/run_$run_id.tgz" "$run_id"
