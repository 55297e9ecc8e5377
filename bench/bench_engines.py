"""CPU inference engines against padded `model.generate` on the `cpu-tiny` rollout shapes: which to adopt as a backend.

One batch = 18 prompts of ~600-1000 tokens (a long shared instruction prefix, differing tails), sampled at
temperature 0.7 (top-p 1, no top-k), 128 new tokens per prompt. EOS does not stop a row, so every engine does the
same work (18 x 128 new tokens) and the numbers do not depend on when a sample happens to end. Per engine: seconds
per batch (median of `--repeats`), prefill (prompt tokens/s to the first new token of the batch), new tokens/s,
the ratio against the HF baseline of the same run, how the per-token log-probs of the sampled tokens are had, and
how new weights get in (export from an HF folder and reload, or an in-place copy), timed.

Every engine runs in its own subprocess (the engines come from their own venv, never the project's): the parent, in
the project's venv, builds the prompts, runs the baseline, collects the results, and checks each engine's log-probs
against a teacher-forced forward of the HF model on a few rows (mean absolute gap on the sampled tokens).

    .venv/bin/python bench/bench_engines.py --python /tmp/engvenv/bin/python \\
        --llama-python /tmp/llamavenv/bin/python --ov-export-python /tmp/ovexp/bin/python

Engines whose packages are missing from the given interpreter are reported as such. The machine is small (2 cores)
and may be shared: numbers are noisy; compare ratios within one run, never absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
DEFAULT_MODEL = Path(os.environ.get("AZR_CACHE", Path.home() / ".cache" / "azr")) / "models" / "smollm2-135m-instruct"

# ----------------------------------------------------------------------------------------------------------------
# Prompts: a long shared instruction prefix (as the proposer/solver prompts have) and per-prompt programs as tails.

SYSTEM = (
    "You are a careful Python programmer taking part in a reasoning game. Each round you are shown a deterministic "
    "Python function named f together with examples of inputs and outputs. Your task depends on the round: you may "
    "be asked to write a new function and an input for it, to predict the output of a function for a given input, "
    "to find an input that produces a given output, or to infer the function itself from several input-output "
    "pairs. Follow these rules exactly. The function must be deterministic: no randomness, no clock, no file system, "
    "no network, no printing, and no imports other than the standard library modules math, itertools, functools, "
    "collections and string. The input must be a Python literal. Keep functions short and readable, but not "
    "trivial: a good function needs a few steps of reasoning to run by hand, such as a loop with a condition, a "
    "small recursion, string manipulation, or arithmetic with carries. Write your answer in fenced code blocks: the "
    "function in a block tagged python, the input in a block tagged input, and the output in a block tagged output. "
    "Do not explain your answer outside the blocks unless asked. Think step by step inside a block tagged think "
    "before you answer, tracing the function on the input line by line and writing each intermediate value."
)


def _program(k: int) -> str:
    """A deterministic, varied Python function of a few dozen lines (a stand-in for a reference program)."""
    ops = ["+", "-", "*", "%", "//"]
    lines = [f"def f(xs, k={k % 7 + 2}):", "    acc = []", "    total = 0"]
    for j in range(1 + k % 4):
        op = ops[(k + j) % len(ops)]
        c = (k * 31 + j * 17) % 11 + 1
        lines += [
            f"    for i, x in enumerate(xs[{j % 3}:]):",
            f"        if (x {op} {c}) % (k + {j % 4 + 1}) == {(k + j) % 3}:",
            f"            total += x {op} {c} if i % 2 else -{c}",
            f"            acc.append((i, total % {97 + j}))",
            f"        elif len(acc) > {j + 2}:",
            f"            acc = acc[{j % 2}:] + [(x, {c})]",
        ]
    lines += ["    return sorted(acc)[:k], total"]
    return "\n".join(lines)


def build_prompts(tokenizer, n: int) -> list[list[int]]:
    examples = "\n\n".join(
        f"Example {e}:\n```python\n{_program(100 + e)}\n```\n```input\n{list(range(e, e + 6))}\n```" for e in range(1)
    )
    prompts = []
    for i in range(n):
        user = f"{examples}\n\nNow the task. Predict the output of this function.\n```python\n{_program(i)}\n```\n"
        user += f"```input\n{[(i * 7 + j * 3) % 23 for j in range(8 + i % 5)]}\n```\nAnswer with an output block."
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return prompts


# ----------------------------------------------------------------------------------------------------------------
# Sampling helpers shared by the engines whose loop is ours (numpy, raw-logit log-probs as the trainer computes).


def _sample_np(logits, temperature: float, rng):
    """(tokens, log-probs under the raw distribution) from (B, V) logits; temperature sampling via Gumbel-max."""
    import numpy as np

    logits = logits.astype(np.float64, copy=False)
    m = logits.max(axis=1, keepdims=True)
    logz = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    g = rng.gumbel(size=logits.shape)
    tok = np.argmax(logits / temperature + g, axis=1)
    lp = logits[np.arange(len(tok)), tok] - logz
    return tok, lp


# ----------------------------------------------------------------------------------------------------------------
# Workers: each runs one engine and prints one JSON object on its last line.


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _timed_inplace_update(model) -> float:
    """Seconds to copy a state dict into the model in place, as the hf backend's sync_weights does."""
    import torch

    state = {k: v.clone() for k, v in model.state_dict().items()}

    def update():
        with torch.no_grad():
            params = dict(model.named_parameters())
            for k, v in state.items():
                if k in params:
                    params[k].copy_(v)

    return _timed(update)[1]


