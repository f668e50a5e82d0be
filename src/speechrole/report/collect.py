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

from speechrole.fileio import resolve_inside
from speechrole.problems import DataError, Problem
from speechrole.results import SystemResults
from speechrole.run import Run
from speechrole.schema import METRIC_ABBREV, METRICS, Benchmark, Judgment, Sample
from speechrole.score.order import flipped
from speechrole.score.sample import SampleScore, sample_score

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
    score: SampleScore  # the sample's score (score.sample.sample_score): what the leaderboard averages

    @property
    def ratios(self) -> dict[str, float]:
        return self.score.ratio

    @property
    def gaps(self) -> dict[str, float]:
        return self.score.gap

    @property
    def overall(self) -> float | None:
        return self.score.overall


@dataclass
class RunView:
    id: str  # stable within one report or viewer (its folder, relative to the runs' parent)
    name: str
    path: Path
    agent: str
    judge: str
    samples: list[SampleView]
    problems: list[Problem]
    stale: dict[str, int] = field(default_factory=dict)  # judgments skipped as stale, by reason
    stale_measures: dict[str, int] = field(default_factory=dict)
    failures: int = 0  # samples the agent gave no usable answer for

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


def _measures(lines: list[dict[str, Any]]) -> dict[tuple[str, int, str], tuple[dict[str, float], list[str]]]:
    out: dict[tuple[str, int, str], tuple[dict[str, float], list[str]]] = {}
    for line in lines:
        values, flags = out.setdefault((line["sample"], int(line["turn"]), line["side"]), ({}, []))
        for name, value in (line.get("values") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[f"{line['metric']}.{name}"] = float(value)
        flags += [f for f in line.get("flags") or [] if f not in flags]
    return out


def sample_flags(
    sample: Sample,
    judgments: list[Judgment],
    bench: Benchmark,
    turns: list[TurnView],
    failure: str | None = None,
    stale: bool = False,
) -> list[str]:
    """Why a sample deserves a look: unscored calls, order flips, missing or truncated audio, defects."""
    flags = [
        f"unscored ({j.order}): {j.error_kind or 'no score'}" for j in judgments if j.status == "unscored"
    ]
    if failure:
        flags.append(f"agent failure (scores 0): {failure}")
    if stale:
        flags.append("stale judgment skipped: the inputs it was made from changed")
    by_order = {j.order: j for j in judgments if j.status == "scored"}
    if "AB" in by_order and "BA" in by_order:
        ab, ba = by_order["AB"].scores, by_order["BA"].scores
        flips = [METRIC_ABBREV[m] for m in METRICS if m in ab and m in ba and flipped(ab[m], ba[m])]
        if flips:  # the flip of `score.order.order_effects`: a tie is a side of its own
            flags.append("order-inconsistent: " + ", ".join(flips))
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


def collect_run(run: Run, system: SystemResults, link: Linker, run_id: str) -> RunView:
    """Everything the report and the viewer show about one run under one judge configuration."""
    bench = run.bench
    problems: list[Problem] = []
    judged: dict[str, list[Judgment]] = {}
    for j in system.judgments:
        judged.setdefault(j.sample, []).append(j)
    measures, generations = _measures(system.measures or []), run.generations
    stale = set(system.stale_samples)
    samples = []
    for sample in bench.samples:
        answers = run.answers(sample)
        if answers is None and sample.key not in system.failures:
            continue
        turns = []
        for j, gold in enumerate(sample.turns):
            answer = answers[j] if answers and j < len(answers) else None
            agent = _clip(
                answer.text if answer else None,
                run.tree.root,
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
        failure = system.failures.get(sample.key)
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
                flags=sample_flags(sample, judgments, bench, turns, failure, sample.key in stale),
                score=sample_score(judgments, failed=failure is not None),
            )
        )
    judge = run.info.get("judge") or {}
    label = system.judge.label if system.judge else ""
    return RunView(
        id=run_id,
        name=system.name,
        path=run.path,
        agent=run.agent_spec,
        judge=label or (f"{judge.get('model', '')} ({judge.get('protocol', '')})" if judge else ""),
        samples=samples,
        problems=[*run.problems, *problems],
        stale=dict(system.stale),
        stale_measures=dict(system.stale_measures),
        failures=len(system.failures),
    )
