"""`azr model`: get the policy model ready.

    azr model prepare                      convert the embedded SmolLM2-135M-Instruct once into the cache
    azr model prepare --cache-dir /data    the same, into another cache
    azr model prepare --force              convert again even if a converted folder exists
    azr model prepare ./my-model           check that a local HF folder loads (prints where it resolved)

Exit status 2 when the model cannot be found (the message says what to install or which path was tried).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

model_app = typer.Typer(help="Prepare and inspect the policy model.", no_args_is_help=True)


@model_app.command("prepare")
def prepare(
    name_or_path: Annotated[
        str, typer.Argument(help="'smollm2-135m-instruct' (the embedded default), a local HF folder or a hub id.")
    ] = "smollm2-135m-instruct",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Converted-model cache; default $AZR_CACHE/models or ~/.cache/azr/models.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Convert again even when the cache already holds the model.")] = False,
) -> None:
    """Convert the default model into a plain HF folder (once), or check that another model resolves and loads."""
    from azr_core.policy.config import DEFAULT_MODEL, ModelConfig
    from azr_core.policy.model import ModelNotFoundError, prepare_default_model, resolve_model_path

    try:
        if name_or_path == DEFAULT_MODEL:
            path = prepare_default_model(cache_dir, force=force, progress=typer.echo)
        else:
            path = Path(resolve_model_path(ModelConfig(name_or_path=name_or_path, cache_dir=cache_dir)))
            from transformers import AutoConfig

            AutoConfig.from_pretrained(str(path))  # fails here, with the path, rather than at training time
    except ModelNotFoundError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    except OSError as err:
        typer.echo(f"error: cannot load model '{name_or_path}': {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add the `model` command group to the `azr` app."""
    app.add_typer(model_app, name="model")
