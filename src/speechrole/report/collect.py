"""What the report and the viewer show of a run: every sample with the user's, the agent's and the
reference's text and audio, what the agent heard, its latency, the objective measures, the judge's
scores and reasons in each order, and the sample's flags.

Audio links are made by a `Linker`, so the same views serve a file on disk (relative links or data:
URIs) and the viewer (URLs that the server resolves inside an allowed root).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from speechrole.fileio import read_json, read_jsonl, resolve_inside
from speechrole.problems import DataError, Problem
from speechrole.schema import METRIC_ABBREV, METRICS, Benchmark, Judgment, Mode, Sample

#: Measures shown under each clip in the drill-down.
CLIP_MEASURES = ("speaker.similarity", "dnsmos.ovrl", "intelligibility.error_rate", "duration.seconds")
#: The official judge hears at most this much of each clip (see judge/protocol.py).
JUDGE_CLIP_LIMIT_S = 60.0

#: An audio file -> (href or None, whether it is missing on disk).
Linker = Callable[[Path], tuple[str | None, bool]]


def relative_links(report: Path, embed: bool = False) -> Linker:
    """Links from the report's folder: relative paths, or data: URIs when embedding."""
    base = report.absolute().parent

    def link(path: Path) -> tuple[str | None, bool]:
        if not path.is_file():
            return None, True
        if embed:
            return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode("ascii"), False
        return quote(Path(os.path.relpath(path.absolute(), base)).as_posix()), False

    return link


@dataclass
class Clip:
    text: str | None
    href: str | None  # how the page reaches the audio; None when there is none
    path: Path | None = None  # the file, for servers (never shown)
    missing: bool = False  # named but not found on disk (or refused)
    measures: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


@dataclass
class TurnView:
    index: int
    user: Clip
    reference: Clip
    agent: Clip
    heard: str | None = None  # what the agent's ASR heard, for cascaded agents
    latency: dict[str, float] = field(default_factory=dict)


@dataclass
class SampleView:
    key: str
    role: str
    role_name: str
    mode: str
    language: str
    category: str
    system_prompt: str
    turns: list[TurnView]
    judgments: list[Judgment]
    flags: list[str]
    ratios: dict[str, float]  # metric -> s_test / s_ref, mean over the scored judgments
    gaps: dict[str, float]  # metric -> s_test - s_ref, mean over the scored judgments

    @property
    def overall(self) -> float | None:
        return sum(self.ratios.values()) / len(self.ratios) if self.ratios else None


@dataclass
class RunView:
    id: str  # stable within one report or viewer (its folder, relative to the runs' parent)
    name: str
    path: Path
    agent: str
    judge: str
    samples: list[SampleView]
    problems: list[Problem]

    def sample(self, key: str) -> SampleView | None:
        return next((s for s in self.samples if s.key == key), None)


def _clip(text: str | None, root: Path, rel: str | None, link: Linker, problems: list[Problem]) -> Clip:
    if not rel:
        return Clip(text, None)
    try:
        path = resolve_inside(root, rel)
    except DataError as exc:  # a path escaping its folder is never linked
        problems.append(exc.problem)
        return Clip(text, None, missing=True)
    href, missing = link(path)
    return Clip(text, href, path, missing)


