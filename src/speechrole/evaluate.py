"""`eval`: the whole benchmark in one call — generate, measure, judge (when configured), score, report.

Every stage is the resumable stage of its own command, run in order on one run directory, so a
killed evaluation picks up where it stopped and a finished one reruns in seconds (nothing is redone,
and the agent is not even loaded when no turn is missing). What each stage did is recorded under
`eval` in `run.json`; the score goes to `score.json` / `score.md` and the report to `report.html`.
"""

from __future__ import annotations

import asyncio
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechrole.fileio import read_json, write_json_atomic, write_text_atomic
from speechrole.generate import GenerateConfig, Generation, check_run_json, pending_turns, select_samples
from speechrole.problems import DataError, Problem
from speechrole.schema import Benchmark

if typing.TYPE_CHECKING:
    from speechrole.judge.config import JudgeConfig
    from speechrole.score import ScoreReport

#: The objective metrics an evaluation measures by default (all of them run offline).
DEFAULT_METRICS = ("speaker", "dnsmos", "intelligibility", "prosody", "duration")

JUDGE_HELP = (
    "the 8 judge metrics need an audio-LLM judge: add --judge gemini-2.5-pro (key in $GEMINI_API_KEY), "
    "or --judge MODEL --base-url http://HOST:PORT/v1 for a vLLM-served model"
)


class Progress(typing.Protocol):
    """One display for the whole evaluation: `stage(name)` gives the reporter a stage reports to."""

    def stage(self, name: str) -> Any: ...

    def note(self, text: str) -> None: ...


class _Quiet:
    def stage(self, name: str) -> Any:
        return None  # each stage then uses its own silent reporter

    def note(self, text: str) -> None:
        pass


@dataclass
class EvalConfig:
    bench: str
    agent: str
    run_dir: Path
    judge: JudgeConfig | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    selection: GenerateConfig = field(default_factory=GenerateConfig)
    reference_set: str | None = None
    replicates: int = 2000
    report: bool = True


@dataclass
class EvalOutcome:
    run_dir: Path
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    score: ScoreReport | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # what went wrong, one line each (the run went on)
    judged: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


