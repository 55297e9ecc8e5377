"""The scripted policy the self-play tests run iterations with: it answers each prompt by the block its context ends
in (cpu-tiny's answer skeleton), proposes valid, banned and cut-off programs, and checks what reaches the update; and
`make_session`, a cpu-tiny session on it with a real executor, store and MLflow store in a temporary folder."""

from __future__ import annotations

import itertools
from pathlib import Path

from azr_core.config import load_config
from azr_core.policy.rollout.base import Completion, PromptOutput
from azr_core.selfplay.session import Session

# cpu-tiny writes answers block by block (the skeleton opens each block; the policy writes its content up to the
# closing fence), so the scripted policy answers according to the block the context ends in.


def block_role(prompt: str) -> str:
    """Which answer a prompt asks for, read from its text."""
    if "Write a new Python program" in prompt:
        return "program"
    if "inputs for the program below" in prompt:
        return "inputs"
    if "What does `f` return" in prompt:
        return "output"
    if "Find an input for which" in prompt:
        return "input"
    return "function"


class ScriptedPolicy:
    """Proposals: valid ones with fresh programs, a banned import, one cut off at the length limit; answers: right or
    wrong. `repeat` makes every valid proposal the same program (duplicates within one batch)."""

    def __init__(self, repeat: bool = False) -> None:
        self.counter = itertools.count(2)
        self.repeat = repeat
        self.steps = 0
        self.saved: list[Path] = []
        self.prompts: list[str] = []
        self.trained: list[list] = []
        self.logprob_calls = 0

    def _completion(self, prompt: str, i: int) -> tuple[str, str]:
        role, block = block_role(prompt), prompt.rsplit("```", 1)[-1].strip()
        if role == "program" and block == "python":
            k = next(self.counter)
            kind = k % 3
            if kind == 0:
                return f"def f(x):\n    return x * {3 if self.repeat else k}\n```", "stop"
            if kind == 1:
                return "import os\ndef f(x):\n    return 1\n```", "stop"
            return "def f(x):\n    return", "length"
        if role == "program":  # the ```input block after the program
            return "3\n```", "stop"
        if role == "inputs":
            if block == "message":
                return "same\n```", "stop"
            return f"{prompt.count('```input')}\n```", "stop"  # four distinct inputs
        if role == "output":
            return ("4\n```", "stop") if i % 2 else ("4 and more", "length")
        if role == "input":
            return "2\n```", "stop"
        return "def f(x):\n    return x\n```", "stop"

    def generate(self, prompts, params):
        out = []
        for p in prompts:
            self.prompts.append(p)
            comps = []
            for i in range(params.n):
                text, finish = self._completion(p, i)
                comps.append(Completion(text, [5] * 4, [-0.5] * 4, finish))
            out.append(PromptOutput(p, [1, 2, 3], comps))
        return out

    def compute_logprobs(self, records):
        self.logprob_calls += 1
        # 0.05 from the sampler's -0.5: within trainer.max_logprob_gap, yet tells a recomputed value apart
        return [[-0.45] * len(r.completion_token_ids) for r in records]

    def train_step(self, records, *, total_tokens=None):
        groups = {r.group for r in records}
        assert groups <= {
            f"{role}/{t}" for role in ("propose", "solve") for t in ("deduction", "abduction", "induction")
        }
        assert all(r.old_logprobs == [-0.45] * 4 for r in records), [r.old_logprobs for r in records]  # recomputed
        self.trained.append(list(records))
        self.steps += 1
        return {"loss": 0.5, "sequences": float(len(records)), "step": float(self.steps)}

    def save_checkpoint(self, path):
        path = Path(path)
        (path / "hf").mkdir(parents=True, exist_ok=True)
        (path / "trainer.json").write_text("{}")
        (path / "hf" / "config.json").write_text("{}")  # enough of an HF folder for the registry
        self.saved.append(path)
        return path

    def load_checkpoint(self, path):
        return self.steps

    def close(self):
        pass


class CharTokenizer:
    def apply_chat_template(self, conversation, tokenize=False, add_generation_prompt=True):
        return "\n".join(f"<{m['role']}>{m['content']}" for m in conversation) + "\n<assistant>"

    def __call__(self, text):
        return {"input_ids": list(range(len(text) // 4))}


def make_session(tmp_path: Path, policy=None, **over) -> Session:
    overrides = [
        f"run.run_dir={tmp_path / 'run'}",
        "executor.workers=3",
        "executor.timeout_s=2.0",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.register_every=0",
        "store.fsync=false",
        "buffers.seed_quota=4",
        "buffers.seed_round_size=3",
        "buffers.seed_max_rounds=2",
        "selfplay.batch_per_group=4",
        "trainer.recompute_old_logprobs=true",  # the paper's path (cpu-tiny takes the sampler's): the policy checks
    ]
    overrides += [f"{k}={v}" for k, v in over.items()]
    cfg = load_config(None, overrides, profile="cpu-tiny")
    return Session(cfg, policy=policy or ScriptedPolicy(), tokenizer=CharTokenizer())
