"""`judge` and `cache`: the audio-LLM judge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from speechrole.cli.common import (
    ModeOpt,
    ProtocolOpt,
    RefSetOpt,
    ReleasedJudgeOpt,
    RolesOpt,
    app,
    err,
    fail,
    judge_config,
    load_bench,
    out,
    print_problems,
)
from speechrole.problems import DataError
from speechrole.progress import LiveProgress


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
    protocol: ProtocolOpt = "official",
    released_judge: ReleasedJudgeOpt = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 8,
    max_cost: Annotated[
        float | None, typer.Option(help="Stop cleanly before spending more than this (USD).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Judge only the first N samples.")] = None,
    roles: RolesOpt = None,
    mode: ModeOpt = None,
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
    canary: Annotated[
        bool,
        typer.Option("--canary", help="Ask the benchmark's drift canaries first; stop if the judge moved."),
    ] = False,
    canary_threshold: Annotated[
        float, typer.Option(min=0.0, help="Canary drift that stops the run: mean |change| in points.")
    ] = 0.5,
) -> None:
    """Judge a run's spoken answers against the references with an audio LLM (resumable, cached)."""
    from speechrole.judge.runner import JudgeRun, JudgeTarget
    from speechrole.run import Run
    from speechrole.schema import Mode

    try:
        target = JudgeTarget.for_run(run_dir, model)
        if bench is None and not (target.state_dir / "run.json").is_file():
            raise fail(
                f"no benchmark given and none recorded in {target.state_dir / 'run.json'}; pass --bench"
            )
        loaded = load_bench(bench, reference_set, [])[0] if bench else Run.open(target.state_dir).bench
    except DataError as exc:
        raise fail(exc.problem.describe()) from None
    if mode is not None and mode not in {m.value for m in Mode}:
        raise fail(f"--mode must be single or multi, got {mode!r}")
    config = judge_config(
        judge_model,
        base_url,
        api_key_env,
        check_key=not estimate_only,
        protocol=protocol,
        released_judge=released_judge,
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
        canary=canary,
        canary_threshold=canary_threshold,
    )
    progress = LiveProgress(err)
    try:
        run = JudgeRun(loaded, target, config, progress.stage("judge"))
    except (ValueError, DataError) as exc:
        raise fail(exc.problem.describe() if isinstance(exc, DataError) else str(exc)) from None
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
    print_problems(outcome.problems)
    _print_judge_outcome(outcome)
    if outcome.stopped:
        raise typer.Exit(3)


def _print_canary(result) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    if result.recorded:
        out.print(f"canaries: first answers of this judge configuration recorded in {result.store}")
        return
    table = Table(
        title=f"Drift canaries: {result.judge['model']} · {result.judge['protocol']} {result.judge['version']}",
        caption=f"change since the stored answers ({result.store}); stop above {result.threshold} points",
        title_justify="left",
    )
    for col in ("metric", "n", "Δ test", "Δ reference", "mean |Δ|", "drifted"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for d in result.drift:
        table.add_row(
            d.metric, str(d.n), f"{d.shift_test:+.2f}", f"{d.shift_ref:+.2f}", f"{d.mean_abs:.2f}",
            "[red]yes[/]" if d.drifted else "no",
        )  # fmt: skip
    out.print(table)


def _print_judge_outcome(o) -> None:  # type: ignore[no-untyped-def]
    if o.canary is not None:
        _print_canary(o.canary)
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
