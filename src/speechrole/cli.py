"""The `speechrole` command: thin wrappers that parse arguments, call the library and print results."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from speechrole import __version__
from speechrole.problems import DataError, Problem

app = typer.Typer(
    name="speechrole",
    help="Build, run and evaluate speech role-playing agents (SpeechRole-Eval).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Tables go to stdout at a readable width even when piped; diagnostics go to stderr.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


class Format(str, Enum):
    table = "table"
    md = "md"
    csv = "csv"
    json = "json"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _print_problems(problems: list[Problem], limit: int | None = None) -> None:
    shown = problems if limit is None else problems[:limit]
    for p in shown:
        style = "red" if p.severity == "error" else "yellow"
        err.print(f"[{style}]{escape(str(p))}[/]", highlight=False, soft_wrap=True)
    if limit is not None and len(problems) > limit:
        err.print(f"... {len(problems) - limit} more")


def _load_bench(spec: str, reference_set: str | None, languages: list[str]):  # type: ignore[no-untyped-def]
    from speechrole.bench import load_benchmark
    from speechrole.bench.language import parse_overrides

    try:
        overrides = parse_overrides(languages)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        return load_benchmark(spec, reference_set=reference_set, languages=overrides)
    except DataError as exc:
        raise _fail(exc.problem.describe()) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"speechrole {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Build, run and evaluate speech role-playing agents (SpeechRole-Eval)."""


