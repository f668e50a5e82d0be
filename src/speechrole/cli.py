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
from speechrole.progress import LiveProgress

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
    if bench is None:
        from speechrole.score import recorded_benchmarks

        recorded = recorded_benchmarks(results)
        if len(recorded) == 1 and Path(next(iter(recorded))).exists():
            bench = next(iter(recorded))
            err.print(f"benchmark from run.json: {bench}", highlight=False)
    loaded = _load_bench(bench, reference_set, language)[0] if bench else None
    if "category" in splits and loaded is None:
        raise _fail("--by category needs --bench (categories live in the test data)")
    try:
        systems = load_systems(results)
    except DataError as exc:
        raise _fail(exc.problem.describe()) from None
    measured = any(
        (Path(s.source) / f).is_file() for s in systems for f in ("measures.jsonl", "generations.jsonl")
    )
    if not any(s.judgments for s in systems) and not measured:
        for s in systems:
            _print_problems(s.problems, limit=20)
        raise _fail("no readable judge results and no measured run")
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


def split_metric_specs(text: str) -> tuple[str, ...]:
    """`speaker,dnsmos:stride=1,intelligibility:asr=whisper:/m,beam_size=5` -> one spec per metric (a
    `key=value` without a colon continues the previous metric's options)."""
    specs: list[str] = []
    for token in filter(None, (t.strip() for t in text.split(","))):
        if specs and "=" in token and ":" not in token.split("=", 1)[0] and ":" not in token:
            specs[-1] += "," + token
        else:
            specs.append(token)
    return tuple(specs)


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
    from speechrole.measure import Measurement, bench_spec_of, create_metrics
    from speechrole.models import ModelMissingError

    spec = bench or bench_spec_of(run_dir)
    if spec is None:
        raise _fail(f"no benchmark given and none recorded in {run_dir / 'run.json'}; pass --bench")
    loaded, _ = _load_bench(spec, reference_set, [])
    try:
        made = create_metrics(split_metric_specs(metrics))
        for metric in made:
            metric.load()
    except (ModelMissingError, ValueError) as exc:
        raise _fail(str(exc)) from None
    progress = LiveProgress(err)
    try:
        outcome = Measurement(loaded, run_dir, made, progress.stage("measure")).run()
    except DataError as exc:
        raise _fail(exc.problem.describe()) from None
    finally:
        progress.stop()
    _print_problems(outcome.problems, limit=20)
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


