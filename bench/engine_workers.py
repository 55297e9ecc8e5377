"""The bench_engines workers of the engines from other venvs (ONNX Runtime GenAI, llama.cpp, OpenVINO GenAI).

Each runs in its own subprocess under the engine's interpreter (`bench_engines.py --worker ENGINE --job FILE`), so it
imports nothing of the project and no torch at module level; it prints one JSON object on its last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def timed(fn):
    """(fn(), seconds it took)."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


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
    model, load_s = timed(lambda: og.Model(str(out_dir)))
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
    llm, load_s = timed(
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
    pipe, load_s = timed(
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
