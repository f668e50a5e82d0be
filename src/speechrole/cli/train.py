"""`train`: fine-tune Qwen2.5-Omni's thinker with LoRA into a role-play agent (SpeechRole-Agent), merge
the adapter, or write a tiny random model to try the whole path without weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speechrole.cli.common import RunByDefault, app, err, fail, out
from speechrole.problems import DataError

train_app = typer.Typer(
    cls=RunByDefault,
    help="Fine-tune an omni speech model on role-play data (LoRA on Qwen2.5-Omni's thinker): "
    "`speechrole train PLAN.yaml`, `train merge`, `train tiny-model`.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

NEEDS = "training needs the train extra: pip install 'speechrole[train]'"


def _needs_train_extra() -> None:
    import importlib.util

    missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise fail(f"{', '.join(missing)} not installed: {NEEDS}")


@train_app.command("run")
def train_run(
    plan: Annotated[Path | None, typer.Argument(help="The training plan (YAML); flags override it.")] = None,
    model: Annotated[str | None, typer.Option(help="Base Qwen2.5-Omni checkpoint folder.")] = None,
    data: Annotated[
        list[str] | None, typer.Option(help="Chat JSONL or official-layout dataset (repeatable).")
    ] = None,
    output: Annotated[str | None, typer.Option(help="Output folder (adapter, checkpoints, records).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the split, the data order and the init.")] = None,
    restart: Annotated[
        bool, typer.Option(help="Start over: remove the folder's checkpoints instead of resuming.")
    ] = False,
) -> None:
    """Train a LoRA adapter; started again after a kill, it resumes from the last checkpoint."""
    _needs_train_extra()
    from speechrole.models import ModelMissingError
    from speechrole.train.fit import train
    from speechrole.train.plan import load_plan

    if plan is not None and not plan.is_file():
        raise fail(f"{plan}: plan file not found")
    try:
        loaded = load_plan(
            plan,
            model=model,
            data=tuple(data) if data else None,
            output=output,
            epochs=epochs,
            max_steps=max_steps,
            seed=seed,
        )
        summary = train(
            loaded, restart=restart, note=lambda line: err.print(line, highlight=False, soft_wrap=True)
        )
    except KeyboardInterrupt:
        raise fail("interrupted: run the same command again to resume from the last checkpoint") from None
    except DataError as exc:
        raise fail(exc.problem.describe()) from None
    except (ModelMissingError, ValueError) as exc:
        raise fail(str(exc)) from None
    losses = summary["losses"]
    resumed = f" (resumed from {summary['resumed_from']})" if summary["resumed_from"] else ""
    evals = summary["eval_losses"]
    held = (
        f"{evals[0]['loss']:.4f} (epoch {evals[0]['epoch']:.2f}) -> {evals[-1]['loss']:.4f} (epoch {evals[-1]['epoch']:.2f})"
        if evals
        else "none (nothing held out)"
    )
    out.print(
        f"trained {summary['steps']} steps{resumed} in {summary['seconds']:.1f} s; loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
        f"held-out loss {held}\nadapter: {summary['adapter']} (sha256 {summary['adapter_sha256'][:12]})",
        highlight=False,
        soft_wrap=True,
    )


@train_app.command("merge")
def train_merge(
    adapter: Annotated[Path, typer.Argument(help="The adapter folder, or a training output folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the merged checkpoint goes.")],
    base: Annotated[
        str | None, typer.Option(help="Base checkpoint (default: the one the adapter was trained on).")
    ] = None,
) -> None:
    """Fold the adapter into the thinker and write a full checkpoint (talker and speaker file carried over)."""
    _needs_train_extra()
    from speechrole.models import ModelMissingError
    from speechrole.train.model import adapter_base, adapter_folder, merge

    try:
        folder = adapter_folder(adapter)
        base = base or adapter_base(folder)
        if not base:
            raise fail("the adapter does not name its base model: pass --base")
        record = merge(base, folder, output)
    except (ModelMissingError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    out.print(
        f"merged {record['adapter']} into {record['base']} -> {output} (talker: {record['talker']})",
        highlight=False,
        soft_wrap=True,
    )


@train_app.command("tiny-model")
def train_tiny_model(
    folder: Annotated[Path, typer.Argument(help="Where to write the tiny model.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Write a randomly initialised Qwen2.5-Omni of the real architecture (about 1.1M parameters), with a
    small tokenizer, feature extractor and speaker file: the whole path runs on a CPU in minutes."""
    _needs_train_extra()
    from speechrole.train.tiny import write_tiny_model

    write_tiny_model(folder, seed)
    out.print(f"tiny Qwen2.5-Omni (random weights, seed {seed}) written to {folder}", highlight=False)