def _make_agent(spec: str):  # type: ignore[no-untyped-def]
    from speechrole.agents.base import create_agent
    from speechrole.models import ModelMissingError

    try:
        return create_agent(spec)
    except ModelMissingError as exc:
        raise _fail(str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise _fail(f"agent {spec!r}: {exc}") from None


@app.command()
def generate(
    bench: BenchOpt,
    agent: Annotated[
        str, typer.Option("--agent", "-a", help="Agent spec (see `speechrole agents`) or a YAML file.")
    ],
    run_dir: Annotated[Path, typer.Option("--run-dir", "-r", help="Where the run is written (resumable).")],
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N samples.")] = None,
    roles: Annotated[str | None, typer.Option(help="Comma-separated roles.")] = None,
    mode: Annotated[str | None, typer.Option(help="single or multi (default: both).")] = None,
    history: Annotated[str, typer.Option(help="gold (reference answers as history) or own.")] = "gold",
    workers: Annotated[
        int, typer.Option(min=1, help="Parallel samples, for remote or thread-safe agents.")
    ] = 1,
    name: Annotated[
        str | None, typer.Option(help="The run's name in tables (default: the folder name).")
    ] = None,
    reference_set: RefSetOpt = None,
) -> None:
    """Run an agent over a benchmark into the official output layout (resumable, per-turn latency)."""
    from speechrole.generate import GenerateConfig, Generation
    from speechrole.schema import Mode

    if history not in ("gold", "own"):
        raise _fail(f"--history must be gold or own, got {history!r}")
    if mode is not None and mode not in {m.value for m in Mode}:
        raise _fail(f"--mode must be single or multi, got {mode!r}")
    loaded, _ = _load_bench(bench, reference_set, [])
    made = _make_agent(agent)
    config = GenerateConfig(
        history=history,  # type: ignore[arg-type]
        limit=limit,
        roles=tuple(r.strip() for r in roles.split(",")) if roles else None,
        modes=(Mode(mode),) if mode else None,
        workers=workers,
        name=name,
    )
    progress = LiveProgress(err)
    try:
        outcome = Generation(
            loaded,
            made,
            run_dir,
            config,
            agent_spec=agent,
            bench_spec=bench,
            reporter=progress.stage("generate"),
        ).run()
    except DataError as exc:
        raise _fail(exc.problem.describe()) from None
    finally:
        progress.stop()
        made.close()
    _print_problems(outcome.problems, limit=20)
    out.print(
        f"{outcome.samples} samples, {outcome.turns} turns: {outcome.generated} generated, {outcome.skipped} already "
        f"done, {len(outcome.failed_samples)} samples failed ({outcome.seconds:.1f} s) -> {run_dir}",
        highlight=False,
    )
    if outcome.failed_samples:
        out.print("[yellow]failed samples are listed in generations.jsonl; a rerun tries them again[/]")
        raise typer.Exit(1)


@app.command("serve-agent")
def serve_agent_cmd(
    agent: Annotated[str, typer.Option("--agent", "-a", help="The agent to serve (spec or YAML).")],
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
) -> None:
    """Serve an agent over the remote-agent contract (docs/remote-agent.md) for `--agent remote:url=...`."""
    from speechrole.agents.remote import serve_agent

    made = _make_agent(agent)
    server = serve_agent(made, host, port)
    err.print(
        f"serving {agent} on http://{host}:{server.server_address[1]} (Ctrl-C to stop)", highlight=False
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        made.close()


@app.command("agents")
def agents_list() -> None:
    """List the registered agents and backends, and whether each can run here."""
    from rich.table import Table

    from speechrole.agents import load_builtin
    from speechrole.agents.asr import ASRS
    from speechrole.agents.base import AGENTS
    from speechrole.agents.llm import LLMS
    from speechrole.agents.tts import TTSS

    load_builtin()
    table = Table(title="Agents and backends", title_justify="left")
    for col in ("kind", "name", "usable here", "what"):
        table.add_column(col, overflow="fold")
    for kind, registry in (("agent", AGENTS), ("asr", ASRS), ("llm", LLMS), ("tts", TTSS)):
        for entry in registry.entries():
            why = entry.availability()
            table.add_row(
                kind,
                entry.name,
                "[green]yes[/]" if why is None else f"[red]no[/]: {escape(why)}",
                entry.summary,
            )
    out.print(table)


#: Where a judge model is served when --base-url is not given, and the variable holding its key.
PROVIDERS: tuple[tuple[str, str, str], ...] = (
    ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY"),
    ("gpt-", "https://api.openai.com/v1", "OPENAI_API_KEY"),
)
DEFAULT_KEY_ENV = "SPEECHROLE_JUDGE_API_KEY"


def _endpoint(model: str, base_url: str | None, key_env: str | None) -> tuple[str, str]:
    """The judge's base URL and API-key variable: given, or inferred from the model name."""
    for prefix, url, env in PROVIDERS:
        if model.startswith(prefix):
            return base_url or url, key_env or env
    if base_url is None:
        raise _fail(f"--base-url is needed for judge model {model!r} (an OpenAI-compatible endpoint)")
    return base_url, key_env or DEFAULT_KEY_ENV


def _require_key(url: str, key_env: str) -> None:
    import os

    if not os.environ.get(key_env) and not _is_loopback(url):
        raise _fail(f"set the judge's API key in ${key_env} (keys are read from the environment only)")


def _is_loopback(url: str) -> bool:
    from urllib.parse import urlparse

    return (urlparse(url).hostname or "") in {"127.0.0.1", "localhost", "::1"}


@app.command()
def judge(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or an official tree with --model).")],
    judge_model: Annotated[str, typer.Option("--judge", "-j", help="Judge model, e.g. gemini-2.5-pro.")],
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint (inferred for gemini-*, gpt-*).")
    ] = None,
    api_key_env: Annotated[str | None, typer.Option(help="Environment variable holding the API key.")] = None,
    bench: Annotated[
        str | None, typer.Option("--bench", "-b", help="Benchmark (default: from run.json).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Which model_output/<model> to judge in an official tree.")
    ] = None,
    protocol: Annotated[str, typer.Option(help="official, swap or per-metric.")] = "official",
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 8,
    max_cost: Annotated[
        float | None, typer.Option(help="Stop cleanly before spending more than this (USD).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Judge only the first N samples.")] = None,
    roles: Annotated[str | None, typer.Option(help="Comma-separated roles.")] = None,
    mode: Annotated[str | None, typer.Option(help="single or multi (default: both).")] = None,
    rubric: Annotated[Path | None, typer.Option(help="A rubric YAML replacing the bundled one.")] = None,
    prices: Annotated[Path | None, typer.Option(help="A price table YAML replacing the bundled one.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Cache database (default: ~/.cache/speechrole).")] = None,
    use_cache: Annotated[
        bool, typer.Option("--cache-answers/--no-cache-answers", help="Use the answer cache.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one answer.")] = 300.0,
    max_retries: Annotated[int, typer.Option(min=0, help="Retries of rate-limited or failed calls.")] = 4,
    max_reasks: Annotated[int, typer.Option(min=0, help="Re-asks after an unusable answer.")] = 2,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Sampling seed, where the endpoint supports one.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Cap on the answer's tokens.")] = None,
    estimate_only: Annotated[
        bool, typer.Option("--estimate-only", help="Print the cost estimate and stop.")
    ] = False,
    reference_set: RefSetOpt = None,
) -> None:
    """Judge a run's spoken answers against the references with an audio LLM (resumable, cached)."""
    from speechrole.judge.runner import JudgeConfig, JudgeRun, JudgeTarget
    from speechrole.schema import Mode

    url, key_env = _endpoint(judge_model, base_url, api_key_env)
    if not estimate_only:
        _require_key(url, key_env)
    try:
        target = JudgeTarget.for_run(run_dir, model)
    except DataError as exc:
        raise _fail(exc.problem.describe()) from None
    spec = bench or _bench_from_run_json(target.state_dir)
    loaded, _ = _load_bench(spec, reference_set, [])
    if mode is not None and mode not in {m.value for m in Mode}:
        raise _fail(f"--mode must be single or multi, got {mode!r}")
    config = JudgeConfig(
        model=judge_model,
        base_url=url,
        api_key_env=key_env,
        protocol=protocol,
        concurrency=concurrency,
        timeout_s=timeout,
        max_retries=max_retries,
        max_reasks=max_reasks,
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
        max_cost_usd=max_cost,
        limit=limit,
        roles=tuple(r.strip() for r in roles.split(",")) if roles else None,
        modes=(Mode(mode),) if mode else None,
        rubric_path=rubric,
        prices_path=prices,
        cache_path=cache,
        use_cache=use_cache,
    )
    progress = LiveProgress(err)
    try:
        run = JudgeRun(loaded, target, config, progress.stage("judge"))
    except (ValueError, DataError) as exc:
        raise _fail(exc.problem.describe() if isinstance(exc, DataError) else str(exc)) from None
    if estimate_only:
        estimate = run.estimate_pending()
        out.print(
            "no price known for this judge model" if estimate is None else f"estimated cost: ${estimate:.4f}"
        )
        return
    import asyncio

    try:
        outcome = asyncio.run(run.run())
    finally:
        progress.stop()
    _print_problems(outcome.problems)
    _print_judge_outcome(outcome)
    if outcome.stopped:
        raise typer.Exit(3)


