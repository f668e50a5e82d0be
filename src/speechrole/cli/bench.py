"""`bench`, `validate`, `convert`: benchmarks and outputs in the official layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speechrole.cli.common import BenchOpt, LangOpt, RefSetOpt, app, fail, load_bench, out, print_problems
from speechrole.problems import DataError


@app.command("bench")
def bench_info(
    bench: Annotated[str, typer.Argument(help="Benchmark: a SpeechRole-Eval directory.")],
    reference_set: RefSetOpt = None,
    language: LangOpt = [],  # noqa: B006
) -> None:
    """Show a benchmark's roles, languages, sample counts, reference voices and data defects."""
    from rich.table import Table

    from speechrole.schema import Mode

    loaded, problems = load_bench(bench, reference_set, language)
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
    print_problems(problems)


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

    loaded, bench_problems = load_bench(bench, reference_set, [])
    try:
        tree = find_output_tree(outputs, model)
        modes = [Mode(mode)] if mode else None
    except DataError as exc:
        raise fail(exc.problem.describe()) from None
    except ValueError:
        raise fail(f"--mode must be single or multi, got {mode!r}") from None
    role_list = [r.strip() for r in roles.split(",")] if roles else None
    report = validate_outputs(loaded, tree, roles=role_list, modes=modes, check_reference=reference)
    print_problems([p for p in bench_problems if p.severity == "error"] + report.problems)
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

    loaded, _ = load_bench(bench, None, [])
    if mode is not None and mode not in {m.value for m in Mode}:
        raise fail(f"--mode must be single or multi, got {mode!r}")
    result = convert_predictions(predictions, loaded, out_dir, Mode(mode) if mode else None)
    print_problems(result.problems)
    out.print(f"wrote {len(result.written)} role file(s) under {out_dir}")
    if result.problems:
        raise typer.Exit(1)