BenchOpt = Annotated[str, typer.Option("--bench", "-b", help="Benchmark: a SpeechRole-Eval directory.")]
RefSetOpt = Annotated[
    str | None,
    typer.Option("--reference-set", help="Reference audio field: role_speech_path or 1/2/3 (HF variant)."),
]
LangOpt = Annotated[
    list[str], typer.Option("--language", help="Override a role's language: ROLE=en|zh (repeatable).")
]


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
    reference_set: RefSetOpt = None,
    language: LangOpt = [],  # noqa: B006 - typer needs a literal default
) -> None:
    """Score judge results: per-metric mean of s_test/s_ref, groups, overall, intervals, splits."""
    from speechrole.bench.language import parse_overrides
    from speechrole.score import BootstrapSpec, load_systems, score_systems
    from speechrole.score.render import render_csv, render_json, render_markdown, render_terminal

    splits = tuple(s.strip() for s in by.split(",") if s.strip())
    unknown = sorted(set(splits) - {"mode", "language", "role", "category"})
    if unknown:
        raise _fail(f"--by: unknown split(s) {unknown}; use mode, language, role, category")
    loaded = _load_bench(bench, reference_set, language)[0] if bench else None
    if "category" in splits and loaded is None:
        raise _fail("--by category needs --bench (categories live in the test data)")
    try:
        systems = load_systems(results)
    except DataError as exc:
        raise _fail(exc.problem.describe()) from None
    if not any(s.judgments for s in systems):
        for s in systems:
            _print_problems(s.problems, limit=20)
        raise _fail("no readable judge results")
    try:
        report = score_systems(
            systems,
            bench=loaded,
            languages=parse_overrides(language),
            by=splits,
            baseline=baseline,
            spec=BootstrapSpec(replicates=replicates, confidence=confidence, seed=seed),
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
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
def validate(
    outputs: Annotated[Path, typer.Argument(help="A run directory or a model_output/<model> folder.")],
    bench: BenchOpt,
    model: Annotated[str | None, typer.Option(help="Model name when OUTPUTS holds several.")] = None,
    roles: Annotated[str | None, typer.Option(help="Comma-separated roles (default: all).")] = None,
    mode: Annotated[str | None, typer.Option(help="single or multi (default: both).")] = None,
    reference: Annotated[bool, typer.Option(help="Also check the benchmark's reference clips.")] = True,
    details: Annotated[bool, typer.Option(help="List every clip with its duration and sample rate.")] = False,
    reference_set: RefSetOpt = None,
) -> None:
    """Check outputs against a benchmark: samples, turns, text, audio present and decodable."""
    from speechrole.outputs import find_output_tree
    from speechrole.schema import Mode
    from speechrole.validate import validate_outputs

    loaded, bench_problems = _load_bench(bench, reference_set, [])
    try:
        tree = find_output_tree(outputs, model)
        modes = [Mode(mode)] if mode else None
    except DataError as exc:
        raise _fail(exc.problem.describe()) from None
    except ValueError:
        raise _fail(f"--mode must be single or multi, got {mode!r}") from None
    role_list = [r.strip() for r in roles.split(",")] if roles else None
    report = validate_outputs(loaded, tree, roles=role_list, modes=modes, check_reference=reference)
    _print_problems([p for p in bench_problems if p.severity == "error"] + report.problems)
    _print_clip_summary(report, details)
    n_err, n_warn = len(report.errors), len(report.problems) - len(report.errors)
    verdict = "[green]valid[/]" if report.ok else f"[red]{n_err} error(s)[/]"
    out.print(
        f"{verdict}, {n_warn} warning(s): {report.samples_checked} samples of {report.roles_checked} role files checked"
        f" in {tree.base}"
    )
    if not report.ok:
        raise typer.Exit(1)


def _print_clip_summary(report, details: bool) -> None:  # type: ignore[no-untyped-def]
    from collections import defaultdict

    from rich.table import Table

    if details:
        table = Table(title="Clips", title_justify="left")
        for col in ("side", "sample", "turn", "path", "duration s", "sample rate", "channels"):
            table.add_column(col)
        for c in report.clips:
            i = c.info
            table.add_row(
                c.side,
                c.sample,
                str(c.turn),
                c.path,
                f"{i.duration_s:.2f}" if i else "–",
                str(i.sample_rate) if i else "–",
                str(i.channels) if i else "–",
            )
        out.print(table)
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for c in report.clips:
        mode, role, _ = c.sample.split("/", 1)[0], c.sample.split("/", 1)[1].rsplit("/", 1)[0], None
        groups[(c.side, f"{mode}/{role}")].append(c)
    if not groups:
        return
    table = Table(title="Audio by role", title_justify="left")
    for col in ("side", "role", "clips", "decoded", "total s", "min s", "max s", "sample rates"):
        table.add_column(col, justify="left" if col in ("side", "role") else "right")
    for (side, role), clips in sorted(groups.items()):
        infos = [c.info for c in clips if c.info]
        durations = [i.duration_s for i in infos]
        rates = ",".join(str(r) for r in sorted({i.sample_rate for i in infos})) or "–"
        table.add_row(
            side,
            role,
            str(len(clips)),
            str(len(infos)),
            f"{sum(durations):.1f}" if durations else "–",
            f"{min(durations):.2f}" if durations else "–",
            f"{max(durations):.2f}" if durations else "–",
            rates,
        )
    out.print(table)


@app.command()
def convert(
    predictions: Annotated[list[Path], typer.Argument(help="Prediction files (JSONL or JSON).")],
    bench: BenchOpt,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder, e.g. model_output/<model>.")],
    mode: Annotated[
        str | None, typer.Option(help="single or multi, for records without a mode field.")
    ] = None,
) -> None:
    """Convert per-turn predictions to the official model-output layout (OUT/{mode}_result/json/)."""
    from speechrole.outputs import convert_predictions
    from speechrole.schema import Mode

    loaded, _ = _load_bench(bench, None, [])
    if mode is not None and mode not in {m.value for m in Mode}:
        raise _fail(f"--mode must be single or multi, got {mode!r}")
    result = convert_predictions(predictions, loaded, out_dir, Mode(mode) if mode else None)
    _print_problems(result.problems)
    out.print(f"wrote {len(result.written)} role file(s) under {out_dir}")
    if result.problems:
        raise typer.Exit(1)


@app.command("bench")
def bench_info(
    bench: Annotated[str, typer.Argument(help="Benchmark: a SpeechRole-Eval directory.")],
    reference_set: RefSetOpt = None,
    language: LangOpt = [],  # noqa: B006
) -> None:
    """Show a benchmark's roles, languages, sample counts, reference voices and data defects."""
    from rich.table import Table

    from speechrole.schema import Mode

    loaded, problems = _load_bench(bench, reference_set, language)
    table = Table(title=f"{loaded.name} ({loaded.root})", title_justify="left", show_lines=False)
    for col in ("role", "name", "work", "lang", "single", "multi", "ref clip", "transcript", "defects"):
        table.add_column(col, overflow="fold")
    for role in loaded.roles.values():
        table.add_row(
            role.id,
            role.name,
            role.work,
            role.language.value,
            str(len(loaded.samples_of(role.id, Mode.SINGLE))),
            str(len(loaded.samples_of(role.id, Mode.MULTI))),
            "yes" if role.reference_audio else "no",
            "yes" if role.reference_transcript else "no",
            "\n".join(role.defects) or "",
        )
    out.print(table)
    out.print(
        f"{len(loaded.roles)} roles, {len(loaded.samples)} samples, reference set {loaded.reference_set}, "
        f"content hash {loaded.content_hash[:16]}"
    )
    _print_problems(problems)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