def worker_hf(job: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, LogitsProcessor

    torch.set_num_threads(job["threads"])
    model, load_s = _timed(
        lambda: AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32, attn_implementation="sdpa")
    )
    model.eval()
    model.generation_config.eos_token_id = None  # run every row to max_new_tokens (same work for every engine)
    update_s = _timed_inplace_update(model)

    class Recorder(LogitsProcessor):  # the project's _LogprobRecorder: raw log-softmax per step, one step late
        def __init__(self):
            self.prev, self.steps, self.first = None, [], None

        def __call__(self, input_ids, scores):
            if self.first is None:
                self.first = time.perf_counter()
            if self.prev is not None:
                self.steps.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
            self.prev = torch.log_softmax(scores.float(), dim=-1)
            return scores

    prompts = job["prompts"]
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), 2, dtype=torch.long)
    att = torch.zeros_like(ids)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = torch.tensor(p)
        att[r, width - len(p) :] = 1
    runs, sample = [], None
    for rep in range(job["repeats"]):
        torch.manual_seed(job["seed"] + rep)
        rec = Recorder()
        t0 = time.perf_counter()
        with torch.inference_mode():
            seq = model.generate(
                input_ids=ids,
                attention_mask=att,
                max_new_tokens=job["new_tokens"],
                do_sample=True,
                temperature=job["temperature"],
                top_p=1.0,
                top_k=0,
                logits_processor=[rec],
                pad_token_id=2,
            )
        t1 = time.perf_counter()
        rec.steps.append(rec.prev.gather(1, seq[:, -1:]).squeeze(1))
        new = seq[:, width:]
        runs.append({"batch_s": t1 - t0, "prefill_s": rec.first - t0, "new_tokens": int(new.numel())})
        if sample is None:
            lps = torch.stack(rec.steps, 1)
            sample = [{"row": r, "ids": new[r].tolist(), "logprobs": lps[r].tolist()} for r in job["check_rows"]]
    return {
        "load_s": load_s,
        "update": {"method": "in-place copy_ of the state dict (sync_weights)", "seconds": update_s},
        "logprobs_how": "logits processor: log_softmax of the raw scores, gathered at the sampled token",
        "runs": runs,
        "sample": sample,
    }


