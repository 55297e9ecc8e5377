#!/usr/bin/env bash
# Stop the local stack and check that none of its processes is left: `azr down`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/azr down "$@"
