"""`generate`, `serve-agent`, `agents`: running agents."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from speechrole.cli.common import (
    AgentOpt,
    BenchOpt,
    HistoryOpt,
    LimitOpt,
    ModeOpt,
    NameOpt,
    RefSetOpt,
    RolesOpt,
    RunDirOpt,
    WorkersOpt,
    app,
    err,
    fail,
    load_bench,
    make_agent,
    out,
    print_problems,
    selection,
)
from speechrole.problems import DataError
from speechrole.progress import LiveProgress


@app.command()
def generate(
    bench: BenchOpt,
    agent: AgentOpt,
    run_dir: RunDirOpt,
    limit: LimitOpt = None,
    roles: RolesOpt = None,
    mode: ModeOpt = None,
    history: HistoryOpt = "gold",
    workers: WorkersOpt = 1,
    name: NameOpt = None,
    reference_set: RefSetOpt = None,
) -> None:
    """Run an agent over a benchmark into the official output layout (resumable, per-turn latency)."""
    from speechrole.generate import Generation

    config = selection(limit, roles, mode, history, workers, name)
    loaded, _ = load_bench(bench, reference_set, [])
    made = make_agent(agent)
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
        raise fail(exc.problem.describe()) from None
    finally:
        progress.stop()
        made.close()
    print_problems(outcome.problems, limit=20)
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
    token_env: Annotated[
        str,
        typer.Option(
            help="Require 'Authorization: Bearer <token>', the token read from this environment variable."
        ),
    ] = "",
) -> None:
    """Serve an agent over the remote-agent contract (docs/remote-agent.md) for `--agent remote:url=...`."""
    import os

    from speechrole.agents.remote import serve_agent
    from speechrole.view import is_loopback

    token = None
    if token_env:
        token = os.environ.get(token_env, "").strip() or None
        if token is None:
            raise fail(f"--token-env {token_env}: the variable is not set or empty")
    if token is None and not is_loopback(host):
        err.print(
            "[yellow]serve-agent listens beyond loopback without a token: anyone who can reach it can make "
            "the agent work; set --token-env[/]",
            highlight=False,
        )
    made = make_agent(agent)
    server = serve_agent(made, host, port, token=token)
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
