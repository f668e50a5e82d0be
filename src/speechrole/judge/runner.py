"""Judge a run: every sample of the benchmark against its outputs, resumably, concurrently, within budget.

For each sample (a "job") the clips are prepared once, one request is built per call the protocol
makes (an order and a set of metrics: a "task"), and each task is answered from, in turn: the run's
own `judgments.jsonl` (already done), the shared cache (judged before, anywhere), or the judge. Every
outcome, scored or not, is appended to `judgments.jsonl` as soon as it is known; a task that failed
is tried again on the next run. At the end the official `test_results/` layout and `summary.json`
are written from the log.
"""

from __future__ import annotations

import asyncio
import os
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from speechrole import __version__
from speechrole.fileio import read_json, resolve_inside, write_json_atomic
from speechrole.judge.cache import JudgeCache, cache_key, default_cache_path
from speechrole.judge.client import CallError, ChatClient
from speechrole.judge.clips import ClipStore
from speechrole.judge.log import JudgmentLog, latest_by_task, read_judgments
from speechrole.judge.parse import AnswerError, parse_answer
from speechrole.judge.prices import Price, load_prices, price_for
from speechrole.judge.protocol import JudgeRequest, Order, Protocol, build_request, get_protocol
from speechrole.judge.report import export_test_results, write_summary
from speechrole.judge.rubric import Rubric, load_rubric
from speechrole.outputs import OutputTree, OutputTurn, find_output_tree, read_role_output
from speechrole.problems import DataError, Problem
from speechrole.schema import Benchmark, ClipRef, Judgment, Mode, Role, Sample, task_id


@dataclass
class JudgeConfig:
    model: str
    base_url: str
    api_key_env: str | None = None
    protocol: str = "official"
    concurrency: int = 8
    timeout_s: float = 300.0
    max_retries: int = 4
    max_reasks: int = 2
    temperature: float = 0.0
    seed: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    limit: int | None = None
    roles: tuple[str, ...] | None = None
    modes: tuple[Mode, ...] | None = None
    rubric_path: Path | None = None
    prices_path: Path | None = None
    cache_path: Path | None = None
    use_cache: bool = True

    def sampling(self) -> dict[str, float | int | None]:
        return {"temperature": self.temperature, "seed": self.seed, "max_tokens": self.max_tokens}

    def describe(self) -> dict[str, Any]:
        """What run.json records: everything but the key itself (only the variable's name)."""
        return {
            "model": self.model,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "protocol": self.protocol,
            "sampling": self.sampling(),
            "max_retries": self.max_retries,
            "max_reasks": self.max_reasks,
            "rubric": str(self.rubric_path) if self.rubric_path else "bundled",
        }


@dataclass(frozen=True)
class JudgeTarget:
    """Whose outputs are judged and where the judge writes."""

    system: str
    tree: OutputTree
    state_dir: Path  # judgments.jsonl, summary.json, run.json
    results_dir: Path  # the official test_results layout: {single,multi}/{role}.json

    @classmethod
    def for_run(cls, run_dir: Path, model: str | None = None) -> JudgeTarget:
        """A run directory (`model_output/{mode}_result`), or an official tree with `model_output/<model>/`."""
        tree = find_output_tree(run_dir, model)
        run_dir = Path(run_dir).absolute()
        if tree.base == run_dir / "model_output":
            name = _run_name(run_dir)
            return cls(name, tree, run_dir, run_dir / "test_results")
        name = tree.base.name
        return cls(name, tree, tree.root / "speechrole_judge" / name, tree.root / "test_results" / name)


def _run_name(run_dir: Path) -> str:
    try:
        data = read_json(run_dir / "run.json")
        return str(data.get("name") or run_dir.name) if isinstance(data, dict) else run_dir.name
    except DataError:
        return run_dir.name


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
    problems: list[Problem] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)


@dataclass
class _Job:
    sample: Sample
    role: Role
    turns: list[OutputTurn] | None = None
    error: tuple[str, str] | None = None  # (kind, message) when the sample cannot be judged
    paths: dict[str, Path] = field(default_factory=dict)  # clip sha256 -> file


def _unscored(
    sample: Sample, order: Order, metrics: tuple[str, ...], kind: str, message: str, **extra: Any
) -> Judgment:
    return Judgment(
        sample=sample.key,
        status="unscored",
        error=message,
        error_kind=kind,
        order=order,
        metrics=metrics,
        **extra,
    )


