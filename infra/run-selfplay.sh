#!/usr/bin/env bash
# The main job on this machine: bring the local stack up, register the deployments, and run
# `prefect deployment run azr/self-play` (cpu-tiny profile, the embedded default model) for a few iterations.
# Usage: bash infra/run-selfplay.sh [ITERATIONS] [RUN_DIR]     (a second call resumes the same run folder)
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
cat <<TXT

[azr] done. Where to look:
  Prefect UI (flow runs, the six tasks of each iteration, logs): ${PREFECT_API_URL%/api}
  MLflow UI (metrics per iteration, the azr-policy model versions): $MLFLOW_TRACKING_URI
  Task history with SQL:
    .venv/bin/azr sql --run $RUN_DIR "SELECT iteration, task_type, avg(valid::INT) AS valid_rate, count(*) AS n FROM proposals GROUP BY ALL ORDER BY ALL"
  Stop the stack: .venv/bin/azr down
TXT