class Evaluation:
    """One evaluation; `run()` takes the run directory as far as it can and says what it did."""

    def __init__(self, config: EvalConfig, progress: Progress | None = None) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir).absolute()
        self.progress = progress or _Quiet()
        self.outcome = EvalOutcome(self.run_dir)

    def run(self) -> EvalOutcome:
        from speechrole.bench import load_benchmark

        bench, problems = load_benchmark(self.config.bench, reference_set=self.config.reference_set)
        self._bench = bench
        self.outcome.problems += [p for p in problems if p.severity == "error"]
        self._timed("generate", lambda: self._generate(bench))
        self._timed("measure", lambda: self._measure(bench))
        if self.config.judge is not None:
            self._timed("judge", lambda: self._judge(bench))
        else:
            self.progress.note("no judge configured: objective metrics only (how to add one: see the end)")
        self._timed("score", lambda: self._score(bench))
        if self.config.report:
            self._timed("report", self._report)
        self._record()
        return self.outcome

    def _timed(self, name: str, stage: typing.Callable[[], dict[str, Any]]) -> None:
        started = time.perf_counter()
        summary = stage()
        self.outcome.stages[name] = {**summary, "seconds": round(time.perf_counter() - started, 2)}

    # --- stages ------------------------------------------------------------------------------------

    def _generate(self, bench: Benchmark) -> dict[str, Any]:
        from speechrole.agents.base import create_agent

        c = self.config
        missing = pending_turns(bench, self.run_dir, c.selection)
        if missing == 0 and (self.run_dir / "run.json").is_file():
            check_run_json(self.run_dir, bench, c.agent, c.selection.history)
            total = sum(len(s.turns) for s in select_samples(bench, c.selection))
            reporter = self.progress.stage("generate")
            if reporter is not None:
                reporter.start(total)
                for _ in range(total):
                    reporter.advance("skipped")
            return {"turns": total, "generated": 0, "skipped": total, "failed_samples": 0}
        agent = create_agent(c.agent)  # only now: loading models takes time
        try:
            done = Generation(
                bench,
                agent,
                self.run_dir,
                c.selection,
                agent_spec=c.agent,
                bench_spec=c.bench,
                reporter=self.progress.stage("generate"),
            ).run()
        finally:
            agent.close()
        self.outcome.problems += done.problems
        if done.failed_samples:
            self.outcome.failed.append(
                f"{len(done.failed_samples)} sample(s) failed to generate (see generations.jsonl); "
                "a rerun tries them again"
            )
        return {
            "turns": done.turns,
            "generated": done.generated,
            "skipped": done.skipped,
            "failed_samples": len(done.failed_samples),
        }

    def _measure(self, bench: Benchmark) -> dict[str, Any]:
        from speechrole.measure import Measurement, create_metrics

        metrics = create_metrics(self.config.metrics)
        usable = []
        for metric in metrics:
            try:
                metric.load()
                usable.append(metric)
            except Exception as exc:  # one metric that cannot run here does not stop the others
                self.outcome.failed.append(f"metric {metric.name} cannot run here: {exc}")
        s = self.config.selection
        done = Measurement(
            bench,
            self.run_dir,
            usable,
            self.progress.stage("measure"),
            roles=s.roles,
            modes=s.modes,
            limit=s.limit,
        ).run()
        self.outcome.problems += done.problems
        self.outcome.paths["measures"] = self.run_dir / "measures.jsonl"
        return {
            "metrics": [m.name for m in usable],
            "clips": done.clips,
            "measured": done.measured,
            "reused": done.reused,
            "without_value": done.errors,
            "audio_seconds": round(done.audio_seconds, 1),
        }

    def _judge(self, bench: Benchmark) -> dict[str, Any]:
        from dataclasses import replace

        from speechrole.judge.config import JudgeTarget
        from speechrole.judge.runner import JudgeRun

        s = self.config.selection
        assert self.config.judge is not None
        config = replace(self.config.judge, limit=s.limit, roles=s.roles, modes=s.modes)
        run = JudgeRun(bench, JudgeTarget.for_run(self.run_dir), config, self.progress.stage("judge"))
        done = asyncio.run(run.run())
        self.outcome.problems += done.problems
        self.outcome.judged = done.scored + done.from_log + done.from_cache > 0
        self.outcome.paths.update({k: Path(v) for k, v in done.paths.items()})
        if done.unscored:
            self.outcome.failed.append(
                f"{done.unscored} judge call(s) unscored (see judgments.jsonl); a rerun tries them again"
            )
        if done.stopped:
            self.outcome.failed.append(f"judge stopped: {done.stopped}; rerun to continue")
        return {
            "model": config.model,
            "protocol": config.protocol,
            "calls": done.planned,
            "scored": done.scored,
            "unscored": done.unscored,
            "already_done": done.from_log,
            "from_cache": done.from_cache,
            "spent_usd": round(done.spent_usd, 6),
        }

    def _score(self, bench: Benchmark) -> dict[str, Any]:
        from speechrole.score import BootstrapSpec, load_systems, score_systems
        from speechrole.score.render import render_json, render_markdown

        systems = load_systems([self.run_dir], bench)
        report = score_systems(
            systems,
            bench=bench,
            by=("mode", "language", "role"),
            spec=BootstrapSpec(replicates=self.config.replicates),
        )
        self.outcome.score = report
        paths = {"score_json": self.run_dir / "score.json", "score_md": self.run_dir / "score.md"}
        write_text_atomic(paths["score_json"], render_json(report) + "\n")
        write_text_atomic(paths["score_md"], render_markdown(report))
        self.outcome.paths.update(paths)
        return {
            "systems": [s.name for s in report.systems],
            "judgments": sum(s.n_judgments for s in report.systems),
        }

    def _report(self) -> dict[str, Any]:
        from speechrole.report import build_report

        path = self.run_dir / "report.html"
        build_report([self.run_dir], path, score=self.outcome.score, bench=self._bench)
        self.outcome.paths["report"] = path
        return {"path": path.name}

    def _record(self) -> None:
        """The `eval` section of run.json: the configuration (no secrets) and what each stage did."""
        path = self.run_dir / "run.json"
        try:
            data = read_json(path) if path.is_file() else {}
        except DataError:
            return  # a run.json we cannot read is left as it is; the stages reported the problem
        c = self.config
        data["eval"] = {
            "bench": c.bench,
            "agent": c.agent,
            "metrics": list(c.metrics),
            "judge": c.judge.describe() if c.judge else None,
            "selection": {
                "limit": c.selection.limit,
                "roles": list(c.selection.roles) if c.selection.roles else None,
                "modes": [m.value for m in c.selection.modes] if c.selection.modes else None,
                "history": c.selection.history,
            },
            "stages": self.outcome.stages,
            "failed": self.outcome.failed,
        }
        write_json_atomic(path, data)


def evaluate(config: EvalConfig, progress: Progress | None = None) -> EvalOutcome:
    """Run a whole evaluation (resumable); see `Evaluation`."""
    return Evaluation(config, progress).run()


__all__ = ["DEFAULT_METRICS", "JUDGE_HELP", "EvalConfig", "EvalOutcome", "Evaluation", "evaluate"]
