"""What every command module shares: the app, the two consoles, error and problem printing, options."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from speechrole.problems import DataError, Problem

if TYPE_CHECKING:
    from speechrole.schema import Benchmark

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


class RunByDefault(TyperGroup):
    """A command group whose `run` subcommand is the default: `speechrole train PLAN.yaml` (or flags
    only) means `speechrole train run ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in {"--help", "-h"}:
            args = ["run", *args]
        return super().parse_args(ctx, args)


class Format(str, Enum):
    table = "table"
    md = "md"
    csv = "csv"
    json = "json"


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def print_problems(problems: list[Problem], limit: int | None = None) -> None:
    shown = problems if limit is None else problems[:limit]
    for p in shown:
        style = "red" if p.severity == "error" else "yellow"
        err.print(f"[{style}]{escape(str(p))}[/]", highlight=False, soft_wrap=True)
    if limit is not None and len(problems) > limit:
        err.print(f"... {len(problems) - limit} more")


def load_bench(spec: str, reference_set: str | None, languages: list[str]) -> tuple[Benchmark, list[Problem]]:
    from speechrole.bench import load_benchmark
    from speechrole.bench.language import parse_overrides

    try:
        overrides = parse_overrides(languages)
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        return load_benchmark(spec, reference_set=reference_set, languages=overrides)
    except DataError as exc:
        raise fail(exc.problem.describe()) from None


def make_agent(spec: str) -> Any:
    from speechrole.agents.base import create_agent
    from speechrole.models import ModelMissingError

    try:
        return create_agent(spec)
    except ModelMissingError as exc:
        raise fail(str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise fail(f"agent {spec!r}: {exc}") from None


def judge_config(model: str, base_url: str | None, api_key_env: str | None, **options: Any) -> Any:
    """The judge's configuration (provider defaults filled in); fails with one line when it cannot be
    called (`check_key`: the key variable is unset and the endpoint is not local)."""
    from speechrole.judge.config import JudgeConfig

    check_key = options.pop("check_key", True)
    try:
        config = JudgeConfig.for_model(model, base_url, api_key_env, **options)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if check_key and (why := config.key_problem()):
        raise fail(why)
    return config


def selection(
    limit: int | None, roles: str | None, mode: str | None, history: str, workers: int, name: str | None
) -> Any:
    """The samples and history policy of `generate` and `eval`, checked (one line on a bad value)."""
    from speechrole.generate import GenerateConfig
    from speechrole.schema import Mode

    if history not in ("gold", "own"):
        raise fail(f"--history must be gold or own, got {history!r}")
    if mode is not None and mode not in {m.value for m in Mode}:
        raise fail(f"--mode must be single or multi, got {mode!r}")
    return GenerateConfig(
        history=history,  # type: ignore[arg-type]
        limit=limit,
        roles=tuple(r.strip() for r in roles.split(",")) if roles else None,
        modes=(Mode(mode),) if mode else None,
        workers=workers,
        name=name,
    )


def print_tables(tables: Any) -> None:
    from rich.table import Table

    for t in tables:
        table = Table(title=t.title, caption=t.caption or None, title_justify="left")
        for i, col in enumerate(t.columns):
            table.add_column(col, justify="left" if i < 2 else "right", overflow="fold")
        for row in t.rows:
            table.add_row(*(escape(c) for c in row))
        out.print(table)


BenchOpt = Annotated[str, typer.Option("--bench", "-b", help="Benchmark: a SpeechRole-Eval directory.")]
RefSetOpt = Annotated[
    str | None,
    typer.Option("--reference-set", help="Reference audio field: role_speech_path or 1/2/3 (HF variant)."),
]
LangOpt = Annotated[
    list[str], typer.Option("--language", help="Override a role's language: ROLE=en|zh (repeatable).")
]
AgentOpt = Annotated[
    str, typer.Option("--agent", "-a", help="Agent spec (see `speechrole agents`) or a YAML file.")
]
RunDirOpt = Annotated[Path, typer.Option("--run-dir", "-r", help="Where the run is written (resumable).")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Only the first N samples.")]
RolesOpt = Annotated[str | None, typer.Option(help="Comma-separated roles.")]
ModeOpt = Annotated[str | None, typer.Option(help="single or multi (default: both).")]
HistoryOpt = Annotated[str, typer.Option(help="gold (reference answers as history) or own.")]
WorkersOpt = Annotated[int, typer.Option(min=1, help="Parallel samples, for remote or thread-safe agents.")]
NameOpt = Annotated[str | None, typer.Option(help="The run's name in tables (default: the folder name).")]
BaseUrlOpt = Annotated[
    str | None, typer.Option(help="The judge's OpenAI-compatible endpoint (inferred for gemini-*, gpt-*).")
]
KeyEnvOpt = Annotated[str | None, typer.Option(help="Environment variable holding the judge's key.")]
ProtocolOpt = Annotated[
    str,
    typer.Option(
        help="Judge protocol: official (our wording), swap, per-metric, or released (the released judge, "
        "rebuilt from your copy of its script: --released-judge)."
    ),
]
ReleasedJudgeOpt = Annotated[
    Path | None,
    typer.Option(
        envvar="SPEECHROLE_RELEASED_JUDGE",
        help="Your copy of SpeechRole's benchmark/gemini_judge.py (v1) or SpeechRole-Eval/gemini_judge.py "
        "(v2), read without running it, for --protocol released.",
    ),
]
