#!/usr/bin/env bash
# The main job on this machine: bring the local stack up, register the deployments, and run
# `prefect deployment run azr/self-play` (cpu-tiny profile, the embedded default model) for a few iterations; then
# wait for the evaluation of the model version it registered and print the outcome.
# Usage: bash infra/run-selfplay.sh [ITERATIONS] [RUN_DIR]     (a second call resumes the same run folder)
# AZR_EVAL_WAIT_S (default 1800): the most seconds to wait for the evaluation flow run at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERATIONS="${1:-2}"
RUN_DIR="$(realpath -m "${2:-runs/self-play}")"

.venv/bin/azr up
# shellcheck disable=SC1091
source "${AZR_STATE_DIR:-.azr/stack}/env.sh"
.venv/bin/prefect --no-prompt deploy --all >/dev/null
echo "[azr] running azr/self-play: $ITERATIONS iteration(s) on $RUN_DIR (progress: Prefect UI, or the log below)"
.venv/bin/prefect deployment run azr/self-play -p iterations="$ITERATIONS" -p run_dir="$RUN_DIR" \
  --watch --watch-timeout 86400
echo
echo "[azr] done. Where to look:"
# Waits (bounded) for the evaluation flow run of the version this flow run registered, then prints its scores,
# the alias it holds, the direct URLs of the MLflow run and the Prefect flow run, and the commands to look further.
.venv/bin/azr status --run "$RUN_DIR" --wait-eval "${AZR_EVAL_WAIT_S:-1800}"
cat <<TXT
  Prefect UI (flow runs: training and evaluation): ${PREFECT_API_URL%/api}
  MLflow UI (the azr-policy model versions, their aliases and tags): $MLFLOW_TRACKING_URI/#/models/azr-policy
  Task history with SQL:
    .venv/bin/azr sql --run $RUN_DIR "SELECT iteration, task_type, avg(valid::INT) AS valid_rate, count(*) AS n FROM proposals GROUP BY ALL ORDER BY ALL"
  Stop the stack: .venv/bin/azr down
TXT
