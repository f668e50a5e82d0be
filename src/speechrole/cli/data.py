"""`data`: build a role-play speech dataset from raw media (SpeechRole-Data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from speechrole.cli.common import app, err, fail, out
from speechrole.problems import DataError
from speechrole.progress import LiveProgress

data_app = typer.Typer(
    help="Build a role-play speech dataset from raw media (SpeechRole-Data).", no_args_is_help=True
)
app.add_typer(data_app, name="data")


@data_app.command("run")
def data_run(
    pipeline: Annotated[Path, typer.Argument(help="The pipeline YAML.")],
    executor: Annotated[str, typer.Option(help="local (default) or ray.")] = "local",
    workers: Annotated[int, typer.Option(min=1, help="Ray: actors per row-wise stage.")] = 2,
    address: Annotated[
        str | None, typer.Option(help="Ray: the cluster to join (default: a local Ray).")
    ] = None,
    num_shards: Annotated[int, typer.Option(min=1, help="Split the sources into this many shards.")] = 1,
    shard_index: Annotated[int, typer.Option(min=0, help="Which shard this run processes.")] = 0,
    plan: Annotated[
        bool, typer.Option("--plan", help="Print how long the audio stages should take, and run nothing.")
    ] = False,
) -> None:
    """Run a data pipeline (resumable): per stage a progress bar, then rows kept and dropped, and why."""
    from rich.table import Table

    from speechrole.models import ModelMissingError
    from speechrole.pipeline import LocalExecutor, load_pipeline

    if shard_index >= num_shards:
        raise fail(f"--shard-index must be below --num-shards ({num_shards})")
    try:
        loaded = load_pipeline(pipeline)
    except DataError as exc:
        raise fail(exc.problem.describe()) from None
    if plan:
        print_plan(loaded, executor, workers)
        return
    progress = LiveProgress(err)
    try:
        if executor == "ray":
            if num_shards > 1:
                raise fail("--num-shards is for clusters without Ray; Ray splits the work itself")
            from speechrole.pipeline.ray_executor import RayExecutor

            runner_ = RayExecutor(loaded, progress, workers=workers, address=address)
        elif executor == "local":
            runner_ = LocalExecutor(loaded, progress, num_shards=num_shards, shard_index=shard_index)
        else:
            raise fail(f"--executor must be local or ray, got {executor!r}")
        summaries = runner_.run()
    except KeyboardInterrupt:
        raise fail("interrupted: run the same command again to resume where it stopped") from None
    except (DataError, ModelMissingError, OSError, RuntimeError, ValueError) as exc:
        raise fail(exc.problem.describe() if isinstance(exc, DataError) else str(exc)) from None
    finally:
        progress.stop()
    table = Table(title=f"{loaded.name}: rows per stage ({runner_.folder})", title_justify="left")
    for col in ("stage", "in", "kept", "dropped", "from an earlier run", "seconds", "why dropped"):
        table.add_column(col, justify="left" if col in ("stage", "why dropped") else "right")
    for s in summaries:
        why = ", ".join(f"{k} ({v})" for k, v in s.reasons.most_common(3))
        table.add_row(
            s.name,
            str(s.rows_in),
            str(s.kept),
            str(s.dropped),
            str(s.reused),
            f"{s.seconds:.1f}",
            escape(why),
        )
    out.print(table)
    for s in summaries:  # the first reason of each kind, in full (which file, which value)
        for kind, example in s.examples.items():
            out.print(f"  {s.name}: {escape(example)}" if example != kind else f"  {s.name}: {kind}")
    if num_shards > 1:
        out.print(
            f"shard {shard_index} of {num_shards} done; run without --num-shards once every shard is done"
        )
        return
    export = next((s for s in loaded.stages if s.name == "export"), None)
    if export is not None and len(summaries) == len(loaded.stages):
        folder = export.target(loaded.context)  # type: ignore[attr-defined]
        formats = ", ".join(export.formats())  # type: ignore[attr-defined]
        out.print(f"exported ({formats}) to {folder}")
        if "speechrole" in export.formats():  # type: ignore[attr-defined]
            out.print(
                f"evaluate an agent on it: speechrole eval --bench {folder / 'speechrole'} --agent offline"
            )


def print_plan(loaded: Any, executor: str, workers: int) -> None:
    """The expected time of each audio stage for this pipeline's media, on the cores the run would use."""
    from rich.table import Table

    from speechrole.pipeline.plan import duration, load_rates, media_seconds, plan, total_seconds
    from speechrole.pipeline.stage import available_cpus

    seconds, unreadable = media_seconds([Path(r["media_path"]) for r in loaded.sources])
    rates = load_rates()
    if executor == "ray":
        cores = workers * max(1, round(max(s.resources.cpus for s in loaded.stages)))
        on = f"Ray, {workers} workers ({cores} cores)"
    else:
        cores, on = available_cpus(), f"the local executor, {available_cpus()} cores"
    plans = plan([s.name for s in loaded.stages], seconds / 3600, cores, rates)
    table = Table(
        title=f"{loaded.name}: {len(loaded.sources)} media files, {duration(seconds)} of audio, on {on}",
        title_justify="left",
    )
    for col in ("stage", "h of audio / CPU-h", "setup s", "expected"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for p in plans:
        if p.seconds is None:
            continue
        table.add_row(p.stage, f"{p.hours_per_cpu_hour:g}", f"{p.setup_s:g}", duration(p.seconds))
    table.add_row("audio stages", "", "", duration(total_seconds(plans)))
    out.print(table)
    later = [p.stage for p in plans if p.seconds is None]
    if later:
        out.print(f"not planned (they scale with roles and dialogues, not hours): {', '.join(later)}")
    out.print(
        f"rates: {rates.measured_with} on {rates.cores} cores ({rates.audio_s:g} s of synthetic speech); "
        "more cores are assumed to work as those did"
    )
    for path in unreadable:
        err.print(f"[yellow]ffprobe could not read {escape(path)}: not counted[/]")


@data_app.command("example")
def data_example(
    folder: Annotated[Path, typer.Argument(help="Where to write the episode and its pipeline.")],
) -> None:
    """Write a synthetic episode (three voices, a noisy take, a corrupt file) and a commented pipeline
    for it, to try the whole pipeline offline."""
    from speechrole.pipeline.example import pipeline_yaml, render_episode

    spans = render_episode(folder)
    path = pipeline_yaml(folder)
    voices = len({s.voice for s in spans})
    out.print(f"wrote {folder}/episode.wav ({len(spans)} takes, {voices} voices), enrolment clips and {path}")
    out.print(f"now: speechrole data run {path}")


@data_app.command("stages")
def data_stages() -> None:
    """List the pipeline stages, what each reads and writes, and whether it sees rows or the whole set."""
    from rich.table import Table

    from speechrole.pipeline.stage import STAGES
    from speechrole.pipeline.stages import load_builtin

    load_builtin()
    table = Table(title="Pipeline stages", title_justify="left")
    for col in ("stage", "per", "reads", "writes", "what"):
        table.add_column(col, overflow="fold")
    for entry in STAGES.entries():
        stage = entry.factory()
        table.add_row(
            entry.name,
            stage.per,
            ", ".join(sorted(stage.reads)),
            ", ".join(sorted(stage.writes)),
            entry.summary,
        )
    out.print(table)
