"""`probe`: how far to trust the judge, measured on a run's own samples."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from speechrole.cli.common import (
    BaseUrlOpt,
    Format,
    KeyEnvOpt,
    ProtocolOpt,
    ReleasedJudgeOpt,
    app,
    err,
    fail,
    judge_config,
    out,
    print_problems,
)
from speechrole.problems import DataError


@app.command()
def probe(
    run_dir: Annotated[Path, typer.Argument(help="A judged (or judgeable) run directory.")],
    judge_model: Annotated[str, typer.Option("--judge", "-j", help="Judge model, e.g. gemini-2.5-pro.")],
    base_url: BaseUrlOpt = None,
    api_key_env: KeyEnvOpt = None,
    protocol: ProtocolOpt = "official",
    released_judge: ReleasedJudgeOpt = None,
    probes: Annotated[
        list[str] | None, typer.Option("--probe", help="A probe to run (repeatable; default: all).")
    ] = None,
    samples: Annotated[int, typer.Option(min=2, help="How many samples to probe (seeded choice).")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the sample choice and the bootstrap.")] = 0,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 8,
    max_cost: Annotated[float | None, typer.Option(help="Stop before spending more than this (USD).")] = None,
    rubric: Annotated[Path | None, typer.Option(help="A rubric YAML replacing the bundled one.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Cache database (default: ~/.cache/speechrole).")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table or json.")] = Format.table,
) -> None:
    """Re-judge a sample of the run with controlled changes to the agent's audio: shifts a fair judge must
    not show (gain, silence, position, the reference against itself) and ones a useful judge must."""
    from rich.table import Table

    from speechrole.judge.probe import PROBES, probe_verdicts, run_probes
    from speechrole.run import Run

    config = judge_config(
        judge_model,
        base_url,
        api_key_env,
        protocol=protocol,
        released_judge=released_judge,
        concurrency=concurrency,
        max_cost_usd=max_cost,
        rubric_path=rubric,
        cache_path=cache,
    )
    try:
        bench = Run.open(run_dir).bench
        report = run_probes(
            run_dir,
            bench,
            config,
            list(probes or PROBES),
            n_samples=samples,
            seed=seed,
            on_progress=lambda line: err.print(escape(line), highlight=False),
        )
    except (ValueError, DataError) as exc:
        raise fail(exc.problem.describe() if isinstance(exc, DataError) else str(exc)) from None
    print_problems(report.problems)
    if fmt is Format.json:
        sys.stdout.write(json.dumps(report.records(), indent=2, ensure_ascii=False) + "\n")
    else:
        j = report.judge
        table = Table(
            title=f"Probes of judge {j['model']} · {j['protocol']} {j['version']} on {len(report.samples)} samples",
            caption="shift: mean change of the sample ratio s_test/s_ref (reference-self: against a tie, 1), "
            "95% bootstrap interval over samples; written to probes.jsonl",
            title_justify="left",
        )
        for col in ("probe", "kind", "metric", "n", "shift", "95% CI", "verdict"):
            table.add_column(col, justify="right" if col in ("n", "shift", "95% CI") else "left")
        for s in report.shifts:
            if not s.expected:
                continue
            ci = "–" if s.low is None else f"[{s.low:+.3f}, {s.high:+.3f}]"
            shift = "–" if s.shift is None else f"{s.shift:+.3f}"
            table.add_row(s.probe, s.kind, s.metric, str(s.n), shift, ci, s.verdict)
        out.print(table)
        for name, verdict in probe_verdicts(report.shifts).items():
            out.print(f"{name}: {verdict}", highlight=False)
    if report.stopped:
        err.print(f"[red]stopped: {escape(report.stopped)}; rerun to continue[/]")
        raise typer.Exit(3)
