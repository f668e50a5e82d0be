"""`score`, `report`, `view`, `agreement`: the commands that read runs and results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from speechrole.cli.common import Format, LangOpt, RefSetOpt, app, err, fail, load_bench, out, print_problems
from speechrole.problems import DataError


def print_stale(systems: list[Any]) -> None:
    """One line per system that had stale judgments or measures (they are skipped, never scored)."""
    for s in systems:
        for what, counts in (("judgment", s.stale), ("measure", s.stale_measures)):
            if counts:
                reasons = "; ".join(f"{n} {why}" for why, n in sorted(counts.items()))
                total = sum(counts.values())
                err.print(
                    f"[yellow]{escape(s.name)}: {total} stale {what}(s) skipped ({escape(reasons)})[/]",
                    highlight=False,
                )


@app.command()
def score(
    results: Annotated[list[Path], typer.Argument(help="Result trees or run directories.")],
    bench: Annotated[
        str | None, typer.Option("--bench", "-b", help="Benchmark, for categories and coverage.")
    ] = None,
    by: Annotated[str, typer.Option(help="Splits: any of mode,language,role,category.")] = "mode,language",
    baseline: Annotated[str | None, typer.Option(help="Compare every system with this one, paired.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout.")
    ] = None,
    replicates: Annotated[int, typer.Option(min=100, help="Bootstrap replicates.")] = 2000,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Interval level.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    detail: Annotated[bool, typer.Option(help="Add ratio of means and win/tie/loss per metric.")] = False,
    failures: Annotated[
        str, typer.Option(help="Agent failures: zero (score 0, the headline) or exclude (left out).")
    ] = "zero",
    reference_set: RefSetOpt = None,
    language: LangOpt = [],  # noqa: B006 - typer needs a literal default
) -> None:
    """Score judge results: per-metric mean of s_test/s_ref, groups, overall, intervals, splits."""
    from speechrole.bench.language import parse_overrides
    from speechrole.run import Run, common_benchmark
    from speechrole.score import BootstrapSpec, load_systems, score_systems
    from speechrole.score.render import render_csv, render_json, render_markdown, render_terminal

    splits = tuple(s.strip() for s in by.split(",") if s.strip())
    unknown = sorted(set(splits) - {"mode", "language", "role", "category"})
    if unknown:
        raise fail(f"--by: unknown split(s) {unknown}; use mode, language, role, category")
    if failures not in ("zero", "exclude"):
        raise fail(f"--failures must be zero or exclude, got {failures!r}")
    try:
        if bench is not None:
            loaded = load_bench(bench, reference_set, language)[0]
        else:
            runs = [p for p in results if Run.is_run(p)]
            loaded = common_benchmark(runs) if runs else None
            if loaded is not None:
                err.print(f"benchmark from run.json: {loaded.name}", highlight=False)
        if "category" in splits and loaded is None:
            raise fail("--by category needs --bench (categories live in the test data)")
        systems = load_systems(results, loaded)
    except DataError as exc:
        raise fail(exc.problem.describe()) from None
    print_stale(systems)
    measured = any(s.measures or s.latencies for s in systems)
    if not any(s.judgments for s in systems) and not measured:
        for s in systems:
            print_problems(s.problems, limit=20)
        raise fail("no readable judge results and no measured run")
    if not any(s.judgments for s in systems):
        err.print(
            "no judge results: the 8 judge metrics need a judge (speechrole judge RUN --judge MODEL); "
            "showing the objective metrics",
            highlight=False,
        )
    try:
        report = score_systems(
            systems,
            bench=loaded,
            languages=parse_overrides(language),
            by=splits,
            baseline=baseline,
            spec=BootstrapSpec(replicates=replicates, confidence=confidence, seed=seed),
            failures=failures,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    if fmt is Format.table and output is None:
        render_terminal(report, out, detail=detail)
        return
    text = {
        Format.table: lambda: render_markdown(report, detail=detail),
        Format.md: lambda: render_markdown(report, detail=detail),
        Format.csv: lambda: render_csv(report),
        Format.json: lambda: render_json(report),
    }[fmt]()
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        from speechrole.fileio import write_text_atomic

        write_text_atomic(output, text)
        err.print(f"wrote {output}")


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    bench: Annotated[
        str | None, typer.Option("--bench", "-b", help="Benchmark (default: from run.json).")
    ] = None,
    embed_audio: Annotated[
        bool, typer.Option(help="Embed the audio in the file instead of linking it (large).")
    ] = False,
) -> None:
    """Write a self-contained HTML report: scores, and every sample to read and listen to."""
    from speechrole.report import build_report

    loaded = load_bench(bench, None, [])[0] if bench else None
    try:
        path = build_report(runs, output, bench=loaded, embed_audio=embed_audio)
    except DataError as exc:
        raise fail(exc.problem.describe()) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    out.print(f"wrote {path}")


@app.command()
def view(
    runs_dir: Annotated[Path, typer.Argument(help="A folder of run directories (or one run).")],
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8766,
    rater: Annotated[str, typer.Option(help="Your rater id for the blind A/B mode.")] = "",
    allow_host: Annotated[
        list[str],
        typer.Option(
            "--allow-host",
            help="Another name the viewer answers to (its LAN name with --host 0.0.0.0, or localhost:9000 "
            "for an ssh tunnel); repeatable.",
        ),
    ] = [],  # noqa: B006 - typer needs a literal default
) -> None:
    """A local web app over runs: scores, samples to filter, sort and listen to, and blind A/B rating."""
    from speechrole.view import discover_runs, exposure_warning, serve

    if not runs_dir.is_dir():
        raise fail(f"{runs_dir}: not a folder")
    if not discover_runs(runs_dir):
        raise fail(f"{runs_dir}: no run directory (run.json and model_output/) found in it")
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise fail("the viewer needs its extra: pip install 'speechrole[view]'") from None
    if warning := exposure_warning(host):
        err.print(f"[yellow]{escape(warning)}[/]", highlight=False)

    def ready(url: str) -> None:
        err.print(f"speechrole view on {url} (Ctrl-C to stop); ratings go to {runs_dir / 'ratings.sqlite'}")

    serve(runs_dir, host, port, rater, allowed_hosts=allow_host, on_ready=ready)


@app.command()
def agreement(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="RUNS_DIR (the folder given to `speechrole view`): the judge against human ratings. "
            "A B (two runs or results trees): judge A against judge B. One run or folder of runs with "
            "--judges: its two judge configurations.",
            metavar="PATH",
            show_default=False,
        ),
    ],
    ratings: Annotated[
        Path | None, typer.Option(help="Ratings database (default: RUNS_DIR/ratings.sqlite).")
    ] = None,
    two_configs: Annotated[
        bool,
        typer.Option("--judges", help="Compare two judge configurations of one run (or folder of runs)."),
    ] = False,
    config: Annotated[
        list[str],
        typer.Option(
            "--config",
            help="A judge configuration: its label, or a unique part of it such as the model. With --judges "
            "give it twice (A, then B); with A B, once for both sides or twice (A's, then B's).",
        ),
    ] = [],  # noqa: B006 - typer needs a literal default
    mapping: Annotated[
        list[str],
        typer.Option("--map", help="NAME_A=NAME_B: system NAME_A of A is NAME_B of B (repeatable)."),
    ] = [],  # noqa: B006 - typer needs a literal default
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table or json.")] = Format.table,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Judge vs judge: write JSONL, one record per system x metric and ranking."
        ),
    ] = None,
    replicates: Annotated[int, typer.Option(min=100, help="Bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    failures: Annotated[
        str, typer.Option(help="Judge vs judge, agent failures: zero (score 0, as score) or exclude.")
    ] = "zero",
) -> None:
    """Judge against human ratings per metric (Spearman, Kendall) and Krippendorff's alpha between raters
    and between repeated judgments; or judge against judge per system and metric (Spearman, Kendall,
    alpha, mean shift) and on the systems' ranking; with bootstrap intervals."""
    import json

    from rich.table import Table

    from speechrole.agreement import JudgeValues, collect
    from speechrole.agreement import agreement as compute
    from speechrole.schema import METRIC_ABBREV

    if two_configs or len(paths) == 2:
        from speechrole import judge_agreement as ja

        if fmt not in (Format.table, Format.json):
            raise fail(f"--format {fmt.value}: judge vs judge prints table or json")
        if two_configs and len(paths) != 1:
            raise fail(f"--judges compares the judge configurations of one run, got {len(paths)} paths")
        if ratings is not None:
            raise fail("--ratings is for the judge against human ratings (one RUNS_DIR, no --judges)")
        if len(config) > 2:
            raise fail(f"--config: at most two (A, then B), got {len(config)}")
        try:
            if two_configs:
                side_a, side_b = ja.load_judges(paths[0], config)
            else:
                side_a = ja.load_side(paths[0], config[0] if config else None)
                side_b = ja.load_side(paths[1], config[-1] if config else None)
            pairing = ja.pair_systems(list(side_a.systems), list(side_b.systems), ja.parse_map(mapping))
        except DataError as exc:
            raise fail(exc.problem.describe()) from None
        except ValueError as exc:
            raise fail(str(exc)) from None
        for side in (side_a, side_b):
            print_stale(list(side.systems.values()))
        for line in ja.notes(side_a, side_b, pairing):
            err.print(f"[yellow]{escape(line)}[/]", highlight=False, soft_wrap=True)
        if not pairing.pairs:
            raise fail("no system is in both A and B (name them with --map NAME_A=NAME_B)")
        try:
            result = ja.compare_judges(
                side_a, side_b, pairing, replicates=replicates, seed=seed, failures=failures
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
        lines = [json.dumps(r, ensure_ascii=False) for r in result.records()]
        if output is not None:
            from speechrole.fileio import write_text_atomic

            write_text_atomic(output, "".join(line + "\n" for line in lines))
            err.print(f"wrote {output}", highlight=False)
        from speechrole.run import Run

        for run_path in dict.fromkeys(p for p in paths if Run.is_run(p)):  # kept with the run it measures
            with (run_path / ja.FILENAME).open("a", encoding="utf-8") as handle:
                handle.writelines(line + "\n" for line in lines)
        if fmt is Format.json:
            sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
        else:
            ja.render_terminal(result, out)
        return
    if len(paths) != 1:
        raise fail(f"give RUNS_DIR, or two runs or results trees A B; got {len(paths)} paths")
    unused = [o for o, v in (("--config", config), ("--map", mapping), ("--output", output)) if v]
    if unused:
        raise fail(f"{', '.join(unused)}: for judge vs judge (A B, or --judges)")
    runs_dir = paths[0]
    try:
        human, judges, raters, n = collect(runs_dir, ratings)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    reports = [
        compute(human, values, label=label, raters=raters, n_ratings=n, replicates=replicates, seed=seed)
        for label, values in (sorted(judges.items()) or [("no judged run", JudgeValues())])
    ]
    if fmt is Format.json:
        sys.stdout.write(json.dumps([r.to_dict() for r in reports], indent=2) + "\n")
        return

    def cell(i) -> str:  # type: ignore[no-untyped-def]
        if i.value is None:
            return "–"
        return f"{i.value:.3f}" + ("" if i.low is None else f" [{i.low:.2f}, {i.high:.2f}]")

    for report in reports:  # one table per judge configuration: never pooled
        table = Table(
            title=f"Agreement with judge {report.judge}: {n} ratings (sample x rater) by {len(raters)} "
            f"rater(s) ({', '.join(raters)})",
            caption=f"on the sample score s_agent/s_reference · judge repeats: the same task asked again · "
            f"{report.confidence:.0%} CI: bootstrap over samples, {report.replicates} replicates, seed {seed}",
            title_justify="left",
        )
        for col in (
            "metric",
            "n",
            "Spearman (judge vs human)",
            "Kendall",
            "n",
            "alpha raters",
            "n",
            "alpha judge repeats",
        ):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for m in report.metrics:
            table.add_row(
                METRIC_ABBREV.get(m.metric, m.metric),
                str(m.n_paired),
                cell(m.spearman),
                cell(m.kendall),
                str(m.n_rater_units),
                cell(m.alpha_raters),
                str(m.n_repeat_units),
                cell(m.alpha_judge),
            )
        out.print(table)
