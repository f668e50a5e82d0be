"""`eval` and `demo`: the whole evaluation in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from speechrole.cli.common import (
    AgentOpt,
    BaseUrlOpt,
    HistoryOpt,
    KeyEnvOpt,
    LimitOpt,
    ModeOpt,
    NameOpt,
    ProtocolOpt,
    RefSetOpt,
    ReleasedJudgeOpt,
    RolesOpt,
    RunDirOpt,
    WorkersOpt,
    app,
    err,
    fail,
    judge_config,
    out,
    print_problems,
    print_tables,
    selection,
)
from speechrole.problems import DataError
from speechrole.progress import LiveProgress

#: The demo: the bundled `mini` benchmark, the offline cascade, the default objective metrics.
DEMO_AGENT = "offline"


def _run_eval(config, title: str) -> None:  # type: ignore[no-untyped-def]
    from speechrole.evaluate import Evaluation
    from speechrole.models import ModelMissingError
    from speechrole.score.render import leaderboard, metric_table, objective_role_table

    err.print(
        f"{title}: {config.bench} · agent {config.agent} · run directory {config.run_dir}", highlight=False
    )
    progress = LiveProgress(err)
    try:
        outcome = Evaluation(config, progress).run()
    except DataError as exc:
        raise fail(exc.problem.describe()) from None
    except (ModelMissingError, ValueError) as exc:
        raise fail(str(exc)) from None
    finally:
        progress.stop()
    print_problems(outcome.problems, limit=20)
    if outcome.score is not None:
        judged = any(s.n_judgments for s in outcome.score.systems)
        builders = [objective_role_table] + ([leaderboard, metric_table] if judged else [])
        tables = [t for t in (b(outcome.score) for b in builders) if t is not None]
        print_tables(tables)
        if not judged:
            from speechrole.evaluate import JUDGE_HELP

            out.print(f"[yellow]{escape(JUDGE_HELP)}[/]", highlight=False, soft_wrap=True)
    timings = " · ".join(f"{k} {v['seconds']:.1f} s" for k, v in outcome.stages.items())
    out.print(f"stages: {timings}", highlight=False)
    for name, path in outcome.paths.items():
        out.print(f"{name}: {path}", highlight=False)
    for line in outcome.failed:
        out.print(f"[yellow]{escape(line)}[/]", highlight=False)
    if not outcome.ok:
        raise typer.Exit(1)


@app.command("eval")
def eval_cmd(
    bench: Annotated[
        str,
        typer.Option(
            "--bench",
            "-b",
            help="Benchmark: a SpeechRole-Eval folder, hf:OWNER/NAME (Hugging Face), or mini.",
        ),
    ],
    agent: AgentOpt,
    run_dir: RunDirOpt,
    judge_model: Annotated[
        str | None, typer.Option("--judge", "-j", help="Judge model (none: objective metrics only).")
    ] = None,
    base_url: BaseUrlOpt = None,
    api_key_env: KeyEnvOpt = None,
    protocol: ProtocolOpt = "official",
    released_judge: ReleasedJudgeOpt = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Judge requests in flight at once.")] = 8,
    max_cost: Annotated[float | None, typer.Option(help="Stop judging before spending more (USD).")] = None,
    metrics: Annotated[
        str, typer.Option(help="Objective metrics, comma-separated (see `speechrole metrics`).")
    ] = "speaker,dnsmos,intelligibility,prosody,duration",
    limit: LimitOpt = None,
    roles: RolesOpt = None,
    mode: ModeOpt = None,
    history: HistoryOpt = "gold",
    workers: WorkersOpt = 1,
    name: NameOpt = None,
    report: Annotated[bool, typer.Option(help="Write report.html into the run directory.")] = True,
    reference_set: RefSetOpt = None,
) -> None:
    """Evaluate an agent end to end: generate -> measure -> judge (with --judge) -> score -> report."""
    from speechrole.evaluate import EvalConfig
    from speechrole.measure import parse_metric_specs

    judge = None
    if judge_model:
        judge = judge_config(
            judge_model,
            base_url,
            api_key_env,
            protocol=protocol,
            released_judge=released_judge,
            concurrency=concurrency,
            max_cost_usd=max_cost,
        )
    config = EvalConfig(
        bench=bench,
        agent=agent,
        run_dir=run_dir,
        judge=judge,
        metrics=parse_metric_specs(metrics),
        selection=selection(limit, roles, mode, history, workers, name),
        reference_set=reference_set,
        report=report,
    )
    _run_eval(config, "eval")


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Option("--run-dir", "-r", help="Where the demo run is written.")] = Path(
        "runs/demo"
    ),
    judge_model: Annotated[
        str | None, typer.Option("--judge", "-j", help="Also judge, with this model (needs its endpoint).")
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="The judge's OpenAI-compatible endpoint.")] = None,
    api_key_env: KeyEnvOpt = None,
    limit: LimitOpt = None,
) -> None:
    """The offline demo: `eval` on the bundled `mini` benchmark with the bundled offline agent (no GPU, no
    key, no network), ending with the score table and the report."""
    from speechrole.evaluate import DEFAULT_METRICS, EvalConfig

    judge = judge_config(judge_model, base_url, api_key_env) if judge_model else None
    config = EvalConfig(
        bench="mini",
        agent=DEMO_AGENT,
        run_dir=run_dir,
        judge=judge,
        metrics=DEFAULT_METRICS,
        selection=selection(limit, None, None, "gold", 1, "offline-demo"),
    )
    _run_eval(config, "demo")
