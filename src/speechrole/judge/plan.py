"""What a judge run has to ask: for each sample, its clips, its requests and their cache keys.

Nothing here talks to a judge. A sample whose outputs are missing or whose audio is unusable yields
tasks that carry the reason instead of a request; they become unscored judgments, never scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechrole.fileio import resolve_inside
from speechrole.judge.clips import ClipStore
from speechrole.judge.config import JudgeTarget
from speechrole.judge.protocol import JudgeRequest, Order, Prompter, Protocol
from speechrole.outputs import OutputTurn, read_role_output
from speechrole.problems import DataError
from speechrole.run import judge_inputs
from speechrole.schema import Benchmark, ClipRef, Mode, Role, Sample, task_id


@dataclass
class Job:
    """One sample to judge, with its outputs (or why it has none) and where its clips are."""

    sample: Sample
    role: Role
    turns: list[OutputTurn] | None = None
    error: tuple[str, str] | None = None  # (kind, message) when the sample cannot be judged
    paths: dict[str, Path] = field(default_factory=dict)  # clip sha256 -> file


@dataclass(frozen=True)
class Task:
    """One judge call a protocol makes for a sample: an order and a set of metrics."""

    id: str
    sample: Sample
    order: Order
    metrics: tuple[str, ...]
    request: JudgeRequest | None = None
    key: str = ""
    error: tuple[str, str] | None = None  # set instead of request/key when the sample cannot be judged
    inputs: dict[str, str] = field(default_factory=dict)  # what the judgment is made from (run.judge_inputs)


class _SideError(Exception):
    """A clip that cannot be judged, with its side: `agent_audio` or `reference_audio`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


class Planner:
    def __init__(
        self,
        bench: Benchmark,
        target: JudgeTarget,
        protocol: Protocol,
        prompter: Prompter,
        clips: ClipStore,
        key: Callable[[JudgeRequest], str],
    ) -> None:
        self.bench, self.target, self.protocol, self.prompter, self.clips = (
            bench,
            target,
            protocol,
            prompter,
            clips,
        )
        self._key = key

    def jobs(self, samples: list[Sample]) -> list[Job]:
        """Pair each sample with its outputs; a missing file, dialogue or turn becomes the job's error."""
        files: dict[tuple[Mode, str], Any] = {}
        jobs = []
        for s in samples:
            job = Job(s, self.bench.roles[s.role])
            if (s.mode, s.role) not in files:
                file = self.target.tree.json_file(s.mode, s.role)
                try:
                    files[(s.mode, s.role)] = (
                        read_role_output(file)[0] if file.is_file() else f"no output file {file}"
                    )
                except DataError as exc:
                    files[(s.mode, s.role)] = exc.problem.describe()
            output = files[(s.mode, s.role)]
            if isinstance(output, str):
                job.error = ("no_output", output)
            elif s.index not in output.dialogues:
                job.error = ("no_output", f"dialogue_{s.index} missing from the outputs")
            elif (n := len(output.dialogues[s.index])) != len(s.turns):
                job.error = (
                    "no_output",
                    f"dialogue_{s.index} has {n} turns, the benchmark has {len(s.turns)}",
                )
            else:
                job.turns = output.dialogues[s.index]
            jobs.append(job)
        return jobs

    def _clip_refs(self, job: Job) -> tuple[list[ClipRef], list[ClipRef], dict[str, list[str]]]:
        """Hashes of both sides' clips (decoding only clips never seen before) and their files' sha256;
        `_SideError` names the side of a bad clip (the agent's is the agent's failure)."""
        file = self.target.tree.json_file(job.sample.mode, job.sample.role)
        tests, refs = [], []
        files: dict[str, list[str]] = {"test": [], "reference": []}
        for j, (out, gold) in enumerate(zip(job.turns or [], job.sample.turns, strict=True)):
            sides = (
                (
                    "test",
                    self.target.tree.root,
                    out.audio_path,
                    file,
                    f"dialogue_{job.sample.index}[{j}].model_output.audio_path",
                    tests,
                ),
                (
                    "reference",
                    self.bench.root,
                    gold.reference_audio,
                    job.sample.source,
                    f"[{job.sample.index}].dialogue[{j}].{self.bench.reference_set}",
                    refs,
                ),
            )
            for side, root, rel, origin, where, into in sides:
                try:
                    path = resolve_inside(root, rel or "", file=origin, field=where)
                    ref = self.clips.ref(path, side=side, turn=j, shown_path=rel or "", field=where)
                except DataError as exc:
                    kind = "agent_audio" if side == "test" else "reference_audio"
                    raise _SideError(kind, exc.problem.describe()) from exc
                job.paths[ref.sha256] = path
                files[side].append(self.clips.file_sha(path))
                into.append(ref)
        return tests, refs, files

    def tasks(self, job: Job) -> list[Task]:
        """The protocol's calls for one sample, with requests and cache keys (or the reason there are none)."""
        calls = [
            (order, metrics) for order in self.protocol.orders for metrics in self.protocol.metric_sets()
        ]
        inputs: dict[str, str] = {}
        if job.error is None:
            try:
                tests, refs, files = self._clip_refs(job)
                inputs = judge_inputs(job.sample, files["test"], files["reference"])
            except _SideError as exc:
                job.error = (exc.kind, exc.message)
        out = []
        for order, metrics in calls:
            tid = task_id(job.sample.key, self.protocol.name, order, metrics)
            if job.error is not None:
                out.append(Task(tid, job.sample, order, metrics, error=job.error))
                continue
            request = self.prompter.request(
                self.protocol, job.role, job.sample, self.bench, order, metrics, tests, refs
            )
            out.append(
                Task(tid, job.sample, order, metrics, request=request, key=self._key(request), inputs=inputs)
            )
        return out

    def clip_base64(self, job: Job) -> Callable[[ClipRef], str]:
        return lambda clip: self.clips.prepared(job.paths[clip.sha256], clip.sha256).base64()
