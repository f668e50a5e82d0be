"""Probes: controlled changes to the agent's audio that a fair judge must ignore or a useful one must hear.

A probe takes a seeded sample of a run's judgeable samples, writes changed copies of the agent's clips
into `RUN/probes/<probe>/` (an outputs tree of its own, so its judgments never mix with the run's),
judges that tree with the same judge configuration, cache, concurrency, cost limit and resume as
`speechrole judge`, and compares each sample's score (`score.sample.sample_score`) with the run's own,
paired, per metric: the mean shift with a bootstrap interval over samples, and a verdict.

- invariance probes (a fair judge does not move): the reference judged against itself (compared with a
  tie, ratio 1), +6 dB and -6 dB gain, 1 s of leading silence, the two answers' positions swapped;
- sensitivity probes (a useful judge moves down, on the metrics named): the answer cut to its first
  half (coherence, knowledge), the same words in another voice (prosody, personality), another role's
  answer (everything).

Results go to `RUN/probes.jsonl`, one line per probe and metric, with the judge's model, protocol and
version (rubric or released-script hash).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from speechrole.audio import load_audio, write_wav
from speechrole.fileio import write_json_atomic
from speechrole.judge.config import JudgeConfig, JudgeTarget
from speechrole.problems import DataError, Problem
from speechrole.schema import METRICS, Benchmark, Sample

OVERALL = "overall"
FILENAME = "probes.jsonl"
#: Shifts of the sample ratio smaller than this are no evidence either way (a practical margin).
TOLERANCE = 0.02

Clip = tuple[np.ndarray, int]


@dataclass
class ProbeContext:
    """What a probe's transform may read: the run, the benchmark, and the samples chosen."""

    run: Any  # speechrole.run.Run
    bench: Benchmark
    chosen: list[Sample]
    cache: dict[str, Any] = field(default_factory=dict)

    def agent(self, sample: Sample) -> list[Clip]:
        return self._clips(sample, self.run.agent_clip, "the agent's clip")

    def reference(self, sample: Sample) -> list[Clip]:
        return self._clips(sample, self.run.reference_clip, "the reference clip")

    def _clips(self, sample: Sample, locate: Callable[[Sample, int], Path | None], what: str) -> list[Clip]:
        """Each turn's clip, decoded to mono; a missing one names the sample and turn."""
        out = []
        for j in range(len(sample.turns)):
            path = locate(sample, j)
            if path is None:
                raise DataError(sample.key, f"turn {j}", f"{what} is missing")
            out.append(_mono(load_audio(path)))
        return out


def _mono(clip: tuple[np.ndarray, int]) -> Clip:
    data, rate = clip
    return data.mean(axis=1).astype(np.float32), rate


def _gain(db: float) -> Callable[[ProbeContext, Sample], list[Clip]]:
    factor = 10 ** (db / 20)
    return lambda ctx, s: [(np.clip(a * factor, -1.0, 1.0), r) for a, r in ctx.agent(s)]


def _lead_silence(ctx: ProbeContext, s: Sample) -> list[Clip]:
    return [(np.concatenate([np.zeros(r, dtype=np.float32), a]), r) for a, r in ctx.agent(s)]


