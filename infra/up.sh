#!/usr/bin/env bash
# Start the local stack (Prefect server, work pool `azr-pool`, worker, MLflow UI) on 127.0.0.1: `azr up`.
# Options pass through (--prefect-port, --mlflow-port, --pool, --state-dir, --timeout). Then: source .azr/stack/env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/azr up "$@"
