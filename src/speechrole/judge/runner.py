"""Judge a run: every sample of the benchmark against its outputs, resumably, concurrently, within budget.

For each sample (a "job") the clips are prepared once and the protocol's calls ("tasks") are planned
(`plan.py`). Each task is answered from, in turn: the run's own `judgments.jsonl` (already done), the
shared cache (judged before, anywhere), or the judge. Every outcome, scored or not, is appended to
the log as soon as it is known; a task that failed is tried again on the next run. At the end the
official `test_results/` layout and `summary.json` are rebuilt from the log, keeping only judgments
that still match the current outputs and judge configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from speechrole import __version__
from speechrole.audio import probe
from speechrole.chat import CallError, ChatClient
from speechrole.fileio import read_json, resolve_inside, write_json_atomic
from speechrole.judge.cache import JudgeCache, cache_key, default_cache_path
from speechrole.judge.clips import ClipStore
from speechrole.judge.config import JudgeConfig, JudgeTarget
from speechrole.judge.log import JudgmentLog, latest_by_task, read_judgments
from speechrole.judge.parse import AnswerError
from speechrole.judge.plan import Job, Planner, Task
from speechrole.judge.prices import Price, load_prices, price_for
from speechrole.judge.protocol import (
    RELEASED,
    JudgeRequest,
    Prompter,
    Protocol,
    RubricPrompter,
    get_protocol,
    released_protocol,
)
from speechrole.judge.released import load_released
from speechrole.judge.report import export_test_results, write_summary
from speechrole.judge.rubric import load_rubric
from speechrole.problems import DataError, Problem
from speechrole.schema import Benchmark, Judgment, Sample, task_id

PLANNING_THREADS = 2
#: Prompt text around the clips that the cost estimate adds to the system prompt and questions.
PROMPT_OVERHEAD_CHARS = 3000


class Reporter(typing.Protocol):
    """Progress hooks (the CLI draws a bar; the library stays silent)."""

    def start(self, jobs: int, calls: int, estimate_usd: float | None) -> None: ...

    def advance(self, outcome: str, cost_usd: float) -> None: ...


class _Silent:
    def start(self, jobs: int, calls: int, estimate_usd: float | None) -> None:
        pass

    def advance(self, outcome: str, cost_usd: float) -> None:
        pass


@dataclass
class JudgeOutcome:
    planned: int = 0  # calls the protocol makes for the selected samples
    scored: int = 0
    unscored: int = 0
    from_log: int = 0  # already in judgments.jsonl
    from_cache: int = 0
    requests: int = 0  # HTTP requests answered by the judge (re-asks included)
    reasks: int = 0
    retries: int = 0
    spent_usd: float = 0.0
    estimate_usd: float | None = None
    stopped: str | None = None
    canary: Any = None  # a `canary.CanaryResult` when the canaries were asked
    problems: list[Problem] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)


class JudgeRun:
    """One invocation of the judge over a benchmark and a target. Use `run()` (async) or `judge()`."""

    def __init__(
        self, bench: Benchmark, target: JudgeTarget, config: JudgeConfig, reporter: Reporter | None = None
    ):
        self.bench, self.target, self.config = bench, target, config
        self.prompter: Prompter
        if config.protocol == RELEASED:
            self.prompter = load_released(config.released_judge)
            self.protocol: Protocol = released_protocol(self.prompter)
        else:
            self.protocol = get_protocol(config.protocol)
            self.prompter = RubricPrompter(load_rubric(config.rubric_path))
        if config.orders is not None:
            self.protocol = dataclasses.replace(self.protocol, orders=tuple(config.orders))  # type: ignore[arg-type]
        self.price: Price | None = price_for(config.model, load_prices(config.prices_path))
        if config.max_cost_usd is not None and self.price is None:
            raise ValueError(
                f"--max-cost needs a price for {config.model!r}: add it to a table passed with --prices"
            )
        self.api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        self.reporter = reporter or _Silent()
        self.outcome = JudgeOutcome()
        self.cache = JudgeCache(config.cache_path or default_cache_path()) if config.use_cache else None
        self.planner = Planner(
            bench, target, self.protocol, self.prompter, ClipStore(self.protocol.audio, self.cache), self._key
        )
        self._current: dict[str, Task] = {}  # task id -> the task as planned now (key or error)
        self._reserved_usd = 0.0
        self._observed = [0.0, 0]  # cost and count of calls whose usage was reported
        self._slots = asyncio.Semaphore(max(1, config.concurrency))
        self._first_cost = asyncio.Event()  # under --max-cost, one call runs alone until a real cost is seen
        # Planning (hashing, decoding, encoding clips) runs beside the event loop in a small pool: more
        # threads would mostly fight the loop for the GIL and delay sending requests.
        self._planning = ThreadPoolExecutor(max_workers=PLANNING_THREADS, thread_name_prefix="judge-plan")

    # --- planning ----------------------------------------------------------------------------------

    def selected_samples(self) -> list[Sample]:
        c = self.config
        chosen = [
            s
            for s in self.bench.samples
            if (c.roles is None or s.role in c.roles)
            and (c.modes is None or s.mode in c.modes)
            and (c.samples is None or s.key in c.samples)
        ]
        return chosen[: c.limit] if c.limit is not None else chosen

    def _key(self, request: JudgeRequest) -> str:
        return cache_key(
            model=self.config.model,
            base_url=self.config.base_url,
            protocol=self.protocol.name,
            protocol_version=self.protocol.version,
            audio_policy=self.protocol.audio.id,
            prompt=request.prompt_sha256,
            order=request.order,
            metrics=list(request.metrics),
            sampling=self.sampling,
            **self.prompter.key_parts(),
        )

    @property
    def sampling(self) -> dict[str, Any]:
        """What the request asks of the sampler (the released judge: its script's own options)."""
        return self.prompter.sampling(self.config)

    def estimate_pending(self) -> float | None:
        """The cost estimate `run()` would print, without running (`--estimate-only`)."""
        done = latest_by_task(read_judgments(self.target.state_dir / "judgments.jsonl")[0])
        return self.estimate(self.planner.jobs(self.selected_samples()), done)

    def estimate(self, jobs: list[Job], done: dict[str, Judgment]) -> float | None:
        """Estimated cost of the calls not yet scored in the log (cache hits would make it cheaper)."""
        if self.price is None:
            return None
        total = 0.0
        for job in jobs:
            if job.turns is None:
                continue
            seconds = 0.0
            for out, gold in zip(job.turns, job.sample.turns, strict=True):
                for root, rel in (
                    (self.target.tree.root, out.audio_path),
                    (self.bench.root, gold.reference_audio),
                ):
                    try:
                        duration = probe(resolve_inside(root, rel or ""), decode=False).duration_s
                        seconds += min(duration, self.protocol.audio.max_seconds or duration)
                    except DataError:
                        pass
            chars = len(job.sample.system_prompt) + sum(len(t.user_text) for t in job.sample.turns)
            for order in self.protocol.orders:
                for metrics in self.protocol.metric_sets():
                    previous = done.get(task_id(job.sample.key, self.protocol.name, order, metrics))
                    if previous is None or previous.status != "scored":
                        total += self.price.estimate(chars + PROMPT_OVERHEAD_CHARS, seconds, len(metrics))
        return total

    # --- recording ---------------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The protocol's version and the rubric's (or released script's) hash: with the model, the judge
        configuration."""
        return f"{self.protocol.version}/{self.prompter.tag}"

    def _judgment(self, task: Task, **fields: Any) -> Judgment:
        request = task.request
        extra: dict[str, Any] = {}
        if request is not None:
            extra = {
                "cache_key": task.key,
                "prompt_sha256": request.prompt_sha256,
                "audio": request.clips,
                "inputs": task.inputs,
            }
        return Judgment(
            sample=task.sample.key,
            order=task.order,
            metrics=task.metrics,
            protocol=self.protocol.name,
            protocol_version=self.version,
            judge_model=self.config.model,
            base_url=self.config.base_url,
            sampling=self.sampling,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
            **fields,
        )

    def _record(self, log: JudgmentLog, judgment: Judgment, outcome: str, cost: float = 0.0) -> None:
        log.append(judgment)
        o = self.outcome
        if judgment.status == "scored":
            o.scored += 1
        else:
            o.unscored += 1
        if not judgment.cached:
            o.reasks += judgment.reasks
            o.retries += judgment.retries
        self.reporter.advance(outcome, cost)

    # --- budget ------------------------------------------------------------------------------------

    def _reservation(self, request: JudgeRequest) -> float:
        """What a call is expected to cost: the estimate, or the observed mean if calls cost more."""
        if self.price is None:
            return 0.0
        chars = sum(len(p.text or "") for p in request.parts)
        estimate = self.price.estimate(chars, sum(x.duration_s for x in request.clips), len(request.metrics))
        spent, count = self._observed
        return max(estimate, spent / count) if count else estimate

    def _over_budget(self, reservation: float) -> bool:
        limit = self.config.max_cost_usd
        return limit is not None and self.outcome.spent_usd + self._reserved_usd + reservation > limit

    def _charge(self, usage: dict[str, int], reservation: float) -> tuple[float, float | None]:
        """(cost counted against the budget, cost recorded in the judgment). Without reported usage the
        estimate is counted, so the limit still holds, and the judgment records no cost."""
        if self.price is None:
            return 0.0, None
        if "prompt_tokens" not in usage and "completion_tokens" not in usage:
            return reservation, None
        cost = self.price.cost(usage)
        self._observed[0] += cost
        self._observed[1] += 1
        return cost, cost

    # --- asking ------------------------------------------------------------------------------------

    async def _call(
        self, client: ChatClient, task: Task, messages: list[dict[str, Any]], log: JudgmentLog
    ) -> None:
        o = self.outcome
        assert task.request is not None
        reservation = self._reservation(task.request)
        async with self._slots:
            if (
                self.config.max_cost_usd is not None
                and self._reserved_usd > 0
                and not self._first_cost.is_set()
            ):
                await (
                    self._first_cost.wait()
                )  # estimates can be far off: learn the real cost of one call first
                reservation = self._reservation(task.request)
            if o.stopped:
                return
            if self._over_budget(reservation):
                o.stopped = f"cost limit ${self.config.max_cost_usd:.2f} reached (spent ${o.spent_usd:.4f})"
                return
            self._reserved_usd += reservation
            try:
                judgment, charged = await self._converse(client, task, messages, reservation)
            except Exception as exc:  # a bug or an unforeseen answer must not end the run, nor become a score
                judgment, charged = (
                    self._judgment(
                        task, status="unscored", error=f"internal error: {exc!r}", error_kind="internal"
                    ),
                    0.0,
                )
            finally:
                self._reserved_usd -= reservation
                self._first_cost.set()
        o.spent_usd += charged
        self._record(log, judgment, judgment.status, charged)

    async def _converse(
        self, client: ChatClient, task: Task, messages: list[dict[str, Any]], reservation: float
    ) -> tuple[Judgment, float]:
        """Ask; re-ask (a bounded number of times, within budget) when the answer is unusable."""
        c = self.config
        body: dict[str, Any] = {"model": c.model, "messages": messages}
        body.update({k: v for k, v in self.sampling.items() if v is not None})
        usage: dict[str, int] = {}
        charged, recorded = 0.0, None
        reasks = retries = 0
        while True:
            try:
                result = await client.complete(body)
            except CallError as exc:
                retries += exc.attempts - 1
                message = f"{exc} (after {exc.attempts} attempt{'s' if exc.attempts > 1 else ''})"
                return self._judgment(
                    task,
                    status="unscored",
                    error=message,
                    error_kind=exc.kind,
                    usage=usage,
                    cost_usd=recorded,
                    retries=retries,
                    reasks=reasks,
                ), charged
            self.outcome.requests += 1
            retries += result.retries
            for k, v in result.usage.items():
                usage[k] = usage.get(k, 0) + v
            step, step_recorded = self._charge(result.usage, reservation)
            charged += step
            recorded = (recorded or 0.0) + step_recorded if step_recorded is not None else recorded
            call = {
                "raw_text": result.text,
                "resolved_model": result.model,
                "usage": usage,
                "cost_usd": recorded,
                "latency_s": result.latency_s,
                "retries": retries,
                "reasks": reasks,
            }
            try:
                scores = self.prompter.parse(result.text, task.metrics, task.order)
            except AnswerError as exc:
                if reasks >= c.max_reasks or self._over_budget(reservation + charged):
                    why = "re-asks exhausted" if reasks >= c.max_reasks else "no budget left to re-ask"
                    message = f"unusable answer ({why}, {reasks} re-asks): {exc}"
                    return self._judgment(
                        task, status="unscored", error=message, error_kind="unusable_answer", **call
                    ), charged
                reasks += 1
                body = {**body, "messages": self.prompter.reask(messages, result.text, str(exc))}
                continue
            if self.cache is not None:
                payload = {
                    "text": result.text,
                    "model": result.model,
                    "usage": usage,
                    "cost_usd": recorded,
                    "reasks": reasks,
                }
                self.cache.put(task.key, c.model, self.protocol.name, payload)
            return self._judgment(task, status="scored", scores=scores, **call), charged

    def _from_cache(self, task: Task) -> Judgment | None:
        hit = self.cache.get(task.key) if self.cache is not None else None
        if hit is None:
            return None
        try:  # an entry that no longer parses (a stricter parser, a damaged file) is a miss, not an error
            scores = self.prompter.parse(hit["text"], task.metrics, task.order)
        except (AnswerError, KeyError, TypeError):
            return None
        return self._judgment(
            task,
            status="scored",
            scores=scores,
            raw_text=hit["text"],
            resolved_model=hit.get("model", ""),
            usage=hit.get("usage", {}),
            cost_usd=hit.get("cost_usd"),
            reasks=hit.get("reasks", 0),
            cached=True,
        )

    def _plan_job(self, job: Job, done: dict[str, Judgment]) -> list[tuple[Any, ...]]:
        """In a worker thread: plan the sample's tasks and sort them into ("done", status),
        ("record", judgment, outcome) and ("ask", task, messages)."""
        steps: list[tuple[Any, ...]] = []
        for task in self.planner.tasks(job):
            self._current[task.id] = task
            previous = done.get(task.id)
            if task.error is not None:
                kind, message = task.error
                if previous is not None and previous.status == "unscored" and previous.error == message:
                    steps.append(("done", "unscored"))
                else:
                    steps.append(
                        (
                            "record",
                            self._judgment(task, status="unscored", error=message, error_kind=kind),
                            "unscored",
                        )
                    )
                continue
            if previous is not None and previous.status == "scored" and previous.cache_key == task.key:
                if previous.inputs != task.inputs:  # an older log line: record what it was made from
                    steps.append(("refresh", previous.model_copy(update={"inputs": task.inputs})))
                steps.append(("done", "scored"))
            elif (cached := self._from_cache(task)) is not None:
                steps.append(("record", cached, "cached"))
            else:
                try:
                    steps.append(("ask", task, task.request.messages(self.planner.clip_base64(job))))  # type: ignore[union-attr]
                except DataError as exc:
                    steps.append(
                        (
                            "record",
                            self._judgment(
                                task, status="unscored", error=exc.problem.describe(), error_kind="audio"
                            ),
                            "unscored",
                        )
                    )
        return steps

    async def _run_job(
        self, client: ChatClient, job: Job, done: dict[str, Judgment], log: JudgmentLog
    ) -> None:
        o = self.outcome
        asks = []
        try:
            steps = await asyncio.get_running_loop().run_in_executor(
                self._planning, self._plan_job, job, done
            )
        except Exception as exc:  # one sample's bug must not end the run; it is recorded, never scored
            message = f"internal error while preparing the sample: {exc!r}"
            steps = [
                (
                    "record",
                    Judgment(
                        sample=job.sample.key,
                        status="unscored",
                        error=message,
                        error_kind="internal",
                        protocol=self.protocol.name,
                        protocol_version=self.version,
                        order=order,
                        metrics=metrics,
                        judge_model=self.config.model,
                    ),
                    "unscored",
                )
                for order in self.protocol.orders
                for metrics in self.protocol.metric_sets()
            ]
        for step in steps:
            if step[0] == "refresh":
                log.append(step[1])
            elif step[0] == "done":
                o.from_log += 1
                o.scored += step[1] == "scored"
                o.unscored += step[1] == "unscored"
                self.reporter.advance("skipped", 0.0)
            elif step[0] == "record":
                o.from_cache += step[2] == "cached"
                self._record(log, step[1], step[2])
            else:
                asks.append(self._call(client, step[1], step[2], log))
        await asyncio.gather(*asks)

    async def run(self) -> JudgeOutcome:
        c, t, o = self.config, self.target, self.outcome
        log_path = t.state_dir / "judgments.jsonl"
        previous, problems = read_judgments(log_path)
        o.problems += problems
        done = latest_by_task(previous)
        jobs = self.planner.jobs(self.selected_samples())
        o.planned = len(jobs) * self.protocol.calls_per_sample()
        o.estimate_usd = self.estimate(jobs, done)
        self._write_run_json()
        if c.canary and await self._canaries_drifted():
            self._planning.shutdown(wait=False)
            if self.cache is not None:
                self.cache.close()
            return o
        self.reporter.start(len(jobs), o.planned, o.estimate_usd)
        log = JudgmentLog(log_path)
        queue: asyncio.Queue[Job] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        try:
            async with ChatClient(
                c.base_url,
                self.api_key,
                timeout_s=c.timeout_s,
                max_retries=c.max_retries,
                max_connections=c.concurrency,
            ) as client:

                async def worker() -> None:
                    while not queue.empty() and not o.stopped:
                        await self._run_job(client, queue.get_nowait(), done, log)

                # Twice as many workers as request slots: half of them prepare the next samples' audio
                # while the other half wait for answers.
                await asyncio.gather(*(worker() for _ in range(2 * max(1, c.concurrency))))
        finally:
            log.close()
            self._planning.shutdown(wait=False)
        try:
            await asyncio.to_thread(self._finish, log_path)
        finally:
            if self.cache is not None:
                self.cache.close()
        return o

    async def _canaries_drifted(self) -> bool:
        """Ask the drift canaries (live); record the result in the run; True when the judge moved."""
        import json

        from speechrole.judge.canary import FILENAME, check_canaries

        o = self.outcome
        result = await check_canaries(self, self.config.canary_threshold)
        o.canary = result
        o.spent_usd += result.spent_usd
        with (self.target.state_dir / FILENAME).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(result.record(), ensure_ascii=False) + "\n")
        if result.drifted:
            moved = ", ".join(f"{d.metric} {d.mean_abs:.2f}" for d in result.drift if d.drifted)
            o.stopped = (
                f"the judge's answers on the canaries moved by more than {result.threshold} points "
                f"(mean |change|: {moved}); nothing else was judged. If the change is expected, delete "
                f"{result.store} to record the new answers"
            )
        return result.drifted

    # --- results -----------------------------------------------------------------------------------

    def _finish(self, log_path: Path) -> None:
        """Rebuild `test_results/` and `summary.json` from the run as `speechrole.run.Run` reads it: this
        configuration's current judgments, scored by the same function as `speechrole score`."""
        from speechrole.run import JudgeKey, Run

        t = self.target
        self.outcome.paths = {
            "judgments": str(log_path),
            "test_results": str(t.results_dir),
            "summary": str(t.state_dir / "summary.json"),
        }
        run = Run.open(t.state_dir, bench=self.bench)
        key = JudgeKey(self.config.model, self.protocol.name, self.version)
        system = next((s for s in run.systems(t.system) if s.judge == key), None)
        current = system.judgments if system is not None else []
        export_test_results(self.bench, current, t.results_dir)
        planned = len(self.bench.samples) * self.protocol.calls_per_sample()
        write_summary(t.state_dir / "summary.json", system, self.bench, self.describe(), planned)

    def describe(self) -> dict[str, Any]:
        return {
            **self.config.describe(),
            "protocol_version": self.protocol.version,
            "protocol_description": self.protocol.description,
            "audio_policy": self.protocol.audio.id,
            "sampling": self.sampling,
            **self.prompter.describe(),
        }

    def _write_run_json(self) -> None:
        path = self.target.state_dir / "run.json"
        try:
            data = read_json(path) if path.is_file() else {}
        except DataError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        bench = {
            "spec": str(self.bench.root),
            "name": self.bench.name,
            "content_hash": self.bench.content_hash,
        }
        data.setdefault("name", self.target.system)
        data.setdefault("benchmark", bench)
        data.setdefault("outputs", str(self.target.tree.base))
        data["judge"] = {**self.describe(), "benchmark": bench, "speechrole_version": __version__}
        write_json_atomic(path, data)


def judge(
    bench: Benchmark, target: JudgeTarget, config: JudgeConfig, reporter: Reporter | None = None
) -> JudgeOutcome:
    """Run the judge to completion (or to the cost limit); see `JudgeRun`."""
    return asyncio.run(JudgeRun(bench, target, config, reporter).run())


__all__ = ["JudgeConfig", "JudgeOutcome", "JudgeRun", "JudgeTarget", "Reporter", "judge"]