def worker_ort(job: dict) -> dict:
    """ONNX Runtime GenAI: the model builder's fp32 CPU export; our own sampling loop over `append_tokens` /
    `get_logits` (the engine's sampler gives no log-probs), so log-probs are of the raw logits."""
    import numpy as np
    import onnxruntime_genai as og

    out_dir = Path(job["workdir"]) / "ort_model"
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        job["model"],
        "-o",
        str(out_dir),
        "-p",
        "fp32",
        "-e",
        "cpu",
        "-c",
        str(Path(job["workdir"]) / "ort_cache"),
    ]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    export_s = time.perf_counter() - t
    cfg_path = out_dir / "genai_config.json"
    cfg = json.loads(cfg_path.read_text())
    # The pad id marks padding in the attention mask: the model's pad (= eos, <|im_end|>) occurs inside chat prompts.
    cfg["model"]["pad_token_id"] = job["free_pad_id"]
    cfg["model"]["decoder"]["session_options"]["intra_op_num_threads"] = job["threads"]
    cfg_path.write_text(json.dumps(cfg, indent=2))
    model, load_s = _timed(lambda: og.Model(str(out_dir)))
    prompts = job["prompts"]
    width = max(map(len, prompts))
    pad = job["free_pad_id"]
    batch = np.full((len(prompts), width), pad, dtype=np.int32)
    for r, p in enumerate(prompts):
        batch[r, width - len(p) :] = p
    runs, sample = [], None
    for rep in range(job["repeats"]):
        rng = np.random.default_rng(job["seed"] + rep)
        params = og.GeneratorParams(model)
        params.set_search_options(batch_size=len(prompts), max_length=width + job["new_tokens"] + 1, do_sample=False)
        t0 = time.perf_counter()
        gen = og.Generator(model, params)
        gen.append_tokens(batch)
        toks, lps = [], []
        first = None
        for step in range(job["new_tokens"]):
            logits = gen.get_logits().reshape(len(prompts), -1)
            if first is None:
                first = time.perf_counter()
            tok, lp = _sample_np(logits, job["temperature"], rng)
            toks.append(tok)
            lps.append(lp)
            if step + 1 < job["new_tokens"]:
                # AppendTokens works once for batch > 1: force our token through the engine's greedy search
                forced = np.full(logits.shape, -1e9, dtype=np.float32)
                forced[np.arange(len(tok)), tok] = 0.0
                gen.set_logits(forced)
                gen.generate_next_token()
        t1 = time.perf_counter()
        del gen
        toks, lps = np.stack(toks, 1), np.stack(lps, 1)
        runs.append({"batch_s": t1 - t0, "prefill_s": first - t0, "new_tokens": int(toks.size)})
        if sample is None:
            sample = [{"row": r, "ids": toks[r].tolist(), "logprobs": lps[r].tolist()} for r in job["check_rows"]]
    return {
        "load_s": load_s,
        "update": {
            "method": "re-export with the model builder (HF folder -> ONNX) and reload og.Model",
            "seconds": export_s + load_s,
            "export_s": export_s,
        },
        "logprobs_how": "own sampler on Generator.get_logits() each step (numpy log-softmax of raw logits); "
        "tokens fed back with append_tokens",
        "runs": runs,
        "sample": sample,
    }