def _measures(run_dir: Path) -> dict[tuple[str, int, str], tuple[dict[str, float], list[str]]]:
    from speechrole.measure import read_measures

    out: dict[tuple[str, int, str], tuple[dict[str, float], list[str]]] = {}
    for line in read_measures(run_dir / "measures.jsonl")[0]:
        values, flags = out.setdefault((line["sample"], int(line["turn"]), line["side"]), ({}, []))
        for name, value in (line.get("values") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[f"{line['metric']}.{name}"] = float(value)
        flags += [f for f in line.get("flags") or [] if f not in flags]
    return out


def _generations(run_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for _, _, line in read_jsonl(run_dir / "generations.jsonl"):
        if isinstance(line, dict) and "sample" in line and "turn" in line:
            out[(str(line["sample"]), int(line["turn"]))] = line
    return out


def judge_means(judgments: list[Judgment]) -> tuple[dict[str, float], dict[str, float]]:
    """Per metric, the mean s_test/s_ref and the mean s_test - s_ref over the scored judgments."""
    ratios: dict[str, float] = {}
    gaps: dict[str, float] = {}
    for metric in METRICS:
        pairs = [j.scores[metric] for j in judgments if j.status == "scored" and metric in j.scores]
        if pairs:
            ratios[metric] = sum(p.test / p.ref for p in pairs) / len(pairs)
            gaps[metric] = sum(p.test - p.ref for p in pairs) / len(pairs)
    return ratios, gaps


def sample_flags(
    sample: Sample, judgments: list[Judgment], bench: Benchmark, turns: list[TurnView]
) -> list[str]:
    """Why a sample deserves a look: unscored calls, order flips, missing or truncated audio, defects."""
    flags = [
        f"unscored ({j.order}): {j.error_kind or 'no score'}" for j in judgments if j.status == "unscored"
    ]
    by_order = {j.order: j for j in judgments if j.status == "scored"}
    if "AB" in by_order and "BA" in by_order:
        ab, ba = by_order["AB"].scores, by_order["BA"].scores
        flipped = [
            METRIC_ABBREV[m]
            for m in METRICS
            if m in ab and m in ba and (ab[m].test > ab[m].ref) != (ba[m].test > ba[m].ref)
        ]
        if flipped:
            flags.append("order-inconsistent: " + ", ".join(flipped))
    for t in turns:
        if t.agent.text is None:
            flags.append(f"turn {t.index + 1}: no answer")
        elif t.agent.missing:
            flags.append(f"turn {t.index + 1}: agent audio missing")
        if t.agent.measures.get("duration.seconds", 0.0) > JUDGE_CLIP_LIMIT_S:
            flags.append(f"turn {t.index + 1}: truncated for the judge (over {JUDGE_CLIP_LIMIT_S:.0f} s)")
        flags += [f"turn {t.index + 1}: agent audio {f.replace('_', ' ')}" for f in t.agent.flags]
    flags += [f"data defect: {d}" for d in bench.roles[sample.role].defects]
    return flags


def _run_info(run_dir: Path, problems: list[Problem]) -> dict[str, Any]:
    try:
        info = read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    except DataError as exc:
        problems.append(exc.problem)
        return {}
    return info if isinstance(info, dict) else {}


def collect_run(run_dir: Path, bench: Benchmark, link: Linker, run_id: str | None = None) -> RunView:
    """Everything the report and the viewer show about one run directory."""
    from speechrole.outputs import OutputTree, read_role_output
    from speechrole.results import read_any

    run_dir = Path(run_dir).absolute()
    problems: list[Problem] = []
    info = _run_info(run_dir, problems)
    tree = OutputTree(run_dir / "model_output", run_dir)
    outputs = {}
    for mode in Mode:
        for role in bench.roles:
            file = tree.json_file(mode, role)
            if file.is_file():
                try:
                    output, more = read_role_output(file)
                    outputs[(mode, role)] = output
                    problems += more
                except DataError as exc:
                    problems.append(exc.problem)
    judged: dict[str, list[Judgment]] = {}
    for system in read_any(run_dir.name, run_dir):
        for j in system.judgments:
            judged.setdefault(j.sample, []).append(j)
    measures, generations = _measures(run_dir), _generations(run_dir)
    samples = []
    for sample in bench.samples:
        output = outputs.get((sample.mode, sample.role))
        if output is None or sample.index not in output.dialogues:
            continue
        answers = output.dialogues[sample.index]
        turns = []
        for j, gold in enumerate(sample.turns):
            answer = answers[j] if j < len(answers) else None
            agent = _clip(
                answer.text if answer else None,
                run_dir,
                answer.audio_path if answer else None,
                link,
                problems,
            )
            reference = _clip(gold.reference_text, bench.root, gold.reference_audio, link, problems)
            for clip, side in ((agent, "agent"), (reference, "reference")):
                values, flags = measures.get((sample.key, j, side), ({}, []))
                clip.measures, clip.flags = dict(values), list(flags)
            made = generations.get((sample.key, j), {})
            turns.append(
                TurnView(
                    j,
                    _clip(gold.user_text, bench.root, gold.user_audio, link, problems),
                    reference,
                    agent,
                    heard=(made.get("intermediates") or {}).get("asr"),
                    latency=made.get("latency_s") or {},
                )
            )
        judgments = sorted(judged.get(sample.key, []), key=lambda j: j.order)
        role = bench.roles[sample.role]
        ratios, gaps = judge_means(judgments)
        samples.append(
            SampleView(
                key=sample.key,
                role=sample.role,
                role_name=role.name,
                mode=sample.mode.value,
                language=role.language.value,
                category=sample.category or "",
                system_prompt=sample.system_prompt,
                turns=turns,
                judgments=judgments,
                flags=sample_flags(sample, judgments, bench, turns),
                ratios=ratios,
                gaps=gaps,
            )
        )
    judge = info.get("judge") or {}
    return RunView(
        id=run_id or run_dir.name,
        name=str(info.get("name") or run_dir.name),
        path=run_dir,
        agent=str((info.get("agent") or {}).get("spec", "")),
        judge=f"{judge.get('model', '')} ({judge.get('protocol', '')})" if judge else "",
        samples=samples,
        problems=problems,
    )


def bench_of(runs: list[Path]) -> Benchmark:
    """The one benchmark the runs' run.json name (reports compare runs on the same benchmark)."""
    from speechrole.bench import load_benchmark
    from speechrole.score import recorded_benchmarks

    specs = recorded_benchmarks(runs)
    if len(specs) != 1:
        raise ValueError(
            "the runs name no benchmark in run.json; pass --bench"
            if not specs
            else f"the runs come from several benchmarks: {sorted(specs)}"
        )
    return load_benchmark(next(iter(specs)))[0]