def _bench_from_run_json(state_dir: Path) -> str:
    from speechrole.fileio import read_json

    try:
        data = read_json(state_dir / "run.json")
        return str(data["benchmark"]["spec"])
    except (DataError, KeyError, TypeError):
        raise _fail(
            f"no benchmark given and none recorded in {state_dir / 'run.json'}; pass --bench"
        ) from None


def _print_judge_outcome(o) -> None:  # type: ignore[no-untyped-def]
    est = "unknown (no price for this model)" if o.estimate_usd is None else f"${o.estimate_usd:.4f}"
    if o.planned == 0:
        out.print("[yellow]nothing to judge: no sample matches the selection[/]")
    out.print(
        f"calls: {o.planned} planned · {o.scored} scored · {o.unscored} unscored · {o.from_log} already done · "
        f"{o.from_cache} from cache · {o.requests} requests · {o.reasks} re-asks · {o.retries} retries",
        highlight=False,
    )
    out.print(f"cost: ${o.spent_usd:.4f} spent now (estimate before the run: {est})", highlight=False)
    if o.unscored:
        out.print(
            f"[yellow]{o.unscored} calls are unscored (see judgments.jsonl); a rerun tries them again[/]"
        )
    if o.stopped:
        out.print(f"[red]stopped: {escape(o.stopped)}; everything so far is kept, rerun to continue[/]")
    for name, path in o.paths.items():
        out.print(f"{name}: {path}", highlight=False)