def worker_llama(job: dict) -> dict:
    """llama.cpp through llama-cpp-python: GGUF (f32) made by llama.cpp's convert_hf_to_gguf.py, one sequence at a
    time (the Llama class has no multi-sequence batch), the shared prompt prefix kept in the KV cache between prompts
    (Llama.eval reuses the longest common prefix); our sampler on the last logits, so log-probs are exact."""
    import llama_cpp
    import numpy as np

    gguf = Path(job["workdir"]) / "model-f32.gguf"
    t = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(Path(job["convert_script"]).parent / "gguf-py"))
    subprocess.run(
        [job["convert_python"], job["convert_script"], job["model"], "--outfile", str(gguf), "--outtype", "f32"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    export_s = time.perf_counter() - t
    width = max(map(len, job["prompts"]))
    llm, load_s = _timed(
        lambda: llama_cpp.Llama(
            model_path=str(gguf),
            n_ctx=width + job["new_tokens"] + 8,
            n_batch=width + job["new_tokens"] + 8,
            n_threads=job["threads"],
            n_threads_batch=job["threads"],
            logits_all=False,
            verbose=False,
        )
    )
    runs, sample = [], None
    for rep in range(job["repeats"]):
        rng = np.random.default_rng(job["seed"] + rep)
        llm.reset()
        llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
        t0 = time.perf_counter()
        prefill = 0.0
        all_toks, all_lps = [], []
        for p in job["prompts"]:
            # keep the common prefix with what is in the cache (the shared instruction prefix), as Llama.generate does
            n_keep = 0
            for a, b in zip(llm._input_ids[: llm.n_tokens], p, strict=False):
                if a != b:
                    break
                n_keep += 1
            n_keep = min(n_keep, len(p) - 1)
            llm.n_tokens = n_keep
            llm._ctx.memory_seq_rm(-1, n_keep, -1) if hasattr(llm._ctx, "memory_seq_rm") else llm._ctx.kv_cache_seq_rm(
                -1, n_keep, -1
            )
            tp = time.perf_counter()
            llm.eval(p[n_keep:])
            prefill += time.perf_counter() - tp
            toks, lps = [], []
            for step in range(job["new_tokens"]):
                logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32).reshape(1, -1)
                tok, lp = _sample_np(logits, job["temperature"], rng)
                toks.append(int(tok[0]))
                lps.append(float(lp[0]))
                if step + 1 < job["new_tokens"]:
                    llm.eval([int(tok[0])])
            all_toks.append(toks)
            all_lps.append(lps)
        t1 = time.perf_counter()
        runs.append({"batch_s": t1 - t0, "prefill_s": prefill, "new_tokens": sum(map(len, all_toks))})
        if sample is None:
            sample = [{"row": r, "ids": all_toks[r], "logprobs": all_lps[r]} for r in job["check_rows"]]
    return {
        "load_s": load_s,
        "update": {
            "method": "convert_hf_to_gguf.py (HF folder -> f32 GGUF) and reload Llama",
            "seconds": export_s + load_s,
            "export_s": export_s,
        },
        "logprobs_how": "own sampler on Llama.scores (last-token logits) after each eval; exact raw log-probs",
        "runs": runs,
        "sample": sample,
        "note": "one sequence at a time; shared prefix reused from the KV cache (prefill_s is only the uncached part)",
    }


def worker_ov(job: dict) -> dict:
    """OpenVINO GenAI ContinuousBatchingPipeline (paged attention, prefix caching) on an optimum-intel fp32 export.
    optimum-intel 2.2 pins transformers<5.6, so the export runs in its own venv (`--ov-export-python`)."""
    import numpy as np
    import openvino as ov
    import openvino_genai as g

    out_dir = Path(job["workdir"]) / "ov_model"
    export_s = None
    if job.get("ov_export_python"):
        cli = str(Path(job["ov_export_python"]).parent / "optimum-cli")
        t = time.perf_counter()
        subprocess.run(
            [
                cli,
                "export",
                "openvino",
                "-m",
                job["model"],
                "--task",
                "text-generation-with-past",
                "--weight-format",
                "fp32",
                str(out_dir),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        export_s = time.perf_counter() - t
    sched = g.SchedulerConfig()
    sched.cache_size = 2  # GB of KV cache
    sched.enable_prefix_caching = job.get("ov_prefix_caching", True)
    sched.max_num_batched_tokens = 4096
    sched.max_num_seqs = len(job["prompts"])
    pipe, load_s = _timed(
        lambda: g.ContinuousBatchingPipeline(
            str(out_dir), sched, "CPU", {"INFERENCE_NUM_THREADS": job["threads"], "INFERENCE_PRECISION_HINT": "f32"}
        )
    )
    cfg = g.GenerationConfig()
    cfg.max_new_tokens = job["new_tokens"]
    cfg.min_new_tokens = job["new_tokens"]
    cfg.ignore_eos = True
    cfg.do_sample = True
    cfg.temperature = job["temperature"]
    cfg.top_p = 1.0
    cfg.top_k = 0
    cfg.logprobs = 1
    runs, sample = [], None
    for rep in range(job["repeats"]):
        if rep and job.get("ov_rebuild_each"):  # as after every weight update: a new pipeline, its prefix cache empty
            pipe = g.ContinuousBatchingPipeline(
                str(out_dir), sched, "CPU", {"INFERENCE_NUM_THREADS": job["threads"], "INFERENCE_PRECISION_HINT": "f32"}
            )
        cfg.rng_seed = job["seed"] + rep
        t0 = time.perf_counter()
        handles = [
            pipe.add_request(i, ov.Tensor(np.array([p], dtype=np.int64)), cfg) for i, p in enumerate(job["prompts"])
        ]
        first = None
        while pipe.has_non_finished_requests():
            pipe.step()
            if first is None:
                first = time.perf_counter()
        t1 = time.perf_counter()
        outs = [h.read_all()[0] for h in handles]
        runs.append(
            {"batch_s": t1 - t0, "prefill_s": first - t0, "new_tokens": sum(len(o.generated_ids) for o in outs)}
        )
        if sample is None:
            sample = [
                {"row": r, "ids": list(outs[r].generated_ids), "logprobs": list(outs[r].generated_log_probs)}
                for r in job["check_rows"]
            ]
    return {
        "load_s": load_s,
        "update": {
            "method": "optimum-cli export openvino (separate venv) and rebuild the pipeline",
            "seconds": (export_s or float("nan")) + load_s,
            "export_s": export_s,
        },
        "logprobs_how": "GenerationConfig.logprobs=1 -> GenerationOutput.generated_log_probs",
        "runs": runs,
        "sample": sample,
        "note": "prefill_s = time to the first step() return (the scheduler may split prefill over steps)",
    }


def worker_cached(job: dict) -> dict:
    """The project's own cached loop (azr_core/policy/rollout/decode.py): each prompt prefilled once, prompts sharing
    a prefix decoded against one copy of it, finished rows dropped. End of sequence never stops a row here, as for
    every engine; new weights are the in-place copy of the hf backend (none at all where it is the trainer's module)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from azr_core.policy.rollout.base import SamplingParams, Script
    from azr_core.policy.rollout.decode import CachedSampler, _Row

    torch.set_num_threads(job["threads"])
    model, load_s = _timed(lambda: AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32))
    model.eval()
    tok = AutoTokenizer.from_pretrained(job["model"])
    update_s = _timed_inplace_update(model)
    sampler = CachedSampler(model, tok, eos_ids=set(), empty_starts=list, max_rows=len(job["prompts"]))
    params = SamplingParams(n=1, max_new_tokens=job["new_tokens"], temperature=job["temperature"], top_p=1.0)
    prefill = []
    real = sampler._prefill

    def timed_prefill(*a, **k):  # the prefill ends where the first decode step begins
        out = real(*a, **k)
        prefill.append(time.perf_counter())
        return out

    sampler._prefill = timed_prefill
    runs, sample = [], None
    for rep in range(job["repeats"]):
        torch.manual_seed(job["seed"] + rep)
        rows = [_Row(i, Script(job["new_tokens"]), list(p), context=list(p)) for i, p in enumerate(job["prompts"])]
        t0 = time.perf_counter()
        sampler._run(rows, [""] * len(rows), params)
        t1 = time.perf_counter()
        new = [r.blocks[0].completion for r in rows]
        runs.append(
            {"batch_s": t1 - t0, "prefill_s": prefill[-1] - t0, "new_tokens": sum(len(c.token_ids) for c in new)}
        )
        if sample is None:
            sample = [{"row": r, "ids": new[r].token_ids, "logprobs": new[r].logprobs} for r in job["check_rows"]]
    return {
        "load_s": load_s,
        "update": {"method": "in-place copy_ of the state dict (sync_weights; none when shared)", "seconds": update_s},
        "logprobs_how": "raw log_softmax of the step's logits at the sampled token",
        "runs": runs,
        "sample": sample,
    }


WORKERS = {"hf": worker_hf, "cached": worker_cached, "ort": worker_ort, "llama": worker_llama, "ov": worker_ov}

# ----------------------------------------------------------------------------------------------------------------
# Parent


def run_worker(python: str, engine: str, job: dict, workdir: Path, timeout: float) -> dict:
    job_path = workdir / f"job-{engine}.json"
    job_path.write_text(json.dumps(job))
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            [python, str(HERE), "--worker", engine, "--job", str(job_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t
    last = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    if proc.returncode != 0 or not last:
        return {"error": (proc.stderr or proc.stdout)[-1500:]}
    out = json.loads(last[0])
    out["worker_wall_s"] = wall
    return out


def logprob_gap(model, prompts, sample) -> float | None:
    """Mean |engine log-prob - HF teacher-forced log-prob| over the sampled tokens of the checked rows."""
    import torch

    if not sample:
        return None
    gaps = []
    with torch.inference_mode():
        for s in sample:
            p = prompts[s["row"]]
            ids = torch.tensor([p + s["ids"]])
            logits = model(ids).logits[0, len(p) - 1 : -1].float()
            ref = torch.log_softmax(logits, -1).gather(1, torch.tensor(s["ids"])[:, None])[:, 0]
            gaps.append((ref - torch.tensor(s["logprobs"], dtype=torch.float32)).abs().mean().item())
    return sum(gaps) / len(gaps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="HF folder of the policy (azr model prepare)")
    ap.add_argument("--python", default=None, help="interpreter of the venv holding onnxruntime-genai / openvino-genai")
    ap.add_argument("--llama-python", default=None, help="interpreter of the venv holding llama-cpp-python")
    ap.add_argument("--llama-convert", default=None, help="llama.cpp's convert_hf_to_gguf.py (needs gguf in that venv)")
    ap.add_argument("--ov-export-python", default=None, help="interpreter of a venv with optimum-intel (its own pins)")
    ap.add_argument("--engines", default="hf,ort,llama,ov", help="comma-separated: hf, cached, ort, llama, ov")
    ap.add_argument("--baseline", default="hf", help="the engine the others' batch time is divided by")
    ap.add_argument("--prompts", type=int, default=18)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="/tmp/bench_engines")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per engine worker")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument(
        "--ov-rebuild-each",
        action="store_true",
        help="ov: a new pipeline before each repeat (its prefix cache empty), as after each iteration's weight update",
    )
    args = ap.parse_args()

    if args.worker:
        job = json.loads(Path(args.job).read_text())
        print(json.dumps(WORKERS[args.worker](job)))
        return

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(args.model)
    prompts = build_prompts(tok, args.prompts)
    lens = [len(p) for p in prompts]
    common = 0
    while all(len(p) > common and p[common] == prompts[0][common] for p in prompts):
        common += 1
    used = {t for p in prompts for t in p}
    free_pad = next(t for t in (0, 1, 3, 4) if t not in used)
    print(
        f"{len(prompts)} prompts, tokens min/median/max {min(lens)}/{int(statistics.median(lens))}/{max(lens)}, "
        f"shared prefix {common}; {args.new_tokens} new tokens each, temperature {args.temperature}; "
        f"threads {args.threads}; median of {args.repeats}",
        flush=True,
    )
    job = dict(
        model=args.model,
        prompts=prompts,
        new_tokens=args.new_tokens,
        temperature=args.temperature,
        repeats=args.repeats,
        threads=args.threads,
        seed=args.seed,
        workdir=str(workdir),
        check_rows=[0, len(prompts) // 2, len(prompts) - 1],
        free_pad_id=free_pad,
        convert_script=args.llama_convert,
        convert_python=args.python or sys.executable,
        ov_export_python=args.ov_export_python,
        ov_rebuild_each=args.ov_rebuild_each,
    )
    pythons = {
        "hf": sys.executable,
        "cached": sys.executable,
        "ort": args.python,
        "ov": args.python,
        "llama": args.llama_python,
    }
    results = {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        py = pythons.get(engine)
        if py is None:
            results[engine] = {"error": "no interpreter given for this engine"}
        elif engine == "llama" and not args.llama_convert:
            results[engine] = {"error": "--llama-convert not given"}
        else:
            print(f"... {engine}", flush=True)
            results[engine] = run_worker(py, engine, job, workdir, args.timeout)
        if "error" in results[engine]:
            print(f"{engine}: {results[engine]['error']}", flush=True)

    ref = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    ref.eval()
    n_prompt = sum(lens)
    base = results.get(args.baseline, {})
    base_s = statistics.median(r["batch_s"] for r in base["runs"]) if "runs" in base else None
    print()
    hdr = (
        f"{'engine':7} {'batch s':>8} {'(runs)':>22} {'vs ' + args.baseline:>9} {'prefill tok/s':>13} {'new tok/s':>9} "
        f"{'decode tok/s':>12} {'lp gap':>7} {'update s':>8}  update / log-probs"
    )
    print(hdr)
    for engine, r in results.items():
        if "runs" not in r:
            print(f"{engine:7} failed: {r.get('error', '')[-300:]}")
            continue
        b = statistics.median(x["batch_s"] for x in r["runs"])
        pf = statistics.median(x["prefill_s"] for x in r["runs"])
        nt = statistics.median(x["new_tokens"] for x in r["runs"])
        r["gap"] = logprob_gap(ref, prompts, r.get("sample"))
        r["summary"] = dict(
            batch_s=b,
            prefill_s=pf,
            prefill_tok_s=n_prompt / pf,
            new_tok_s=nt / b,
            decode_tok_s=nt / max(b - pf, 1e-9),
            ratio_vs_hf=(b / base_s) if base_s else None,
        )
        s = r["summary"]
        runs = ",".join(f"{x['batch_s']:.1f}" for x in r["runs"])
        gap = r["gap"] if r["gap"] is not None else float("nan")
        print(
            f"{engine:7} {b:8.1f} {runs:>22} {s['ratio_vs_hf'] or float('nan'):9.2f} {s['prefill_tok_s']:13.0f} "
            f"{s['new_tok_s']:9.1f} {s['decode_tok_s']:12.1f} {gap:7.4f} "
            f"{r['update']['seconds']:8.1f}  {r['update']['method']} / {r['logprobs_how']}"
        )
        if r.get("note"):
            print(f"{'':7} note: {r['note']}")
    print(
        f"\nvs {args.baseline} = batch time / {args.baseline}'s batch time in this run (<1 is faster). "
        "lp gap = mean |log-prob - HF teacher-forced log-prob| on the sampled tokens of 3 rows. Noisy: 2 shared cores."
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "sample"} for k, v in results.items()}, indent=2)
        )


if __name__ == "__main__":
    main()
