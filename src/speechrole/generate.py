"""Run an agent over a benchmark: every selected sample, turn by turn, into the official output layout.

`R/model_output/{mode}_result/json/{role}.json` is rewritten (atomically) after every turn, audio goes
to `R/model_output/{mode}_result/audio/{role}/{role}_{d}_{t}.wav`, and every turn's reply (text,
intermediates, per-stage latency) or error is appended to `R/generations.jsonl`. A rerun fills in
only what is missing; a crash loses at most the turn in flight. `R/run.json` names the benchmark,
the agent and everything it is made of.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from speechrole import __version__
from speechrole.agents.base import Agent, Exchange, History, TurnRequest
from speechrole.audio import probe
from speechrole.fileio import read_json, resolve_inside, write_json_atomic
from speechrole.outputs import OutputTree, OutputTurn, RoleOutput, read_role_output, write_role_output
from speechrole.problems import DataError, Problem
from speechrole.schema import Benchmark, Mode, Sample


@dataclass
class GenerateConfig:
    history: History = "gold"
    limit: int | None = None
    roles: tuple[str, ...] | None = None
    modes: tuple[Mode, ...] | None = None
    workers: int = 1
    name: str | None = None


class Reporter(typing.Protocol):
    def start(self, turns: int) -> None: ...

    def advance(self, outcome: str) -> None: ...


class _Silent:
    def start(self, turns: int) -> None:
        pass

    def advance(self, outcome: str) -> None:
        pass


@dataclass
class GenerateOutcome:
    samples: int = 0
    turns: int = 0
    generated: int = 0
    skipped: int = 0  # already done in an earlier run
    failed_samples: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0


def git_sha() -> str | None:
    """The commit of the speechrole checkout in use, when it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def benchmark_record(bench: Benchmark, spec: str) -> dict[str, Any]:
    return {
        "spec": spec,
        "name": bench.name,
        "root": str(bench.root),
        "content_hash": bench.content_hash,
        "reference_set": bench.reference_set,
    }


def select_samples(bench: Benchmark, config: GenerateConfig) -> list[Sample]:
    """The samples a run covers: its roles and modes, then the first `limit`."""
    chosen = [
        s
        for s in bench.samples
        if (config.roles is None or s.role in config.roles)
        and (config.modes is None or s.mode in config.modes)
    ]
    return chosen[: config.limit] if config.limit is not None else chosen


def turn_done(run_dir: Path, turn: OutputTurn | None) -> bool:
    """A turn is done when its text is there and its clip exists and has a readable header."""
    if turn is None or turn.text is None or not turn.audio_path:
        return False
    try:
        probe(resolve_inside(run_dir, turn.audio_path), decode=False)
    except DataError:
        return False
    return True


def pending_turns(bench: Benchmark, run_dir: Path, config: GenerateConfig) -> int:
    """How many turns of the selection a run still lacks, read from disk (no agent needed)."""
    run_dir = Path(run_dir).absolute()
    tree = OutputTree(run_dir / "model_output", run_dir)
    outputs: dict[tuple[Mode, str], RoleOutput | None] = {}
    missing = 0
    for sample in select_samples(bench, config):
        key = (sample.mode, sample.role)
        if key not in outputs:
            file = tree.json_file(*key)
            try:
                outputs[key] = read_role_output(file)[0] if file.is_file() else None
            except DataError:
                outputs[key] = None
        output = outputs[key]
        turns = output.dialogues.get(sample.index, []) if output else []
        missing += sum(
            not turn_done(run_dir, turns[j] if j < len(turns) else None) for j in range(len(sample.turns))
        )
    return missing


def check_run_json(run_dir: Path, bench: Benchmark, agent_spec: str, history: str) -> dict[str, Any]:
    """The run's `run.json` (empty for a new run); refuses a run made from another benchmark, agent or
    history policy, so that one folder never mixes two experiments."""
    path = Path(run_dir) / "run.json"
    data = read_json(path) if path.is_file() else {}
    previous = data.get("benchmark", {}).get("content_hash")
    if previous and previous != bench.content_hash:
        raise DataError(
            path,
            "benchmark.content_hash",
            "this run was generated from another benchmark; use a new --run-dir",
        )
    old_agent = data.get("agent", {}).get("spec")
    if old_agent and old_agent != agent_spec:
        raise DataError(path, "agent.spec", f"this run was generated by {old_agent!r}; use a new --run-dir")
    if data.get("history") not in (None, history):
        raise DataError(path, "history", f"this run used history {data['history']!r}; use a new --run-dir")
    return data


