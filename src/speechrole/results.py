"""Judge results in the official layout: `{base}/{single,multi}/{role}.json`, one entry per sample.

Entries are matched to samples by their `idx` where a file's `idx` values are unique non-negative
integers (so a shortened file cannot shift its entries onto the wrong samples), otherwise by list
position, and the file is flagged (the earlier released judge wrote `idx` 0 in every entry).
Every variant in the released files is read:
- the JSON protocol (v2): `{Metric}_results: {"reason", "score": [s_test, s_ref]}`;
- the free-text protocol (v1): the same keys, the reason ending in `[Scores]: (a, b)` (used when `score`
  is absent; a disagreement between the two is reported);
- lists of one-element lists (per-sample runs concatenated).
A metric that is missing or holds a 0, a string or an out-of-range score is unscored, with its reason;
it is never turned into a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechrole.fileio import read_json
from speechrole.problems import DataError, Problem
from speechrole.schema import METRICS, SCORE_MAX, SCORE_MIN, Judgment, MetricScore, Mode, sample_key

if TYPE_CHECKING:
    from speechrole.run import JudgeKey

_SCORES_IN_TEXT = re.compile(r"\[Scores\]\s*:?\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)")

#: Key of an exported entry whose scores average several judgments (both orders of the swap protocol).
AVERAGE_MARK = "speechrole_average_of"

PROTOCOL_V1 = "official/v1"  # free text, one call per metric (the first released judge)
PROTOCOL_V2 = "official/v2"  # JSON, one call per sample (the later released judge)


@dataclass
class SystemResults:
    """One system under one judge configuration: its current judgments (the latest per task), what could
    not be read, and, for a run directory, its agent failures, what was stale, and its current measures."""

    name: str
    source: Path
    judgments: list[Judgment] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    protocol: str = ""
    judge_model: str = ""
    judge: JudgeKey | None = None
    failures: dict[str, str] = field(default_factory=dict)  # sample -> why the agent gave no usable answer
    stale: dict[str, int] = field(default_factory=dict)  # reason -> stale judgments skipped
    stale_samples: list[str] = field(default_factory=list)
    measures: list[dict[str, Any]] | None = None  # current lines of measures.jsonl
    stale_measures: dict[str, int] = field(default_factory=dict)
    latencies: dict[tuple[str, int], dict[str, float]] | None = None
    checks: dict[str, list[dict[str, Any]]] | None = None  # probes, canaries, agreement (Run.checks)


# Kinds of unusable metric entries, counted separately in score flags. Each reason text starts with
# the phrase its kind is recognised by (see `problem_kind`).
KIND_PHRASES: dict[str, str] = {
    "missing": "metric missing",
    "zero": "score 0",
    "out_of_range": "out of range:",
    "not_integer": "not an integer:",
    "no_score": "no score",
    "malformed": "malformed:",
}


def problem_kind(reason: str) -> str:
    return next((kind for kind, phrase in KIND_PHRASES.items() if reason.startswith(phrase)), "other")


def _check_score(value: Any, halves: bool = False) -> str | None:
    """Why a score value is unusable, or None if it is valid: an integer 1..10 (or a half, when allowed)."""
    step = 2 if halves else 1
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value * step).is_integer():
        return f"not an integer: score {value!r}" + (" is a string" if isinstance(value, str) else "")
    if value == 0:
        return "score 0 (the official parser's default for a missing score)"
    if not SCORE_MIN <= value <= SCORE_MAX:
        return f"out of range: score {value!r} outside {SCORE_MIN}..{SCORE_MAX}"
    return None


def _text_scores(reason: str) -> tuple[Any, Any] | None:
    found = _SCORES_IN_TEXT.findall(reason)
    if not found:
        return None
    a, b = found[-1]

    def number(s: str) -> Any:
        try:
            return int(s)
        except ValueError:
            return s

    return number(a), number(b)


def parse_metric(raw: Any, *, halves: bool = False) -> tuple[MetricScore | None, str | None, str | None]:
    """(score, problem, warning) for one `{Metric}_results` value; `halves` admits x.5 scores (averages
    of both orders, in entries exported by `speechrole judge` under the swap protocol)."""
    if not isinstance(raw, dict):
        return None, f"malformed: expected an object with reason and score, got {type(raw).__name__}", None
    reason = raw.get("reason") if isinstance(raw.get("reason"), str) else ""
    pair: Any = raw.get("score")
    if pair is None and ("score_a" in raw or "score_b" in raw):
        pair = (raw.get("score_a"), raw.get("score_b"))
    from_text = _text_scores(reason)
    warning = None
    if pair is None:
        if from_text is None:
            return None, "no score (neither a score field nor '[Scores]: (a, b)' in the reason)", None
        pair = from_text
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        return None, f"malformed: score {pair!r} is not a pair [test, reference]", None
    if from_text is not None and tuple(pair) != from_text:
        warning = (
            f"score {list(pair)} disagrees with the reason's [Scores] {from_text}; the score field is used"
        )
    for value in pair:
        why = _check_score(value, halves)
        if why:
            return None, why, warning
    return MetricScore(test=pair[0], ref=pair[1], reason=reason), None, warning


def _flatten(data: list[Any]) -> list[Any]:
    """Lists of one-element lists -> flat list (by position)."""
    out: list[Any] = []
    for entry in data:
        if isinstance(entry, list):
            out.extend(entry if entry else [None])
        else:
            out.append(entry)
    return out


def entry_indices(entries: list[Any]) -> tuple[list[int], str | None]:
    """The sample index of each entry: its `idx` where every entry has a unique non-negative integer
    `idx`, else its position; with a note when the file is flagged (positions used, or entries not at
    their `idx`)."""
    raw = [e.get("idx") if isinstance(e, dict) else None for e in entries]
    usable = all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in raw)
    if usable and len(set(raw)) == len(raw):
        moved = sum(i != n for n, i in enumerate(raw))
        note = f"{moved} entries are not at their idx position; matched by idx" if moved else None
        return raw, note  # type: ignore[return-value]
    if not entries:
        return [], None
    why = "repeat" if usable else "are missing or not non-negative integers"
    return list(range(len(entries))), f"idx values {why}; entries matched by list position"


def read_result_file(
    file: Path, mode: Mode, role: str, protocol: str = ""
) -> tuple[list[Judgment], list[Problem]]:
    """Judgments of one role file, by list position. A file that cannot be parsed yields one problem."""
    data = read_json(file)
    if not isinstance(data, list):
        raise DataError(file, "", "expected a list with one entry per sample")
    judgments: list[Judgment] = []
    problems: list[Problem] = []
    entries = _flatten(data)
    indices, note = entry_indices(entries)
    if note:
        problems.append(Problem(str(file), "idx", note, "warning"))
    for index, entry in zip(indices, entries, strict=True):
        key = sample_key(mode, role, index)
        if not isinstance(entry, dict):
            reason = "malformed: entry is not an object"
            problems.append(Problem(str(file), f"[{index}]", reason))
            judgments.append(
                Judgment(sample=key, status="unscored", error=reason, source=str(file), protocol=protocol)
            )
            continue
        scores: dict[str, MetricScore] = {}
        metric_problems: dict[str, str] = {}
        for metric in METRICS:
            name = f"{metric}_results"
            raw = entry.get(name, entry.get(metric))
            if raw is None:
                metric_problems[metric] = "metric missing"
            else:
                score, why, warning = parse_metric(raw, halves=AVERAGE_MARK in entry)
                if warning:
                    problems.append(Problem(str(file), f"[{index}].{name}", warning, "warning"))
                if score is not None:
                    scores[metric] = score
                else:
                    metric_problems[metric] = why or "unreadable"
            if metric in metric_problems:
                problems.append(Problem(str(file), f"[{index}].{name}", metric_problems[metric]))
        judgments.append(
            Judgment(
                sample=key,
                status="scored" if scores else "unscored",
                scores=scores,
                problems=metric_problems,
                error=None if scores else "no metric could be read",
                source=str(file),
                protocol=protocol,
            )
        )
    return judgments, problems


def infer_protocol(files: list[Path]) -> str:
    """v1 judges wrote free text ending in `[Scores]: (a, b)`; v2 wrote JSON reasons without it."""
    for file in files:
        try:
            if "[Scores]" in file.read_text(encoding="utf-8"):
                return PROTOCOL_V1
        except (OSError, UnicodeDecodeError):
            continue
    return PROTOCOL_V2


def read_system(base: Path, name: str, protocol: str = "", judge_model: str = "") -> SystemResults:
    """Read `{base}/{single,multi}/*.json`. Unreadable files are problems; everything else is scored."""
    files = [(mode, f) for mode in Mode for f in sorted((base / mode.value).glob("*.json"))]
    protocol = protocol or infer_protocol([f for _, f in files])
    system = SystemResults(name=name, source=base, protocol=protocol, judge_model=judge_model)
    for mode, file in files:
        try:
            judgments, problems = read_result_file(file, mode, file.stem, protocol)
        except DataError as exc:
            system.problems.append(exc.problem)
            continue
        system.judgments += judgments
        system.problems += problems
    return system


def read_any(name: str, path: Path, bench: Any = None) -> list[SystemResults]:
    """A run directory (through `speechrole.run.Run`: one system per judge configuration, current
    judgments only), or a results folder in the official layout."""
    from speechrole.run import Run

    if Run.is_run(path):
        return Run.open(path, bench=bench).systems(name)
    if _is_system_dir(path):
        return [read_system(path, name)]
    return [SystemResults(name=name, source=path)]


def _is_system_dir(path: Path) -> bool:
    return any((path / m.value).is_dir() and any((path / m.value).glob("*.json")) for m in Mode)


def discover_systems(path: Path) -> list[tuple[str, Path]]:
    """(system name, results base) pairs found at `path`.

    Accepts a run directory (named by `run.json`), one system's folder (`{single,multi}/`), a
    `test_results/` folder of several systems, or a tree holding one.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "", "results directory not found")
    from speechrole.run import Run

    if Run.is_run(path):
        return [(Run.open(path).name, path)]
    if _is_system_dir(path):
        return [(path.name, path)]
    for folder in (path / "test_results", path):
        systems = (
            [(d.name, d) for d in sorted(folder.iterdir()) if d.is_dir() and _is_system_dir(d)]
            if folder.is_dir()
            else []
        )
        if systems:
            return systems
    raise DataError(path, "", "no judge results found ({single,multi}/{role}.json or test_results/...)")
