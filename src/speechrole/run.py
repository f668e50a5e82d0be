"""The Run: the only reader of a run directory.

A run directory holds what one agent produced on one benchmark and everything made from it:
`run.json`, the outputs (`model_output/`), `generations.jsonl`, `measures.jsonl` and `judgments.jsonl`.
Every command and library caller reads it through `Run.open(path)`, so every number comes from the same
data read the same way:

- the benchmark is the one `run.json` records (a path, `mini` or `hf:OWNER/NAME`), resolved one way;
- a judgment or a measure is *current* only while the inputs it was made from are the ones on disk:
  for a judgment, the benchmark sample's text and the sha256 of every clip the judge heard (agent and
  reference); for a measure, the clip's sha256 and, for metrics that read it, the answer text. Stale ones
  are never used, and are counted by reason;
- judge configurations (model, protocol + version, rubric hash) are kept apart, never pooled;
- a sample the agent was asked to answer but gave no usable answer for (no text, no audio, audio
  missing or unreadable, a generation error) is an *agent failure*: the agent's score, not the judge's.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechrole.audio import file_sha256, probe
from speechrole.fileio import read_json, read_jsonl, resolve_inside
from speechrole.outputs import OutputTree, OutputTurn, RoleOutput, read_role_output
from speechrole.problems import DataError, Problem
from speechrole.schema import Benchmark, Judgment, Mode, Sample

if TYPE_CHECKING:
    from speechrole.results import SystemResults

#: Judge errors that are the agent's doing: no answer to judge, or the agent's own audio unusable.
AGENT_ERROR_KINDS = frozenset({"no_output", "agent_audio"})


# --- what a judgment or a measure was made from ---------------------------------------------------------


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:32]


def sample_text_digest(sample: Sample) -> str:
    """The benchmark sample's text a judge reads: system prompt, user turns and reference answers."""
    return _digest([sample.system_prompt, [(t.user_text, t.reference_text) for t in sample.turns]])


def judge_inputs(
    sample: Sample, agent_audio: Iterable[str], reference_audio: Iterable[str]
) -> dict[str, str]:
    """What a judgment was made from, as digests: the sample's text and the file sha256 of each clip heard."""
    return {
        "sample": sample_text_digest(sample),
        "agent_audio": _digest(list(agent_audio)),
        "reference_audio": _digest(list(reference_audio)),
    }


#: Why a judgment is stale, by the input that changed.
STALE_REASONS = {
    "sample": "the benchmark sample's text changed",
    "agent_audio": "the agent's audio changed",
    "reference_audio": "the reference audio changed",
}
LEGACY = "made before speechrole recorded its inputs (rerun `speechrole judge`: answers come from the cache)"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- judge configurations -----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class JudgeKey:
    """One judge configuration: model, protocol and its version (which includes the rubric's hash)."""

    model: str
    protocol: str
    version: str

    @classmethod
    def of(cls, j: Judgment) -> JudgeKey:
        return cls(j.judge_model, j.protocol, j.protocol_version)

    @property
    def label(self) -> str:
        return f"{self.protocol} · {self.model or 'no judge'} · {self.version or 'unversioned'}"

    def to_dict(self) -> dict[str, str]:
        return {"judge_model": self.model, "protocol": self.protocol, "protocol_version": self.version}


@dataclass
class JudgeResults:
    """One configuration's judgments in a run: current ones (every repeat, in log order) and the latest
    current judgment per task; `stale` counts, by reason, the tasks whose latest judgment is out of date."""

    key: JudgeKey
    current: list[Judgment] = field(default_factory=list)
    stale: Counter[str] = field(default_factory=Counter)
    stale_samples: set[str] = field(default_factory=set)

    @property
    def latest(self) -> list[Judgment]:
        latest: dict[str, Judgment] = {}
        for j in self.current:
            latest[j.task] = j
        return list(latest.values())


