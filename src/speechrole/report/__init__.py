"""A self-contained HTML report of one or more runs: the score tables, then every sample with the user's,
the agent's and the reference's text and audio side by side, the judge's scores and reasons in each
order, and the sample's flags.

Every piece of text from models, data or judges reaches the page through Jinja2's autoescaping, so an
answer holding markup shows as text. Audio is linked relative to the report (or embedded on request).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from speechrole.fileio import read_json, resolve_inside, write_text_atomic
from speechrole.problems import DataError, Problem
from speechrole.schema import METRIC_ABBREV, METRICS, Benchmark, Judgment, Mode, Sample

#: Measures shown under each clip in the drill-down.
CLIP_MEASURES = ("speaker.similarity", "dnsmos.ovrl", "intelligibility.error_rate", "duration.seconds")


@dataclass
class Clip:
    text: str | None
    href: str | None  # relative to the report, or a data: URI; None when there is no audio
    missing: bool = False  # named but not found on disk
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
    category: str
    system_prompt: str
    turns: list[TurnView]
    judgments: list[Judgment]
    flags: list[str]


@dataclass
class RunView:
    name: str
    path: str
    agent: str
    judge: str
    samples: list[SampleView]
    problems: list[Problem]


class _Links:
    """Audio references from the report's folder: relative links, or data: URIs when embedding."""

    def __init__(self, report: Path, embed: bool) -> None:
        self.base, self.embed = report.absolute().parent, embed

    def __call__(self, path: Path | None) -> tuple[str | None, bool]:
        if path is None:
            return None, False
        if not path.is_file():
            return None, True
        if self.embed:
            return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode("ascii"), False
        return quote(Path(os.path.relpath(path.absolute(), self.base)).as_posix()), False


def _clip(text: str | None, root: Path, rel: str | None, links: _Links, problems: list[Problem]) -> Clip:
    if not rel:
        return Clip(text, None)
    try:
        href, missing = links(resolve_inside(root, rel))
    except DataError as exc:  # a path escaping its folder is never linked
        problems.append(exc.problem)
        return Clip(text, None, missing=True)
    return Clip(text, href, missing)


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
    path = run_dir / "generations.jsonl"
    if path.is_file():
        for raw in path.read_bytes().split(b"\n"):
            try:
                line = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(line, dict) and "sample" in line and "turn" in line:
                out[(str(line["sample"]), int(line["turn"]))] = line
    return out


def _sample_flags(
    sample: Sample, judgments: list[Judgment], bench: Benchmark, turns: list[TurnView]
) -> list[str]:
    flags = [
        f"unscored ({j.order}): {j.error_kind or j.error or 'no score'}"
        for j in judgments
        if j.status == "unscored"
    ]
    by_order = {j.order: j for j in judgments if j.status == "scored"}
    if "AB" in by_order and "BA" in by_order:
        flipped = [
            METRIC_ABBREV[m]
            for m in METRICS
            if m in by_order["AB"].scores
            and m in by_order["BA"].scores
            and (by_order["AB"].scores[m].test > by_order["AB"].scores[m].ref)
            != (by_order["BA"].scores[m].test > by_order["BA"].scores[m].ref)
        ]
        if flipped:
            flags.append("order-inconsistent: " + ", ".join(flipped))
    for t in turns:
        if t.agent.text is None:
            flags.append(f"turn {t.index + 1}: no answer")
        elif t.agent.missing:
            flags.append(f"turn {t.index + 1}: agent audio missing")
        flags += [f"turn {t.index + 1}: agent audio {f.replace('_', ' ')}" for f in t.agent.flags]
    flags += [f"data defect: {d}" for d in bench.roles[sample.role].defects]
    return flags


def collect_run(run_dir: Path, bench: Benchmark, links: _Links) -> RunView:
    """Everything the report shows about one run directory."""
    from speechrole.outputs import OutputTree, read_role_output
    from speechrole.results import read_any

    run_dir = Path(run_dir).absolute()
    problems: list[Problem] = []
    try:
        info = read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    except DataError as exc:
        problems.append(exc.problem)
        info = {}
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
                links,
                problems,
            )
            reference = _clip(gold.reference_text, bench.root, gold.reference_audio, links, problems)
            for clip, side in ((agent, "agent"), (reference, "reference")):
                clip.measures, flags = measures.get((sample.key, j, side), ({}, []))
                clip.flags = list(flags)
            made = generations.get((sample.key, j), {})
            turns.append(
                TurnView(
                    j,
                    _clip(gold.user_text, bench.root, gold.user_audio, links, problems),
                    reference,
                    agent,
                    heard=(made.get("intermediates") or {}).get("asr"),
                    latency=made.get("latency_s") or {},
                )
            )
        judgments = sorted(judged.get(sample.key, []), key=lambda j: j.order)
        role = bench.roles[sample.role]
        samples.append(
            SampleView(
                sample.key,
                sample.role,
                role.name,
                sample.mode.value,
                sample.category or "",
                sample.system_prompt,
                turns,
                judgments,
                _sample_flags(sample, judgments, bench, turns),
            )
        )
    judge = (info.get("judge") or {}) if isinstance(info, dict) else {}
    return RunView(
        name=str(info.get("name") or run_dir.name) if isinstance(info, dict) else run_dir.name,
        path=str(run_dir),
        agent=str((info.get("agent") or {}).get("spec", "")) if isinstance(info, dict) else "",
        judge=f"{judge.get('model', '')} ({judge.get('protocol', '')})" if judge else "",
        samples=samples,
        problems=problems,
    )


def _bench_of(runs: list[Path]) -> Benchmark:
    from speechrole.bench import load_benchmark
    from speechrole.score import recorded_benchmarks

    specs = recorded_benchmarks(runs)
    if len(specs) != 1:
        raise ValueError(
            "the runs name no benchmark in run.json"
            if not specs
            else f"the runs come from several benchmarks: {sorted(specs)}"
        )
    return load_benchmark(next(iter(specs)))[0]


def render_html(runs: list[RunView], tables: list[Any], title: str) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("speechrole.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v, digits=2: "–" if v is None else f"{v:.{digits}f}"
    return env.get_template("report.html.j2").render(
        title=title,
        runs=runs,
        tables=tables,
        metrics=METRICS,
        abbrev=METRIC_ABBREV,
        clip_measures=CLIP_MEASURES,
    )


def build_report(
    runs: list[Path],
    out: Path,
    *,
    bench: Benchmark | None = None,
    score: Any = None,
    embed_audio: bool = False,
) -> Path:
    """Write the report of `runs` to `out` (the score is computed when not given) and return its path."""
    from speechrole.score import load_systems, score_systems
    from speechrole.score.render import all_tables

    bench = bench or _bench_of(runs)
    if score is None:
        score = score_systems(load_systems(runs), bench=bench, by=("mode", "language", "role"))
    links = _Links(Path(out), embed_audio)
    views = [collect_run(run, bench, links) for run in runs]
    title = f"speechrole report: {', '.join(v.name for v in views)} on {bench.name}"
    write_text_atomic(Path(out), render_html(views, all_tables(score), title))
    return Path(out)


__all__ = ["build_report", "collect_run", "render_html"]
