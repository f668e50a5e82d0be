"""`measure` and `metrics`: objective speech metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from speechrole.cli.common import RefSetOpt, app, err, fail, load_bench, out, print_problems
from speechrole.problems import DataError
from speechrole.progress import LiveProgress


@app.command()
def measure(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (outputs in model_output/).")],
    metrics: Annotated[
        str, typer.Option(help="Comma-separated metrics, with options (see `speechrole metrics`).")
    ] = "speaker,dnsmos,intelligibility,prosody,duration",
    bench: Annotated[
        str | None, typer.Option("--bench", "-b", help="Benchmark (default: from run.json).")
    ] = None,
    reference_set: RefSetOpt = None,
) -> None:
    """Objective speech metrics per turn, on the agent's and the reference's audio (resumable, cached)."""
    from speechrole.measure import Measurement, create_metrics, parse_metric_specs
    from speechrole.models import ModelMissingError
    from speechrole.run import Run

    try:
        loaded = load_bench(bench, reference_set, [])[0] if bench else Run.open(run_dir).bench
    except DataError as exc:
        raise fail(exc.problem.describe()) from None
    try:
        made = create_metrics(parse_metric_specs(metrics))
        for metric in made:
            metric.load()
    except (ModelMissingError, ValueError) as exc:
        raise fail(str(exc)) from None
    progress = LiveProgress(err)
    try:
        outcome = Measurement(loaded, run_dir, made, progress.stage("measure")).run()
    except DataError as exc:
        raise fail(exc.problem.describe()) from None
    finally:
        progress.stop()
    print_problems(outcome.problems, limit=20)
    rtf = outcome.seconds / outcome.audio_seconds if outcome.audio_seconds else 0.0
    out.print(
        f"{outcome.clips} clips ({outcome.audio_seconds:.0f} s of audio): {outcome.measured} values measured, "
        f"{outcome.reused} reused, {outcome.errors} without a value; {outcome.seconds:.1f} s (real-time factor "
        f"{rtf:.3f}) -> {run_dir / 'measures.jsonl'}",
        highlight=False,
    )


@app.command("metrics")
def metrics_list() -> None:
    """List the objective metrics, their fields (with the better direction), and whether each runs here."""
    from rich.table import Table

    from speechrole.metrics import METRICS, load_builtin

    load_builtin()
    table = Table(title="Objective metrics", title_justify="left")
    for col in ("name", "fields", "usable here", "what"):
        table.add_column(col, overflow="fold")
    for entry in METRICS.entries():
        fields = ", ".join(f"{k} ({v})" for k, v in entry.factory.fields.items())  # type: ignore[attr-defined]
        why = entry.availability()
        table.add_row(
            entry.name,
            fields,
            "[green]yes[/]" if why is None else f"[red]no[/]: {escape(why)}",
            entry.summary,
        )
    out.print(table)
