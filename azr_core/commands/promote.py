"""`azr promote`: judge a registered version against the champion, or roll `champion` back.

    azr promote                      # the newest version of azr-policy
    azr promote --version 7 --evaluate --limit 100
    azr promote --rollback

Prints the decision as JSON. Exit status 0 when the gate ran (promoted or not), 1 when promotion failed for want
of a complete evaluation, 2 on bad usage (unknown version, nothing to roll back to).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from azr_core.eval.config import PROMOTION_SUITE, eval_default
from azr_core.tracking.store import DEFAULT_REGISTERED_MODEL

SUITE_HELP = f"Promotion suite (default: {PROMOTION_SUITE})."
TOKENS_HELP = "With --evaluate: tokens per answer."
EVALUATE_HELP = "Evaluate versions that lack a complete evaluation on the suite first (loads the models)."


def promote_cmd(
    version: Annotated[int | None, typer.Option(help="The candidate version (default: the newest).")] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Re-point champion at the previous champion.")] = False,
    suite: Annotated[str | None, typer.Option(help=SUITE_HELP)] = None,
    limit: Annotated[int | None, typer.Option(help="First N items of each promotion benchmark.")] = None,
    test: Annotated[str, typer.Option(help="bootstrap (paired bootstrap) or mcnemar (exact).")] = "bootstrap",
    confidence: Annotated[float, typer.Option(help="Promote only when p < 1 - confidence.")] = 0.95,
    margin: Annotated[float, typer.Option(help="Accuracy gap the candidate must exceed.")] = 0.0,
    evaluate: Annotated[bool, typer.Option("--evaluate/--no-evaluate", help=EVALUATE_HELP)] = False,
    max_new_tokens: Annotated[int, typer.Option(help=TOKENS_HELP)] = eval_default("max_new_tokens"),
    name: Annotated[str, typer.Option(help="Registered model name.")] = DEFAULT_REGISTERED_MODEL,
) -> None:  # fmt: skip
    """Give a version the challenger alias, evaluate it against the champion, promote it if it wins."""
    from mlflow.exceptions import MlflowException

    from azr_core.eval.config import EvalConfig, PromotionConfig
    from azr_core.eval.promotion import PromotionError
    from azr_core.eval.promotion import promote as run_promote
    from azr_core.eval.promotion import rollback as run_rollback

    try:
        if rollback:
            was, now = run_rollback(name=name)
            print(json.dumps({"rolled_back": was, "champion": now}))
            return
        cfg = PromotionConfig(**({"suite": suite} if suite else {}), limit=limit, test=test, confidence=confidence,
                              margin=margin)  # fmt: skip
        evaluate_missing = None
        if evaluate:
            from azr_core.eval.run import evaluate as run_eval

            def evaluate_missing(v: int, benches: list[str]) -> None:
                ecfg = EvalConfig(suite=",".join(benches), limit=cfg.limit, max_new_tokens=max_new_tokens)
                run_eval(f"models:/{name}/{v}", ecfg, progress=lambda m: print(m, file=sys.stderr))

        decision = run_promote(version, cfg, name=name, evaluate_missing=evaluate_missing)
    except (PromotionError, ValueError, MlflowException) as exc:
        print(f"azr promote: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(json.dumps(decision.to_dict()))
    if decision.outcome == "incomplete":
        print(f"azr promote: {decision.reason} (run `azr eval run --model models:/{name}/N --suite {cfg.suite}` "
              "or pass --evaluate)", file=sys.stderr)  # fmt: skip
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `azr promote` to the CLI."""
    app.command("promote")(promote_cmd)