cache_app = typer.Typer(help="Inspect or clear the judge's answer cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def cache_info(cache: Annotated[Path | None, typer.Option(help="Cache database.")] = None) -> None:
    """Where the cache is, how big, and what it holds by judge model and protocol."""
    from speechrole.judge.cache import JudgeCache, default_cache_path

    path = cache or default_cache_path()
    if not path.is_file():
        out.print(f"no cache at {path}")
        return
    info = JudgeCache(path).info()
    out.print(
        f"{info['path']}: {info['answers']} answers, {info['clips']} clip hashes, {info['bytes'] / 1e6:.1f} MB"
    )
    for row in info["by_model"]:
        out.print(f"  {row['model']} / {row['protocol']}: {row['answers']}", highlight=False)


@cache_app.command("clear")
def cache_clear(
    cache: Annotated[Path | None, typer.Option(help="Cache database.")] = None,
    judge_model: Annotated[
        str | None, typer.Option("--judge", help="Only this judge model's answers.")
    ] = None,
) -> None:
    """Delete cached answers (all, or one judge model's)."""
    from speechrole.judge.cache import JudgeCache, default_cache_path

    path = cache or default_cache_path()
    if not path.is_file():
        out.print(f"no cache at {path}")
        return
    n = JudgeCache(path).clear(judge_model)
    out.print(f"deleted {n} cached answers from {path}")


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


# --- eval, demo, report ---------------------------------------------------------------------------

#: The demo: the bundled `mini` benchmark, the offline cascade, the default objective metrics.
DEMO_AGENT = "offline"


def _selection(
    limit: int | None, roles: str | None, mode: str | None, history: str, workers: int, name: str | None
):  # type: ignore[no-untyped-def]
    from speechrole.generate import GenerateConfig
    from speechrole.schema import Mode

    if history not in ("gold", "own"):
        raise _fail(f"--history must be gold or own, got {history!r}")
    if mode is not None and mode not in {m.value for m in Mode}:
        raise _fail(f"--mode must be single or multi, got {mode!r}")
    return GenerateConfig(
        history=history,  # type: ignore[arg-type]
        limit=limit,
        roles=tuple(r.strip() for r in roles.split(",")) if roles else None,
        modes=(Mode(mode),) if mode else None,
        workers=workers,
        name=name,
    )


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
        raise _fail(exc.problem.describe()) from None
    except (ModelMissingError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:
        progress.stop()
    _print_problems(outcome.problems, limit=20)
    if outcome.score is not None:
        judged = any(s.n_judgments for s in outcome.score.systems)
        builders = [objective_role_table] + ([leaderboard, metric_table] if judged else [])
        tables = [t for t in (b(outcome.score) for b in builders) if t is not None]
        _print_tables(tables)
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


def _print_tables(tables) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    for t in tables:
        table = Table(title=t.title, caption=t.caption or None, title_justify="left")
        for i, col in enumerate(t.columns):
            table.add_column(col, justify="left" if i < 2 else "right", overflow="fold")
        for row in t.rows:
            table.add_row(*(escape(c) for c in row))
        out.print(table)


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
    agent: Annotated[
        str, typer.Option("--agent", "-a", help="Agent spec (see `speechrole agents`) or a YAML file.")
    ],
    run_dir: Annotated[Path, typer.Option("--run-dir", "-r", help="Where the run is written (resumable).")],
    judge_model: Annotated[
        str | None, typer.Option("--judge", "-j", help="Judge model (none: objective metrics only).")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="The judge's OpenAI-compatible endpoint (inferred for gemini-*, gpt-*)."),
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the judge's key.")
    ] = None,
    protocol: Annotated[str, typer.Option(help="Judge protocol: official, swap or per-metric.")] = "official",
    concurrency: Annotated[int, typer.Option(min=1, help="Judge requests in flight at once.")] = 8,
    max_cost: Annotated[float | None, typer.Option(help="Stop judging before spending more (USD).")] = None,
    metrics: Annotated[
        str, typer.Option(help="Objective metrics, comma-separated (see `speechrole metrics`).")
    ] = "speaker,dnsmos,intelligibility,prosody,duration",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N samples.")] = None,
    roles: Annotated[str | None, typer.Option(help="Comma-separated roles.")] = None,
    mode: Annotated[str | None, typer.Option(help="single or multi (default: both).")] = None,
    history: Annotated[str, typer.Option(help="gold (reference answers as history) or own.")] = "gold",
    workers: Annotated[
        int, typer.Option(min=1, help="Parallel samples, for remote or thread-safe agents.")
    ] = 1,
    name: Annotated[str | None, typer.Option(help="The run's name in tables (default: the folder).")] = None,
    report: Annotated[bool, typer.Option(help="Write report.html into the run directory.")] = True,
    reference_set: RefSetOpt = None,
) -> None:
    """Evaluate an agent end to end: generate -> measure -> judge (with --judge) -> score -> report."""
    from speechrole.evaluate import EvalConfig
    from speechrole.judge.config import JudgeConfig

    judge = None
    if judge_model:
        url, key_env = _endpoint(judge_model, base_url, api_key_env)
        _require_key(url, key_env)
        judge = JudgeConfig(
            model=judge_model,
            base_url=url,
            api_key_env=key_env,
            protocol=protocol,
            concurrency=concurrency,
            max_cost_usd=max_cost,
        )
    config = EvalConfig(
        bench=bench,
        agent=agent,
        run_dir=run_dir,
        judge=judge,
        metrics=split_metric_specs(metrics),
        selection=_selection(limit, roles, mode, history, workers, name),
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
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the judge's key.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N samples.")] = None,
) -> None:
    """The offline demo: `eval` on the bundled `mini` benchmark with the bundled offline agent (no GPU, no
    key, no network), ending with the score table and the report."""
    from speechrole.evaluate import DEFAULT_METRICS, EvalConfig
    from speechrole.judge.config import JudgeConfig

    judge = None
    if judge_model:
        url, key_env = _endpoint(judge_model, base_url, api_key_env)
        _require_key(url, key_env)
        judge = JudgeConfig(model=judge_model, base_url=url, api_key_env=key_env)
    config = EvalConfig(
        bench="mini",
        agent=DEMO_AGENT,
        run_dir=run_dir,
        judge=judge,
        metrics=DEFAULT_METRICS,
        selection=_selection(limit, None, None, "gold", 1, "offline-demo"),
    )
    _run_eval(config, "demo")


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

    loaded = _load_bench(bench, None, [])[0] if bench else None
    try:
        path = build_report(runs, output, bench=loaded, embed_audio=embed_audio)
    except DataError as exc:
        raise _fail(exc.problem.describe()) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    out.print(f"wrote {path}")


