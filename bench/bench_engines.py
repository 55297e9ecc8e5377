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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.engine_workers

from bench.engine_workers import timed, worker_llama, worker_ort, worker_ov  # noqa: E402

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
# Workers: each runs one engine and prints one JSON object on its last line.


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

    return timed(update)[1]


def worker_hf(job: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, LogitsProcessor

    torch.set_num_threads(job["threads"])
    model, load_s = timed(
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


def worker_cached(job: dict) -> dict:
    """The project's own cached loop (azr_core/policy/rollout/decode.py): each prompt prefilled once, prompts sharing
    a prefix decoded against one copy of it, finished rows dropped. End of sequence never stops a row here, as for
    every engine; new weights are the in-place copy of the hf backend (none at all where it is the trainer's module)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from azr_core.policy.rollout.base import SamplingParams, Script
    from azr_core.policy.rollout.decode import CachedSampler, _Row

    torch.set_num_threads(job["threads"])
    model, load_s = timed(lambda: AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32))
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