class JudgeRun:
    """One invocation of the judge over a benchmark and a target. Use `run()` (async) or `judge()`."""

    def __init__(
        self, bench: Benchmark, target: JudgeTarget, config: JudgeConfig, reporter: Reporter | None = None
    ):
        self.bench, self.target, self.config = bench, target, config
        self.protocol: Protocol = get_protocol(config.protocol)
        self.rubric: Rubric = load_rubric(config.rubric_path)
        self.price: Price | None = price_for(config.model, load_prices(config.prices_path))
        if config.max_cost_usd is not None and self.price is None:
            raise ValueError(
                f"--max-cost needs a price for {config.model!r}: add it to a table passed with --prices"
            )
        self.api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        self.reporter = reporter or _Silent()
        self.outcome = JudgeOutcome()
        self.cache = JudgeCache(config.cache_path or default_cache_path()) if config.use_cache else None
        self.clips = ClipStore(self.protocol.audio, self.cache)
        self._inflight_usd = 0.0
        self._slots = asyncio.Semaphore(max(1, config.concurrency))

    # --- planning ----------------------------------------------------------------------------------

    def selected_samples(self) -> list[Sample]:
        c = self.config
        chosen = [
            s
            for s in self.bench.samples
            if (c.roles is None or s.role in c.roles) and (c.modes is None or s.mode in c.modes)
        ]
        return chosen[: c.limit] if c.limit is not None else chosen

    def _jobs(self, samples: list[Sample]) -> list[_Job]:
        files: dict[tuple[Mode, str], Any] = {}
        jobs = []
        for s in samples:
            job = _Job(s, self.bench.roles[s.role])
            key = (s.mode, s.role)
            if key not in files:
                file = self.target.tree.json_file(s.mode, s.role)
                try:
                    files[key] = read_role_output(file)[0] if file.is_file() else f"no output file {file}"
                except DataError as exc:
                    files[key] = exc.problem.describe()
            output = files[key]
            if isinstance(output, str):
                job.error = ("no_output", output)
            elif s.index not in output.dialogues:
                job.error = ("no_output", f"dialogue_{s.index} missing from the outputs")
            elif len(output.dialogues[s.index]) != len(s.turns):
                n = len(output.dialogues[s.index])
                job.error = (
                    "no_output",
                    f"dialogue_{s.index} has {n} turns, the benchmark has {len(s.turns)}",
                )
            else:
                job.turns = output.dialogues[s.index]
            jobs.append(job)
        return jobs

    def _clip_refs(self, job: _Job) -> tuple[list[ClipRef], list[ClipRef]]:
        """Hashes of both sides' clips (decoding only clips never seen before); DataError if one is bad."""
        file = self.target.tree.json_file(job.sample.mode, job.sample.role)
        tests, refs = [], []
        for j, (out, gold) in enumerate(zip(job.turns or [], job.sample.turns, strict=True)):
            where = f"dialogue_{job.sample.index}[{j}].model_output.audio_path"
            path = resolve_inside(self.target.tree.root, out.audio_path or "", file=file, field=where)
            ref = self.clips.ref(path, side="test", turn=j, shown_path=out.audio_path or "", field=where)
            tests.append(ref)
            job.paths[ref.sha256] = path
            where = f"[{job.sample.index}].dialogue[{j}].{self.bench.reference_set}"
            path = resolve_inside(
                self.bench.root, gold.reference_audio or "", file=job.sample.source, field=where
            )
            ref = self.clips.ref(
                path, side="reference", turn=j, shown_path=gold.reference_audio or "", field=where
            )
            refs.append(ref)
            job.paths[ref.sha256] = path
        return tests, refs

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
            sampling=self.config.sampling(),
        )

    def estimate(self, jobs: list[_Job], done: dict[str, Judgment]) -> float | None:
        """Upper estimate of the cost of the calls not yet in the log (cache hits would make it cheaper)."""
        if self.price is None:
            return None
        from speechrole.audio import probe

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
                        info = probe(resolve_inside(root, rel or ""), decode=False)
                        seconds += min(info.duration_s, self.protocol.audio.max_seconds or info.duration_s)
                    except DataError:
                        pass
            chars = len(job.sample.system_prompt) + sum(len(t.user_text) for t in job.sample.turns) + 3000
            for order in self.protocol.orders:
                for metrics in self.protocol.metric_sets():
                    task = task_id(job.sample.key, self.protocol.name, order, metrics)
                    if task not in done or done[task].status != "scored":
                        total += self.price.estimate(chars, seconds, len(metrics))
        return total

    # --- running -----------------------------------------------------------------------------------

    def _judgment(self, request: JudgeRequest, key: str, **fields: Any) -> Judgment:
        return Judgment(
            sample=request.sample,
            order=request.order,
            metrics=request.metrics,
            protocol=self.protocol.name,
            protocol_version=f"{self.protocol.version}/rubric-{self.rubric.sha256[:12]}",
            judge_model=self.config.model,
            base_url=self.config.base_url,
            cache_key=key,
            prompt_sha256=request.prompt_sha256,
            audio=request.clips,
            sampling=self.config.sampling(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
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

    def _estimate(self, request: JudgeRequest) -> float:
        if self.price is None:
            return 0.0
        chars = sum(len(p.text or "") for p in request.parts)
        return self.price.estimate(chars, sum(x.duration_s for x in request.clips), len(request.metrics))

    async def _call(
        self,
        client: ChatClient,
        request: JudgeRequest,
        key: str,
        messages: list[dict[str, Any]],
        log: JudgmentLog,
    ) -> None:
        c, o = self.config, self.outcome
        estimate = self._estimate(request)
        async with self._slots:
            if o.stopped:
                return
            if c.max_cost_usd is not None and o.spent_usd + self._inflight_usd + estimate > c.max_cost_usd:
                o.stopped = f"cost limit ${c.max_cost_usd:.2f} reached (spent ${o.spent_usd:.4f})"
                return
            self._inflight_usd += estimate
            try:
                judgment, cost = await self._converse(client, request, key, messages)
            finally:
                self._inflight_usd -= estimate
        o.spent_usd += cost
        self._record(log, judgment, judgment.status, cost)

    async def _converse(
        self, client: ChatClient, request: JudgeRequest, key: str, messages: list[dict[str, Any]]
    ) -> tuple[Judgment, float]:
        """Ask; re-ask (a bounded number of times) when the answer is unusable; return the judgment and its cost."""
        c = self.config
        body: dict[str, Any] = {"model": c.model, "messages": messages, "temperature": c.temperature}
        body.update({k: v for k, v in (("seed", c.seed), ("max_tokens", c.max_tokens)) if v is not None})
        usage: dict[str, int] = {}
        cost = 0.0
        reasks = retries = 0
        while True:
            try:
                result = await client.complete(body)
            except CallError as exc:
                retries += exc.attempts - 1
                message = f"{exc} (after {exc.attempts} attempt{'s' if exc.attempts > 1 else ''})"
                failed = self._judgment(
                    request,
                    key,
                    status="unscored",
                    error=message,
                    error_kind=exc.kind,
                    usage=usage,
                    cost_usd=cost if self.price else None,
                    retries=retries,
                    reasks=reasks,
                )
                return failed, cost
            self.outcome.requests += 1
            retries += result.retries
            for k, v in result.usage.items():
                usage[k] = usage.get(k, 0) + v
            cost = self.price.cost(usage) if self.price else 0.0
            call = {
                "raw_text": result.text,
                "resolved_model": result.model,
                "usage": usage,
                "cost_usd": cost if self.price else None,
                "latency_s": result.latency_s,
                "retries": retries,
                "reasks": reasks,
            }
            try:
                scores = parse_answer(result.text, request.metrics, request.order)
            except AnswerError as exc:
                if reasks >= c.max_reasks:
                    message = f"unusable answer after {reasks} re-asks: {exc}"
                    failed = self._judgment(
                        request, key, status="unscored", error=message, error_kind="unusable_answer", **call
                    )
                    return failed, cost
                reasks += 1
                follow_up = [
                    {"role": "assistant", "content": result.text},
                    {"role": "user", "content": self.rubric.reask.format(problem=exc)},
                ]
                body = {**body, "messages": [*body["messages"], *follow_up]}
                continue
            if self.cache is not None:
                payload = {k: call[k] for k in ("usage", "cost_usd", "reasks")}
                self.cache.put(
                    key, c.model, self.protocol.name, {**payload, "text": result.text, "model": result.model}
                )
            return self._judgment(request, key, status="scored", scores=scores, **call), cost

    def _plan_job(self, job: _Job, done: dict[str, Judgment]) -> list[tuple[Any, ...]]:
        """Everything about one sample that needs no judge, in a worker thread: hash and prepare its clips,
        build its requests, and sort them into ("done", outcome), ("record", judgment, outcome) and
        ("ask", request, key, messages)."""
        steps: list[tuple[Any, ...]] = []
        tasks = [
            (order, metrics) for order in self.protocol.orders for metrics in self.protocol.metric_sets()
        ]
        if job.error is None:
            try:
                tests, refs = self._clip_refs(job)
            except DataError as exc:
                job.error = ("audio", exc.problem.describe())
        if job.error is not None:
            kind, message = job.error
            for order, metrics in tasks:
                extra = {"protocol": self.protocol.name, "judge_model": self.config.model}
                failed = _unscored(job.sample, order, metrics, kind, message, **extra)
                previous = done.get(failed.task)
                if previous is not None and previous.status == "unscored" and previous.error == message:
                    steps.append(("done", "unscored"))
                else:
                    steps.append(("record", failed, "unscored"))
            return steps
        for order, metrics in tasks:
            request = build_request(
                self.protocol, self.rubric, job.role, job.sample, order, metrics, tests, refs
            )
            key = self._key(request)
            previous = done.get(task_id(job.sample.key, self.protocol.name, order, metrics))
            if previous is not None and previous.cache_key == key and previous.status == "scored":
                steps.append(("done", "scored"))
                continue
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                scores = parse_answer(hit["text"], request.metrics, request.order)
                cached = self._judgment(
                    request,
                    key,
                    status="scored",
                    scores=scores,
                    raw_text=hit["text"],
                    resolved_model=hit.get("model", ""),
                    usage=hit.get("usage", {}),
                    cost_usd=hit.get("cost_usd"),
                    reasks=hit.get("reasks", 0),
                    cached=True,
                )
                steps.append(("record", cached, "cached"))
                continue
            try:
                messages = request.messages(
                    lambda clip: self.clips.prepared(job.paths[clip.sha256], clip.sha256).base64()
                )
            except DataError as exc:
                failed = self._judgment(
                    request, key, status="unscored", error=exc.problem.describe(), error_kind="audio"
                )
                steps.append(("record", failed, "unscored"))
                continue
            steps.append(("ask", request, key, messages))
        return steps

    async def _run_job(
        self, client: ChatClient, job: _Job, done: dict[str, Judgment], log: JudgmentLog
    ) -> None:
        o = self.outcome
        asks = []
        for step in await asyncio.to_thread(self._plan_job, job, done):
            if step[0] == "done":
                o.from_log += 1
                o.scored += step[1] == "scored"
                o.unscored += step[1] == "unscored"
                self.reporter.advance("skipped", 0.0)
            elif step[0] == "record":
                o.from_cache += step[2] == "cached"
                self._record(log, step[1], step[2])
            else:
                asks.append(self._call(client, *step[1:], log))
        await asyncio.gather(*asks)

    async def run(self) -> JudgeOutcome:
        c, t, o = self.config, self.target, self.outcome
        log_path = t.state_dir / "judgments.jsonl"
        previous, problems = read_judgments(log_path)
        o.problems += problems
        done = latest_by_task(previous)
        jobs = self._jobs(self.selected_samples())
        o.planned = len(jobs) * self.protocol.calls_per_sample()
        o.estimate_usd = self.estimate(jobs, done)
        self._write_run_json()
        self.reporter.start(len(jobs), o.planned, o.estimate_usd)
        log = JudgmentLog(log_path)
        queue: asyncio.Queue[_Job] = asyncio.Queue()
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
            if self.cache is not None:
                self.cache.close()
        self._finish(log_path)
        return o

    def _finish(self, log_path: Path) -> None:
        judgments, _ = read_judgments(log_path)
        keys = {s.key for s in self.selected_samples()}
        latest = [
            j
            for j in latest_by_task(judgments).values()
            if j.sample in keys and j.protocol == self.protocol.name
        ]
        t = self.target
        self.outcome.paths = {
            "judgments": str(log_path),
            "test_results": str(t.results_dir),
            "summary": str(t.state_dir / "summary.json"),
        }
        export_test_results(self.bench, latest, t.results_dir)
        write_summary(
            t.state_dir / "summary.json", t.system, self.bench, latest, self.describe(), self.outcome.planned
        )

    def describe(self) -> dict[str, Any]:
        return {
            **self.config.describe(),
            "protocol_version": self.protocol.version,
            "protocol_description": self.protocol.description,
            "audio_policy": self.protocol.audio.id,
            "rubric_sha256": self.rubric.sha256,
            "rubric_version": self.rubric.version,
        }

    def _write_run_json(self) -> None:
        path = self.target.state_dir / "run.json"
        try:
            data = read_json(path) if path.is_file() else {}
        except DataError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        data.setdefault("name", self.target.system)
        data.setdefault(
            "benchmark",
            {"spec": str(self.bench.root), "name": self.bench.name, "content_hash": self.bench.content_hash},
        )
        data.setdefault("outputs", str(self.target.tree.base))
        data["judge"] = {**self.describe(), "speechrole_version": __version__}
        write_json_atomic(path, data)


def judge(
    bench: Benchmark, target: JudgeTarget, config: JudgeConfig, reporter: Reporter | None = None
) -> JudgeOutcome:
    """Run the judge to completion (or to the cost limit); see `JudgeRun`."""
    return asyncio.run(JudgeRun(bench, target, config, reporter).run())