@app.command()
def view(
    runs_dir: Annotated[Path, typer.Argument(help="A folder of run directories (or one run).")],
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8766,
    rater: Annotated[str, typer.Option(help="Your rater id for the blind A/B mode.")] = "",
) -> None:
    """A local web app over runs: scores, samples to filter, sort and listen to, and blind A/B rating."""
    from speechrole.view import discover_runs, serve

    if not runs_dir.is_dir():
        raise _fail(f"{runs_dir}: not a folder")
    if not discover_runs(runs_dir):
        raise _fail(f"{runs_dir}: no run directory (run.json and model_output/) found in it")
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise _fail("the viewer needs its extra: pip install 'speechrole[view]'") from None
    err.print(
        f"speechrole view on http://{host}:{port} (Ctrl-C to stop); ratings go to {runs_dir / 'ratings.sqlite'}"
    )
    serve(runs_dir, host, port, rater)


@app.command()
def agreement(
    runs_dir: Annotated[Path, typer.Argument(help="The folder given to `speechrole view`.")],
    ratings: Annotated[
        Path | None, typer.Option(help="Ratings database (default: RUNS_DIR/ratings.sqlite).")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table or json.")] = Format.table,
    replicates: Annotated[int, typer.Option(min=100, help="Bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Judge against human ratings per metric (Spearman, Kendall) and Krippendorff's alpha between raters
    and between repeated judgments, with bootstrap intervals."""
    import json

    from rich.table import Table

    from speechrole.agreement import agreement as compute
    from speechrole.agreement import collect
    from speechrole.schema import METRIC_ABBREV

    try:
        human, judge, raters, n = collect(runs_dir, ratings)
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from None
    report = compute(human, judge, raters=raters, n_ratings=n, replicates=replicates, seed=seed)
    if fmt is Format.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return

    def cell(i) -> str:  # type: ignore[no-untyped-def]
        if i.value is None:
            return "–"
        return f"{i.value:.3f}" + ("" if i.low is None else f" [{i.low:.2f}, {i.high:.2f}]")

    table = Table(
        title=f"Agreement: {n} ratings (sample x rater) by {len(raters)} rater(s) ({', '.join(raters)})",
        caption=f"on s_agent/s_reference per sample · {report.confidence:.0%} CI: bootstrap over samples, "
        f"{report.replicates} replicates, seed {seed}",
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
) -> None:
    """Run a data pipeline (resumable): per stage a progress bar, then rows kept and dropped, and why."""
    from rich.table import Table

    from speechrole.models import ModelMissingError
    from speechrole.pipeline import LocalExecutor, load_pipeline

    if shard_index >= num_shards:
        raise _fail(f"--shard-index must be below --num-shards ({num_shards})")
    try:
        loaded = load_pipeline(pipeline)
    except DataError as exc:
        raise _fail(exc.problem.describe()) from None
    progress = LiveProgress(err)
    try:
        if executor == "ray":
            if num_shards > 1:
                raise _fail("--num-shards is for clusters without Ray; Ray splits the work itself")
            from speechrole.pipeline.ray_executor import RayExecutor

            runner_ = RayExecutor(loaded, progress, workers=workers, address=address)
        elif executor == "local":
            runner_ = LocalExecutor(loaded, progress, num_shards=num_shards, shard_index=shard_index)
        else:
            raise _fail(f"--executor must be local or ray, got {executor!r}")
        summaries = runner_.run()
    except KeyboardInterrupt:
        raise _fail("interrupted: run the same command again to resume where it stopped") from None
    except (DataError, ModelMissingError, OSError, RuntimeError, ValueError) as exc:
        raise _fail(exc.problem.describe() if isinstance(exc, DataError) else str(exc)) from None
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