class Generation:
    """One generate run; `run()` does the work. Role files are kept in memory and written per turn."""

    def __init__(
        self,
        bench: Benchmark,
        agent: Agent,
        run_dir: Path,
        config: GenerateConfig,
        *,
        agent_spec: str,
        bench_spec: str,
        reporter: Reporter | None = None,
    ) -> None:
        self.bench, self.agent, self.config = bench, agent, config
        self.run_dir = Path(run_dir).absolute()
        self.tree = OutputTree(self.run_dir / "model_output", self.run_dir)
        self.agent_spec, self.bench_spec = agent_spec, bench_spec
        self.reporter = reporter or _Silent()
        self.outcome = GenerateOutcome()
        self._outputs: dict[tuple[Mode, str], RoleOutput] = {}
        self._locks: dict[tuple[Mode, str], threading.Lock] = {}
        self._log_lock = threading.Lock()
        self._outputs_lock = threading.Lock()
        self._log = None

    def selected(self) -> list[Sample]:
        return select_samples(self.bench, self.config)

    # --- run.json ----------------------------------------------------------------------------------

    def _write_run_json(self) -> None:
        path = self.run_dir / "run.json"
        data = check_run_json(self.run_dir, self.bench, self.agent_spec, self.config.history)
        data.update(
            {
                "name": data.get("name") or self.config.name or self.run_dir.name,
                "benchmark": benchmark_record(self.bench, self.bench_spec),
                "agent": {"spec": self.agent_spec, **self.agent.describe()},
                "history": self.config.history,
                "speechrole_version": __version__,
                "git_sha": git_sha(),
                "created": data.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )
        write_json_atomic(path, data)

    # --- resume ------------------------------------------------------------------------------------

    def _output(self, mode: Mode, role: str) -> RoleOutput:
        with self._outputs_lock:  # workers may reach the same role file at once
            return self._load_output(mode, role)

    def _load_output(self, mode: Mode, role: str) -> RoleOutput:
        key = (mode, role)
        if key not in self._outputs:
            file = self.tree.json_file(mode, role)
            output = RoleOutput(role=role)
            if file.is_file():
                try:
                    output, problems = read_role_output(file)
                    self.outcome.problems += problems
                except DataError as exc:  # unreadable: start the role over, keeping the file aside
                    self.outcome.problems.append(exc.problem)
                    file.replace(file.with_suffix(".json.unreadable"))
                    output = RoleOutput(role=role)
            self._outputs[key] = output
            self._locks[key] = threading.Lock()
        return self._outputs[key]

    def _done(self, turn: OutputTurn | None) -> bool:
        return turn_done(self.run_dir, turn)

    # --- one sample --------------------------------------------------------------------------------

    def _record(self, line: dict[str, Any]) -> None:
        with self._log_lock:
            assert self._log is not None
            self._log.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._log.flush()

    def _sample(self, sample: Sample) -> None:
        role = self.bench.roles[sample.role]
        output = self._output(sample.mode, sample.role)
        lock = self._locks[(sample.mode, sample.role)]
        with lock:
            turns = list(output.dialogues.get(sample.index, []))
        history: list[Exchange] = []
        own = self.config.history == "own"
        changed = False  # with the agent's own history, a regenerated turn makes the later ones stale
        for j, gold in enumerate(sample.turns):
            existing = turns[j] if j < len(turns) else None
            if self._done(existing) and not (own and changed):
                self.outcome.skipped += 1
                self.reporter.advance("skipped")
                assert existing is not None
                answer = existing.text or ""
            else:
                audio_rel = (
                    self.tree.audio_file(sample.mode, sample.role, sample.index, j)
                    .relative_to(self.run_dir)
                    .as_posix()
                )
                request = TurnRequest(
                    role=role,
                    sample=sample,
                    turn=j,
                    history=tuple(history),
                    user_text=gold.user_text,
                    user_audio=resolve_inside(self.bench.root, gold.user_audio) if gold.user_audio else None,
                    audio_out=self.run_dir / audio_rel,
                )
                started = time.perf_counter()
                try:
                    reply = self.agent.reply(request)
                except Exception as exc:  # the sample stops here; the others go on
                    self._record(
                        {
                            "sample": sample.key,
                            "turn": j,
                            "status": "error",
                            "error": f"{type(exc).__name__}: {exc}",
                            "seconds": round(time.perf_counter() - started, 3),
                        }
                    )
                    self.outcome.failed_samples.append(sample.key)
                    self.outcome.problems.append(
                        Problem(sample.source, f"[{sample.index}].dialogue[{j}]", f"{self.agent_spec}: {exc}")
                    )
                    self.reporter.advance("failed")
                    return
                done = OutputTurn(user_text=gold.user_text, text=reply.text, audio_path=audio_rel)
                with lock:
                    current = output.dialogues.setdefault(sample.index, [])
                    current[j : j + 1] = [done]
                    if own:
                        del current[j + 1 :]  # answers that followed the old one are regenerated next
                    write_role_output(
                        self.tree.json_file(sample.mode, sample.role), sample.role, output.dialogues
                    )
                self._record(
                    {
                        "sample": sample.key,
                        "turn": j,
                        "status": "ok",
                        "text": reply.text,
                        "audio": audio_rel,
                        "intermediates": reply.intermediates,
                        "latency_s": reply.latency_s,
                    }
                )
                self.outcome.generated += 1
                self.reporter.advance("generated")
                turns[j : j + 1] = [done]
                changed = True
                answer = reply.text
            history.append(Exchange(user=gold.user_text, assistant=answer if own else gold.reference_text))

    def run(self) -> GenerateOutcome:
        started = time.perf_counter()
        samples = self.selected()
        self.outcome.samples = len(samples)
        self.outcome.turns = sum(len(s.turns) for s in samples)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.agent.prepare(self.bench)
        self._write_run_json()  # after prepare: the agent's description includes e.g. its voice assignment
        self.reporter.start(self.outcome.turns)
        self._log = (self.run_dir / "generations.jsonl").open("a", encoding="utf-8")
        try:
            workers = self.config.workers if getattr(self.agent, "thread_safe", False) else 1
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="generate") as pool:
                    list(pool.map(self._sample, samples))
            else:
                for sample in samples:
                    self._sample(sample)
        finally:
            self._log.close()
        self.outcome.seconds = time.perf_counter() - started
        return self.outcome


def generate(
    bench: Benchmark,
    agent: Agent,
    run_dir: Path,
    config: GenerateConfig | None = None,
    *,
    agent_spec: str,
    bench_spec: str,
    reporter: Reporter | None = None,
) -> GenerateOutcome:
    """Run `agent` over `bench` into `run_dir` (resumable); see `Generation`."""
    return Generation(
        bench,
        agent,
        run_dir,
        config or GenerateConfig(),
        agent_spec=agent_spec,
        bench_spec=bench_spec,
        reporter=reporter,
    ).run()