def _first_half(ctx: ProbeContext, s: Sample) -> list[Clip]:
    return [(a[: max(1, len(a) // 2)], r) for a, r in ctx.agent(s)]


def _other_role(ctx: ProbeContext, s: Sample) -> list[Clip]:
    """The agent's answers to another role's sample of the same mode (and language when there is one)."""
    others = [
        o
        for o in ctx.bench.samples
        if o.role != s.role and o.mode == s.mode and o.key not in ctx.run.failures and ctx.run.answers(o)
    ]
    same_language = [
        o for o in others if ctx.bench.roles[o.role].language == ctx.bench.roles[s.role].language
    ]
    pool = same_language or others
    if not pool:
        raise DataError(s.key, "", "no other role's answer to swap in")
    donor = pool[zlib.crc32(s.key.encode()) % len(pool)]
    clips = ctx.agent(donor)
    return [clips[j % len(clips)] for j in range(len(s.turns))]


def _other_voice(ctx: ProbeContext, s: Sample) -> list[Clip]:
    """The agent's own words, spoken by the bank voice farthest from the role's reference voice."""
    from speechrole.agents.tts import VoiceBankTTS, synthesize_with

    role = ctx.bench.roles[s.role]
    bank = ctx.cache.get("bank")
    if bank is None:
        bank = ctx.cache["bank"] = VoiceBankTTS()
    voice = ctx.cache.get(f"voice:{role.id}")
    if voice is None:
        reference = (ctx.bench.root / role.reference_audio) if role.reference_audio else None
        ranked = bank.ranked(role.model_copy(update={"reference_audio": str(reference)})) if reference else []
        if ranked:
            voice = ranked[-1][1]
        else:
            candidates = [v for v in bank.voices if v.language is role.language] or bank.voices
            voice = candidates[(zlib.crc32(role.id.encode()) + 1) % len(candidates)]
        ctx.cache[f"voice:{role.id}"] = voice
    out = []
    for j, turn in enumerate(ctx.run.answers(s) or []):
        if not turn.text:
            raise DataError(s.key, f"turn {j}", "the agent's answer has no text to speak again")
        out.append(synthesize_with(voice, turn.text))
    return out


def _reference_self(ctx: ProbeContext, s: Sample) -> list[Clip]:
    return ctx.reference(s)


def _same(ctx: ProbeContext, s: Sample) -> list[Clip]:
    return ctx.agent(s)


@dataclass(frozen=True)
class Probe:
    name: str
    kind: Literal["invariance", "sensitivity"]
    description: str
    transform: Callable[[ProbeContext, Sample], list[Clip]]
    expected: tuple[str, ...] = ()  # sensitivity: the metrics that must drop
    orders: tuple[str, ...] | None = None  # ask in these orders instead of the protocol's
    against_tie: bool = False  # compared with a tie (ratio 1), not with the run's own score


PROBES: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe(
            "reference-self",
            "invariance",
            "the reference judged against itself: expect a tie (ratio 1)",
            _reference_self,
            against_tie=True,
        ),
        Probe("gain+6db", "invariance", "the agent's audio 6 dB louder", _gain(6.0)),
        Probe("gain-6db", "invariance", "the agent's audio 6 dB quieter", _gain(-6.0)),
        Probe("lead-silence", "invariance", "1 s of silence before each of the agent's clips", _lead_silence),
        Probe(
            "swap-positions",
            "invariance",
            "the agent's answer heard second (as Model B), the reference first",
            _same,
            orders=("BA",),
        ),
        Probe(
            "first-half",
            "sensitivity",
            "each of the agent's clips cut to its first half",
            _first_half,
            expected=("Conversational_Coherence", "Knowledge_Consistency"),
        ),
        Probe(
            "other-voice",
            "sensitivity",
            "the agent's words spoken by another voice (the bank voice farthest from the role's)",
            _other_voice,
            expected=("Prosodic_Consistency", "Personality_Consistency"),
        ),
        Probe(
            "other-role",
            "sensitivity",
            "the agent's answer replaced by its answer for another role",
            _other_role,
            expected=(*METRICS, OVERALL),
        ),
    )
}


@dataclass(frozen=True)
class Shift:
    """One probe on one metric: the mean paired shift of the sample ratio, its interval, the verdict."""

    probe: str
    kind: str
    metric: str
    n: int
    shift: float | None
    low: float | None
    high: float | None
    verdict: str  # invariant | biased | sensitive | insensitive | inconclusive | not measured
    expected: bool  # an invariance metric, or one the sensitivity probe must move


def verdict(kind: str, expected: bool, low: float | None, high: float | None, tol: float = TOLERANCE) -> str:
    """Invariance: biased when the interval excludes 0 by more than the margin, invariant when it lies
    within it. Sensitivity (on the metrics expected to drop): sensitive when it lies below -margin,
    insensitive when within the margin."""
    if low is None or high is None:
        return "not measured"
    if kind == "sensitivity" and not expected:
        return "—"
    within = -tol <= low and high <= tol
    if kind == "invariance":
        return "biased" if (low > tol or high < -tol) else "invariant" if within else "inconclusive"
    return "sensitive" if high < -tol else "insensitive" if within else "inconclusive"


def paired_shift(
    diffs: list[float], seed: int, label: str, replicates: int = 2000, confidence: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """Mean of the per-sample differences and its percentile bootstrap interval over samples."""
    from speechrole.score.stats import BootstrapSpec, percentile_interval, replicate_weights

    if not diffs:
        return None, None, None
    d = np.asarray(diffs, dtype=float)
    spec = BootstrapSpec(replicates=replicates, confidence=confidence, seed=seed)
    weights = replicate_weights(len(d), spec, "probe", label)
    means = (weights @ d) / weights.sum(axis=1)
    low, high = percentile_interval(means, confidence)
    return float(d.mean()), low, high


@dataclass
class ProbeReport:
    judge: dict[str, str]
    samples: list[str]
    shifts: list[Shift]
    spent_usd: float = 0.0
    stopped: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return [
            {
                "kind": "probe",
                **dataclasses.asdict(s),
                "judge": self.judge,
                "samples": len(self.samples),
                "created": created,
            }
            for s in self.shifts
        ]


def choose_samples(run: Any, bench: Benchmark, n: int, seed: int) -> list[Sample]:
    """A seeded choice of samples the agent answered (agent failures are not probed)."""
    usable = [s for s in bench.samples if s.key not in run.failures and run.answers(s)]
    if len(usable) <= n:
        return usable
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(usable), size=n, replace=False))
    return [usable[i] for i in picked]


def write_probe_outputs(ctx: ProbeContext, probe: Probe, folder: Path) -> list[Problem]:
    """The changed clips and their JSON, in the run layout; a sample already written from the same
    source clips is kept (resume)."""
    from speechrole.outputs import OutputTree

    tree = OutputTree(folder / "model_output", folder)
    state_path = folder / "probe.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    problems: list[Problem] = []
    files: dict[tuple[str, str], dict[str, Any]] = {}
    for sample in ctx.chosen:
        source = hashlib.sha256(
            json.dumps(ctx.run.judge_inputs(sample) or {}, sort_keys=True).encode("utf-8")
        ).hexdigest()
        paths = [tree.audio_file(sample.mode, sample.role, sample.index, j) for j in range(len(sample.turns))]
        answers = ctx.run.answers(sample) or []
        if state.get(sample.key) != source or not all(p.is_file() for p in paths):
            try:
                clips = probe.transform(ctx, sample)
            except DataError as exc:
                problems.append(exc.problem)
                state.pop(sample.key, None)
                continue
            for path, (audio, rate) in zip(paths, clips, strict=True):
                write_wav(path, audio, rate)
            state[sample.key] = source
        entry = files.setdefault((sample.mode.value, sample.role), {"role": sample.role})
        entry[f"dialogue_{sample.index}"] = [
            {
                "turn": j,
                "user_input": {"text": turn.user_text},
                "model_output": {
                    "text": answers[j].text if j < len(answers) else "",
                    "audio_path": paths[j].relative_to(folder).as_posix(),
                },
            }
            for j, turn in enumerate(sample.turns)
        ]
    for (mode, role), payload in files.items():
        write_json_atomic(folder / "model_output" / f"{mode}_result" / "json" / f"{role}.json", payload)
    write_json_atomic(state_path, state)
    return problems


def _ratios(run_dir: Path, bench: Benchmark, key: Any) -> dict[str, dict[str, float]]:
    """Per sample, the ratio per metric (and overall) under judge configuration `key`."""
    from collections import defaultdict

    from speechrole.run import Run
    from speechrole.score.sample import sample_score

    run = Run.open(run_dir, bench)
    system = next((s for s in run.systems() if s.judge == key), None)
    if system is None:
        return {}
    grouped: dict[str, list[Any]] = defaultdict(list)
    for j in system.judgments:
        grouped[j.sample].append(j)
    out = {}
    for sample, judged in grouped.items():
        score = sample_score(judged)
        values = dict(score.ratio)
        if len(values) == len(METRICS):
            values[OVERALL] = float(np.mean(list(values.values())))
        out[sample] = values
    return out


async def _judge(bench: Benchmark, folder: Path, config: JudgeConfig) -> Any:
    from speechrole.judge.runner import JudgeRun

    return await JudgeRun(bench, JudgeTarget.for_run(folder), config).run()


def run_probes(
    run_dir: Path,
    bench: Benchmark,
    config: JudgeConfig,
    probes: list[str],
    *,
    n_samples: int = 20,
    seed: int = 0,
    on_progress: Callable[[str], None] | None = None,
) -> ProbeReport:
    """Judge the chosen samples as they are and under each probe; the shifts and verdicts, also written
    to `RUN/probes.jsonl`."""
    from speechrole.judge.runner import JudgeRun
    from speechrole.run import JudgeKey, Run

    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ValueError(f"unknown probe(s) {unknown}; choose from {', '.join(PROBES)}")
    run_dir = Path(run_dir).absolute()
    run = Run.open(run_dir, bench)
    chosen = choose_samples(run, bench, n_samples, seed)
    keys = tuple(s.key for s in chosen)
    say = on_progress or (lambda _: None)
    probe_run = JudgeRun(bench, JudgeTarget.for_run(run_dir), dataclasses.replace(config, samples=keys))
    key = JudgeKey(config.model, probe_run.protocol.name, probe_run.version)
    judge_label = {"model": config.model, "protocol": key.protocol, "version": key.version}
    report = ProbeReport(judge_label, list(keys), [])
    budget = config.max_cost_usd

    def spend(outcome: Any) -> None:
        report.spent_usd += outcome.spent_usd
        report.problems.extend(outcome.problems)
        if outcome.stopped and report.stopped is None:
            report.stopped = outcome.stopped

    say(f"baseline: {len(keys)} samples")
    spend(asyncio.run(probe_run.run()))
    base = _ratios(run_dir, bench, key)
    ctx = ProbeContext(run, bench, chosen)
    for name in probes:
        probe = PROBES[name]
        if report.stopped:
            break
        folder = run_dir / "probes" / name
        say(f"probe {name}: {probe.description}")
        report.problems.extend(write_probe_outputs(ctx, probe, folder))
        left = None if budget is None else max(0.0, budget - report.spent_usd)
        probe_config = dataclasses.replace(config, samples=keys, max_cost_usd=left, orders=probe.orders)
        spend(asyncio.run(_judge(bench, folder, probe_config)))
        probed = _ratios(folder, bench, key)
        for k, metric in enumerate([*METRICS, OVERALL]):
            diffs = [
                probed[s][metric] - (1.0 if probe.against_tie else base[s][metric])
                for s in keys
                if metric in probed.get(s, {}) and (probe.against_tie or metric in base.get(s, {}))
            ]
            shift, low, high = paired_shift(diffs, seed + k, f"{name}/{metric}")
            expected = probe.kind == "invariance" or metric in probe.expected
            report.shifts.append(
                Shift(
                    name,
                    probe.kind,
                    metric,
                    len(diffs),
                    shift,
                    low,
                    high,
                    verdict(probe.kind, expected, low, high),
                    expected,
                )
            )
    with (run_dir / FILENAME).open("a", encoding="utf-8") as handle:
        for record in report.records():
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return report


def probe_verdicts(shifts: list[Shift]) -> dict[str, str]:
    """One verdict per probe: an invariance probe is biased if any metric is; a sensitivity probe is
    sensitive only if every metric it must move does."""
    out: dict[str, str] = {}
    for name in dict.fromkeys(s.probe for s in shifts):
        mine = [s for s in shifts if s.probe == name and s.expected]
        verdicts = {s.verdict for s in mine}
        if mine and mine[0].kind == "invariance":
            out[name] = (
                "biased"
                if "biased" in verdicts
                else "invariant"
                if verdicts == {"invariant"}
                else "inconclusive"
            )
        else:
            out[name] = (
                "sensitive"
                if verdicts == {"sensitive"}
                else "insensitive"
                if "insensitive" in verdicts
                else "inconclusive"
            )
    return out


__all__ = [
    "FILENAME",
    "PROBES",
    "Probe",
    "ProbeReport",
    "Shift",
    "paired_shift",
    "probe_verdicts",
    "run_probes",
    "verdict",
]
