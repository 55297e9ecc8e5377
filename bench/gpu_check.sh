#!/usr/bin/env bash
# The policy's GPU check, as run on a lent GPU machine (see bench/gpu_policy_check.py for why random weights).
# Needs, beside the tree (both git-ignored via .git/info/exclude, carried to the GPU machine):
#   .whl/  wheels the GPU image lacks, for CPython 3.12:
#          pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#            pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 hjson==3.1.0 \
#            transformers==5.24.0
#          .venv/bin/pip wheel --no-deps --no-build-isolation deepspeed==0.19.8 -w .whl
#   .gpu/smollm2-config/  config.json, generation_config.json, tokenizer*.json, chat_template.jinja of the prepared
#          default model (~/.cache/azr/models/smollm2-135m-instruct), without its weights.
# Writes its logs and JSON under $OUT (or ./gpu-out).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | grep -v WARNING | tee -a "$OUT/gpu.txt"
M=/tmp/smollm2-random
python3 bench/gpu_policy_check.py --config-dir .gpu/smollm2-config --model-dir $M --build-only 2>&1 | tail -1
echo "== bench_policy (HF backend vs plain generate; DeepSpeed ZeRO-2 bf16 vs plain AdamW)"
timeout 200 python3 bench/bench_policy.py --model $M --batches 1 8 16 64 --runs 3 --max-new-tokens 128 \
  --train-seqs 16 --train-completion-len 256 --out "$OUT/policy_gpu.json" 2>&1 | grep -v "WARNING\|^\[rank" > "$OUT/bench.log"
grep -E "generate batch|train step|train run" "$OUT/bench.log"
echo "== continuous batching (rollout backend hf-batching) vs padded generate: 256 sequences, long-tailed lengths"
timeout 240 python3 bench/bench_batching.py --model $M --prompts 32 --n 8 --prompt-tokens 128 1024 \
  --max-new-tokens 1024 --mean-new-tokens 128 --batch-size 64 --out "$OUT/batching_gpu.json" 2>&1 \
  | grep -v "WARNING" > "$OUT/batching.log"
grep -E "^cuda|seqs|hf-batching /|Error" "$OUT/batching.log" || tail -20 "$OUT/batching.log"
echo "== worker group through the deepspeed launcher"
if timeout 150 python3 bench/gpu_policy_check.py --config-dir .gpu/smollm2-config --model-dir $M > "$OUT/workers.log" 2>&1
then sed -n '/^{/,$p' "$OUT/workers.log" | head -60; else grep -v WARNING "$OUT/workers.log" | tail -40; fi
echo "== policy tests on the GPU (tiny model)"
timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_policy_trainer.py tests/test_policy_rollout.py \
  tests/test_policy_loss.py 2>&1 | tail -15 | tee "$OUT/pytest.log"
# hf-batching tests with this image's torch and transformers (tiny model on CPU; the slow one needs the default model).
timeout 120 python3 -m pytest -q -x -p no:cacheprovider -m "not slow" tests/test_rollout_batching.py 2>&1 | tail -15 \
  | tee "$OUT/pytest_batching.log"