@dataclass
class Measures:
    """Current lines of measures.jsonl (the latest per clip and metric) and the stale ones, by reason."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    stale: Counter[str] = field(default_factory=Counter)


# --- the run ------------------------------------------------------------------------------------------


class Run:
    """A run directory, read lazily and once. Use `Run.open(path)`; `bench` overrides the recorded one."""

    def __init__(self, path: Path, info: dict[str, Any], tree: OutputTree, bench: Benchmark | None) -> None:
        self.path = path
        self.info = info
        self.tree = tree
        self._bench = bench
        self.problems: list[Problem] = []
        self._sha: dict[Path, tuple[int, int, str]] = {}

    @classmethod
    def open(cls, path: Path, bench: Benchmark | None = None) -> Run:
        """Open a run directory (`run.json` and `model_output/`), or a judge state folder whose `run.json`
        names the outputs it judged (`speechrole judge` on an official tree)."""
        path = Path(path).absolute()
        if not path.is_dir():
            raise DataError(path, "", "run directory not found")
        info = read_run_json(path)
        outputs = info.get("outputs")
        own = path / "model_output"
        if own.is_dir() or not (
            isinstance(outputs, str) and outputs
        ):  # a run's own outputs, wherever it moved
            return cls(path, info, OutputTree(own, path), bench)
        base = Path(outputs) if Path(outputs).is_absolute() else path / outputs
        return cls(path, info, OutputTree(base, base.parent.parent), bench)  # model_output/<model> in a tree

    @staticmethod
    def is_run(path: Path) -> bool:
        return any((Path(path) / f).is_file() for f in ("run.json", "judgments.jsonl", "measures.jsonl"))

    # --- identity and benchmark ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        name = self.info.get("name")
        return name if isinstance(name, str) and name else self.path.name

    @property
    def bench_spec(self) -> str | None:
        """The benchmark as the run recorded it: a path, `mini` or `hf:OWNER/NAME`."""
        record = self.info.get("benchmark")
        if isinstance(record, dict) and isinstance(record.get("spec"), str) and record["spec"]:
            return record["spec"]
        return None

    @property
    def bench(self) -> Benchmark:
        """The run's benchmark: the one given to `open`, else the one run.json records (named benchmarks
        by name, paths as recorded, else the recorded root). Raises DataError when there is none."""
        if self._bench is None:
            self._bench = load_recorded_benchmark(self.path, self.info, self.problems)
        return self._bench

    @property
    def agent_spec(self) -> str:
        agent = self.info.get("agent")
        return str(agent.get("spec", "")) if isinstance(agent, dict) else ""

    # --- outputs and generations --------------------------------------------------------------------

    @cached_property
    def outputs(self) -> dict[tuple[Mode, str], RoleOutput]:
        found: dict[tuple[Mode, str], RoleOutput] = {}
        for mode in Mode:
            for role in self.tree.roles(mode):
                file = self.tree.json_file(mode, role)
                try:
                    output, problems = read_role_output(file)
                except DataError as exc:
                    self.problems.append(exc.problem)
                    continue
                found[(mode, role)] = output
                self.problems += problems
        return found

    def answers(self, sample: Sample) -> list[OutputTurn] | None:
        output = self.outputs.get((sample.mode, sample.role))
        return output.dialogues.get(sample.index) if output else None

    @cached_property
    def generations(self) -> dict[tuple[str, int], dict[str, Any]]:
        """The last record of each turn in generations.jsonl."""
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for _, parsed, line in read_jsonl(self.path / "generations.jsonl"):
            if parsed and isinstance(line, dict) and "sample" in line and "turn" in line:
                out[(str(line["sample"]), int(line["turn"]))] = line
        return out

    def latencies(self) -> dict[tuple[str, int], dict[str, float]]:
        """Per-turn latencies of the answers on disk (a record whose text is no longer the answer's is not)."""
        out: dict[tuple[str, int], dict[str, float]] = {}
        texts = {(s.key, j): t.text for s in self.bench.samples for j, t in enumerate(self.answers(s) or [])}
        for key, line in self.generations.items():
            if line.get("status") != "ok" or not isinstance(line.get("latency_s"), dict):
                continue
            if key in texts and line.get("text") == texts[key]:
                out[key] = {k: float(v) for k, v in line["latency_s"].items()}
        return out

    @cached_property
    def attempted(self) -> set[str]:
        """Samples the agent was asked to answer: those with outputs or a generation record; for outputs
        made elsewhere (no generations.jsonl), also those the judge found without an answer."""
        keys = {key for key, _ in self.generations}
        for (mode, role), output in self.outputs.items():
            keys |= {f"{mode.value}/{role}/{index}" for index in output.dialogues}
        if not self.generations:
            keys |= {
                j.sample
                for group in self.judgments
                for j in group.current
                if j.error_kind in AGENT_ERROR_KINDS
            }
        return keys

    def file_sha(self, path: Path) -> str:
        """sha256 of a file's bytes, remembered while its size and mtime stay the same."""
        stat = path.stat()
        known = self._sha.get(path)
        if known is None or known[:2] != (stat.st_size, stat.st_mtime_ns):
            known = (stat.st_size, stat.st_mtime_ns, file_sha256(path))
            self._sha[path] = known
        return known[2]

    def agent_clip(self, sample: Sample, turn: int) -> Path | None:
        answers = self.answers(sample) or []
        if turn >= len(answers) or not answers[turn].audio_path:
            return None
        return resolve_inside(self.tree.root, answers[turn].audio_path or "")

    def reference_clip(self, sample: Sample, turn: int) -> Path | None:
        rel = sample.turns[turn].reference_audio
        return resolve_inside(self.bench.root, rel) if rel else None

    @cached_property
    def failures(self) -> dict[str, str]:
        """Samples the agent was asked to answer and gave no usable answer for, with the reason."""
        out: dict[str, str] = {}
        for sample in self.bench.samples:
            if sample.key in self.attempted and (why := self._failure(sample)):
                out[sample.key] = why
        return out

    def _failure(self, sample: Sample) -> str | None:
        answers = self.answers(sample) or []
        for j in range(len(sample.turns)):
            record = self.generations.get((sample.key, j), {})
            if j >= len(answers):
                error = record.get("error") if record.get("status") == "error" else None
                return f"turn {j + 1}: no answer" + (f" ({error})" if error else "")
            if answers[j].text is None:
                return f"turn {j + 1}: no answer text"
            if not answers[j].audio_path:
                return f"turn {j + 1}: no audio"
            try:
                path = resolve_inside(self.tree.root, answers[j].audio_path or "")
                probe(path, decode=False)
            except DataError as exc:
                return f"turn {j + 1}: {exc.problem.reason}"
        return None

    def judge_inputs(self, sample: Sample) -> dict[str, str] | None:
        """The inputs a judgment of this sample would be made from now (None: a clip is missing)."""
        try:
            agent = [self.agent_clip(sample, j) for j in range(len(sample.turns))]
            refs = [self.reference_clip(sample, j) for j in range(len(sample.turns))]
            if any(p is None or not p.is_file() for p in agent + refs):
                return None
            return judge_inputs(
                sample,
                [self.file_sha(p) for p in agent],  # type: ignore[arg-type]
                [self.file_sha(p) for p in refs],  # type: ignore[arg-type]
            )
        except (DataError, OSError):
            return None

    # --- judgments ----------------------------------------------------------------------------------

    @cached_property
    def judgments(self) -> list[JudgeResults]:
        """Current judgments per judge configuration, stale ones counted by reason."""
        from speechrole.judge.log import read_judgments

        log, problems = read_judgments(self.path / "judgments.jsonl")
        self.problems += problems
        samples = {s.key: s for s in self.bench.samples}
        inputs: dict[str, dict[str, str] | None] = {}
        groups: dict[JudgeKey, JudgeResults] = {}
        latest_task: dict[tuple[JudgeKey, str], int] = {}
        for n, j in enumerate(log):
            latest_task[(JudgeKey.of(j), j.task)] = n
        for n, j in enumerate(log):
            key = JudgeKey.of(j)
            group = groups.setdefault(key, JudgeResults(key))
            sample = samples.get(j.sample)
            if sample is None:
                why = "the sample is not in the run's benchmark"
            elif j.error_kind in AGENT_ERROR_KINDS:
                why = None  # the agent's failure, read from disk (see `failures`); nothing to compare
            else:
                if j.sample not in inputs:
                    inputs[j.sample] = self.judge_inputs(sample)
                why = stale_reason(j.inputs, inputs[j.sample])
            if why is None:
                group.current.append(j)
            elif latest_task[(key, j.task)] == n:  # only the task's latest judgment counts as stale
                group.stale[why] += 1
                group.stale_samples.add(j.sample)
        return [groups[k] for k in sorted(groups)]

    def systems(self, name: str | None = None) -> list[SystemResults]:
        """What `score` scores: one system per judge configuration (named `NAME [config]` when there are
        several), each with the current judgments (the latest per task), the agent failures, what was
        stale, and the current measures; one system without judgments when the run was not judged."""
        from speechrole.results import SystemResults, _is_system_dir, read_system

        name = name or self.name
        measures, latencies, failures = self.measures, self.latencies(), self.failures
        groups = self.judgments
        common: dict[str, Any] = {
            "source": self.path,
            "failures": failures,
            "measures": measures.lines,
            "stale_measures": dict(measures.stale),
            "latencies": latencies,
        }
        if not groups and not (self.path / "judgments.jsonl").is_file():
            if _is_system_dir(self.path / "test_results"):  # results exported by another tool, unverifiable
                system = read_system(self.path / "test_results", name)
                for key, value in common.items():
                    setattr(system, key, value)
                system.problems = [*self.problems, *system.problems]
                return [system]
            return [SystemResults(name=name, problems=list(self.problems), **common)]
        out = []
        for group in groups:
            label = name if len(groups) == 1 else f"{name} [{group.key.label}]"
            judged = [j for j in group.latest if j.error_kind not in AGENT_ERROR_KINDS]
            out.append(
                SystemResults(
                    name=label,
                    judgments=judged,
                    problems=list(self.problems),
                    protocol=group.key.protocol,
                    judge_model=group.key.model,
                    judge=group.key,
                    stale=dict(group.stale),
                    stale_samples=sorted(group.stale_samples),
                    checks=self.checks(group.key),
                    **common,
                )
            )
        return out

    # --- judge checks -------------------------------------------------------------------------------

    @cached_property
    def _check_lines(self) -> dict[str, list[dict[str, Any]]]:
        """The valid lines of probes.jsonl, canary.jsonl and agreement.jsonl, read once."""
        from speechrole.fileio import read_jsonl

        out: dict[str, list[dict[str, Any]]] = {}
        for name in ("probes.jsonl", "canary.jsonl", "agreement.jsonl"):
            path = self.path / name
            found = read_jsonl(path) if path.is_file() else []
            out[name] = [d for _, ok, d in found if ok and isinstance(d, dict)]
        return out

    def checks(self, key: JudgeKey) -> dict[str, list[dict[str, Any]]]:
        """The judge checks kept in the run for one judge configuration: the latest result per probe and
        metric (`probes.jsonl`), the latest canary check (`canary.jsonl`), and the judge-against-judge
        records that name it (`agreement.jsonl`, the latest per system, metric and other judge)."""
        ident = {"model": key.model, "protocol": key.protocol, "version": key.version}
        lines = self._check_lines

        probes: dict[tuple[str, str], dict[str, Any]] = {}
        for d in lines["probes.jsonl"]:
            if d.get("judge") == ident:
                probes[(str(d.get("probe")), str(d.get("metric")))] = d
        canaries = [d for d in lines["canary.jsonl"] if d.get("judge") == ident][-1:]
        agreement: dict[tuple[str, ...], dict[str, Any]] = {}
        for d in lines["agreement.jsonl"]:
            a, b = (d.get(side) or {} for side in ("judge_a", "judge_b"))
            if key.label in (a.get("label"), b.get("label")):
                other = b.get("label") if a.get("label") == key.label else a.get("label")
                agreement[(str(d.get("record")), str(d.get("system")), str(d.get("metric")), str(other))] = d
        return {"probes": list(probes.values()), "canaries": canaries, "agreement": list(agreement.values())}

    # --- measures -----------------------------------------------------------------------------------

    @cached_property
    def measures(self) -> Measures:
        """The latest line per clip and metric whose clip (and text, where the metric reads it) is unchanged."""
        from speechrole.measure import read_measures

        lines, problems = read_measures(self.path / "measures.jsonl")
        self.problems += problems
        latest: dict[tuple[str, int, str, str], dict[str, Any]] = {}
        for line in lines:
            latest[(line["sample"], int(line["turn"]), line["side"], line["metric"])] = line
        samples = {s.key: s for s in self.bench.samples}
        result = Measures()
        for (key, turn, side, _metric), line in latest.items():
            why = self._measure_stale(samples.get(key), turn, side, line)
            if why is None:
                result.lines.append(line)
            else:
                result.stale[why] += 1
        return result

    def _measure_stale(self, sample: Sample | None, turn: int, side: str, line: dict[str, Any]) -> str | None:
        if sample is None or turn >= len(sample.turns):
            return "the sample is not in the run's benchmark"
        try:
            path = self.agent_clip(sample, turn) if side == "agent" else self.reference_clip(sample, turn)
        except DataError:
            return "the clip's path is refused"
        if path is None or not path.is_file():
            return "the clip is gone"
        if not line.get("sha256"):  # an unreadable clip from an older version: an error, never a value
            return None
        if line["sha256"] != self.file_sha(path):
            return "the clip changed"
        if "text_sha256" not in line and _reads_text(str(line.get("metric", ""))):
            return LEGACY
        if "text_sha256" in line:
            text = (
                (self.answers(sample) or [])[turn].text
                if side == "agent"
                else sample.turns[turn].reference_text
            )
            from speechrole.agents.cascaded import speakable

            if line["text_sha256"] != text_sha256(speakable(text or "") if side == "agent" else text or ""):
                return "the answer text changed"
        return None


@cache
def _reads_text(metric: str) -> bool:
    from speechrole.metrics import METRICS, load_builtin

    load_builtin()
    try:
        return bool(getattr(METRICS.get(metric).factory, "reads_text", False))
    except (ValueError, AttributeError):
        return False


def common_benchmark(paths: Iterable[Path]) -> Benchmark:
    """The one benchmark the given runs were made on (by content hash); DataError when they name none
    or several (pass a benchmark explicitly to read them against one)."""
    benches: dict[str, Benchmark] = {}
    for path in paths:
        run = Run.open(path)
        bench = run.bench
        benches.setdefault(bench.content_hash or str(bench.root), bench)
    if len(benches) != 1:
        names = sorted(b.name for b in benches.values())
        raise DataError(
            "", "benchmark", f"the runs come from {len(benches)} benchmarks {names}; pass --bench"
        )
    return next(iter(benches.values()))


def stale_reason(recorded: dict[str, str], now: dict[str, str] | None) -> str | None:
    """Why a judgment made from `recorded` inputs no longer holds for the inputs `now` (None: it holds)."""
    if not recorded:
        return LEGACY
    if now is None:
        return "a clip it heard is gone"
    for name, reason in STALE_REASONS.items():
        if recorded.get(name) != now.get(name):
            return reason
    return None


# --- run.json and the benchmark -----------------------------------------------------------------------


def read_run_json(path: Path) -> dict[str, Any]:
    file = Path(path) / "run.json"
    if not file.is_file():
        return {}
    try:
        data = read_json(file)
    except DataError:
        return {}
    return data if isinstance(data, dict) else {}


def load_recorded_benchmark(path: Path, info: dict[str, Any], problems: list[Problem]) -> Benchmark:
    """The benchmark run.json records, resolved one way: a named (`mini`) or hub (`hf:`) spec by name; a
    path as recorded (relative to the run, then to the working folder), else the recorded root. A content
    hash that differs from the recorded one is reported."""
    from speechrole.bench import HF_PREFIX, NAMED, load_benchmark

    record = info.get("benchmark")
    if not isinstance(record, dict) or not record.get("spec"):
        raise DataError(path / "run.json", "benchmark.spec", "no benchmark recorded; pass --bench")
    spec = str(record["spec"])
    options: dict[str, Any] = {}
    if isinstance(record.get("reference_set"), str):
        options["reference_set"] = record["reference_set"]
    if spec in NAMED or spec.startswith(HF_PREFIX):
        target: str | Path = spec
    else:
        candidates = [Path(spec)] if Path(spec).is_absolute() else [path / spec, Path(spec)]
        if isinstance(record.get("root"), str):
            candidates.append(Path(record["root"]))
        found = next((c for c in candidates if c.is_dir()), None)
        if found is None:
            raise DataError(
                path / "run.json", "benchmark.spec", f"benchmark {spec!r} not found; pass --bench"
            )
        target = found
    bench, more = load_benchmark(target, **options)
    problems += [p for p in more if p.severity == "error"]
    recorded = record.get("content_hash")
    if recorded and bench.content_hash and recorded != bench.content_hash:
        problems.append(
            Problem(
                str(path / "run.json"),
                "benchmark.content_hash",
                f"the benchmark changed since this run ({recorded[:12]} -> {bench.content_hash[:12]}); "
                "judgments and measures of changed samples are stale",
                "warning",
            )
        )
    return bench


__all__ = [
    "AGENT_ERROR_KINDS",
    "JudgeKey",
    "JudgeResults",
    "Measures",
    "Run",
    "common_benchmark",
    "judge_inputs",
    "read_run_json",
    "stale_reason",
    "text_sha256",
]
