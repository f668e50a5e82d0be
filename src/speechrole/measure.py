"""Measure a run: objective metrics for every turn, on the agent's audio and on the reference audio.

Each clip is decoded and resampled once and shared by all metrics; models load once; metrics run two
at a time (their heavy work is in ONNX Runtime, CTranslate2 and torch, outside the GIL). Results go to
`R/measures.jsonl`, one line per clip and metric, appended and flushed as they come; a value already
measured for the same audio bytes (and the same role voice, for speaker similarity) is reused, so a
rerun measures nothing twice. A clip that cannot be measured gets an error with its reason.
"""

from __future__ import annotations

import json
import threading
import time
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechrole.agents.cascaded import speakable
from speechrole.audio import file_sha256
from speechrole.fileio import read_jsonl, resolve_inside
from speechrole.metrics import METRICS, load_builtin
from speechrole.metrics.base import Clip, Metric, MetricError, MetricValues, decode_clip
from speechrole.problems import DataError, Problem
from speechrole.run import Run, text_sha256
from speechrole.schema import Benchmark, Mode, Sample

DEFAULT_METRICS = ("speaker", "dnsmos", "intelligibility", "prosody", "duration")
BATCH = 8


@dataclass(frozen=True)
class Item:
    """One clip to measure: which sample, turn and side it is."""

    sample: str
    turn: int
    side: str  # "agent" or "reference"
    path: Path
    shown: str  # the path as the data names it
    role: str
    text: str


class Reporter(typing.Protocol):
    def start(self, clips: int, metrics: int) -> None: ...

    def advance(self, outcome: str) -> None: ...


class _Silent:
    def start(self, clips: int, metrics: int) -> None:
        pass

    def advance(self, outcome: str) -> None:
        pass


@dataclass
class MeasureOutcome:
    clips: int = 0
    measured: int = 0  # clip x metric values computed now
    reused: int = 0  # already in measures.jsonl (same bytes)
    errors: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)


def parse_metric_specs(text: str) -> tuple[str, ...]:
    """`speaker,dnsmos:stride=1,intelligibility:asr=whisper:/m,beam_size=5` -> one spec per metric (a
    `key=value` without a colon continues the previous metric's options)."""
    specs: list[str] = []
    for token in filter(None, (t.strip() for t in text.split(","))):
        if specs and "=" in token and ":" not in token.split("=", 1)[0] and ":" not in token:
            specs[-1] += "," + token
        else:
            specs.append(token)
    return tuple(specs)


def create_metrics(specs: tuple[str, ...]) -> list[Metric]:
    """Metrics from specs like `dnsmos`, `dnsmos:stride=1`, `speaker:model=/m/campplus.onnx`."""
    from speechrole.agents.base import parse_spec

    load_builtin()
    made = []
    for spec in specs:
        name, options = parse_spec(spec)
        made.append(METRICS.create(name, **options))
    return made


def _items(run: Run, samples: list[Sample]) -> tuple[list[Item], list[Problem]]:
    """Every clip of the samples, agent and reference side, as the run reads it."""
    bench = run.bench
    items: list[Item] = []
    problems: list[Problem] = []
    for s in samples:
        turns = run.answers(s) or []
        for j, gold in enumerate(s.turns):
            if gold.reference_audio:
                try:
                    where = f"[{s.index}].dialogue[{j}].{bench.reference_set}"
                    path = resolve_inside(bench.root, gold.reference_audio, file=s.source, field=where)
                    items.append(
                        Item(s.key, j, "reference", path, gold.reference_audio, s.role, gold.reference_text)
                    )
                except DataError as exc:
                    problems.append(exc.problem)
            if j < len(turns) and turns[j].audio_path:
                try:
                    where = f"dialogue_{s.index}[{j}].model_output.audio_path"
                    file = run.tree.json_file(s.mode, s.role)
                    path = resolve_inside(run.tree.root, turns[j].audio_path or "", file=file, field=where)
                    text = speakable(turns[j].text or "")
                    items.append(Item(s.key, j, "agent", path, turns[j].audio_path or "", s.role, text))
                except DataError as exc:
                    problems.append(exc.problem)
    problems += run.problems
    return items, problems


class Measurement:
    def __init__(
        self,
        bench: Benchmark,
        run_dir: Path,
        metrics: list[Metric],
        reporter: Reporter | None = None,
        *,
        roles: tuple[str, ...] | None = None,
        modes: tuple[Mode, ...] | None = None,
        limit: int | None = None,
    ):
        self.bench, self.run_dir, self.metrics = bench, Path(run_dir), metrics
        chosen = [
            s
            for s in bench.samples
            if (roles is None or s.role in roles) and (modes is None or s.mode in modes)
        ]
        self.samples = chosen[:limit] if limit is not None else chosen
        self.reporter = reporter or _Silent()
        self.outcome = MeasureOutcome()
        self._lock = threading.Lock()
        self._voices: dict[str, Clip | None] = {}

    def _voice(self, role_id: str) -> Clip | None:
        """The role's reference voice clip, decoded once."""
        if role_id not in self._voices:
            role = self.bench.roles[role_id]
            clip = None
            if role.reference_audio and Path(role.reference_audio).is_file():
                path = Path(role.reference_audio)
                try:
                    clip = decode_clip(
                        path, file_sha256(path), role.language, role.reference_transcript or ""
                    )
                except DataError as exc:
                    self.outcome.problems.append(exc.problem)
            self._voices[role_id] = clip
        return self._voices[role_id]

    def _cache_key(self, metric: Metric, clip: Clip, role: str) -> str:
        voice = self._voice(role) if metric.needs_reference_clip else None
        text = f"|text:{text_sha256(clip.text)[:16]}" if metric.reads_text else ""
        return f"{metric.key}|{clip.sha256}|{voice.sha256 if voice else ''}{text}"

    def run(self) -> MeasureOutcome:
        started = time.perf_counter()
        o = self.outcome
        items, problems = _items(Run.open(self.run_dir, bench=self.bench), self.samples)
        o.problems += problems
        log_path = self.run_dir / "measures.jsonl"
        previous, problems = read_measures(log_path)
        o.problems += problems
        self._known = {line["cache_key"]: line for line in previous}  # measured before, by content
        self._done = {(line["sample"], line["turn"], line["side"], line["cache_key"]) for line in previous}
        o.clips = len(items)
        self.reporter.start(len(items), len(self.metrics))
        with log_path.open("a", encoding="utf-8") as self._log, ThreadPoolExecutor(2, "measure") as pool:
            for start in range(0, len(items), BATCH):
                batch = items[start : start + BATCH]
                clips = [self._decode(item) for item in batch]
                jobs = []
                for metric in self.metrics:
                    todo = self._pending(metric, batch, clips)
                    if todo:  # distinct clips only: the same bytes are measured once
                        unique = [waiting[0][1] for waiting in todo.values()]
                        jobs.append((metric, todo, pool.submit(_safe_measure, metric, unique)))
                for metric, todo, future in jobs:
                    for (key, waiting), result in zip(todo.items(), future.result(), strict=True):
                        self._known[key] = {
                            "values": None if isinstance(result, MetricError) else result,
                            "error": result.reason if isinstance(result, MetricError) else None,
                        }
                        o.measured += 1
                        o.errors += isinstance(result, MetricError)
                        for n, (item, clip) in enumerate(waiting):
                            self._write(item, clip.sha256, metric, key, result, clip.flags, clip.text)
                            o.reused += n > 0
                for _ in batch:
                    self.reporter.advance("clip")
        o.seconds = time.perf_counter() - started
        return o

    def _decode(self, item: Item) -> Clip | None:
        """The clip, decoded once for all metrics; an unreadable one is recorded for every metric."""
        sha = ""
        try:
            sha = file_sha256(item.path)
            clip = decode_clip(item.path, sha, self.bench.roles[item.role].language, item.text)
        except (DataError, OSError) as exc:
            reason = exc.problem.describe() if isinstance(exc, DataError) else str(exc)
            for metric in self.metrics:
                key = f"{metric.key}|unreadable|{sha or item.shown}"
                if (item.sample, item.turn, item.side, key) not in self._done:
                    self._write(item, sha, metric, key, MetricError(f"unreadable audio: {reason}"), ())
                    self.outcome.errors += 1
            return None
        clip.reference = self._voice(item.role)
        self.outcome.audio_seconds += clip.duration_s
        return clip

    def _pending(
        self, metric: Metric, batch: list[Item], clips: list[Clip | None]
    ) -> dict[str, list[tuple[Item, Clip]]]:
        """Clips this metric still has to measure, grouped by cache key; the rest is reused or done."""
        todo: dict[str, list[tuple[Item, Clip]]] = {}
        for item, clip in zip(batch, clips, strict=True):
            if clip is None:
                continue
            key = self._cache_key(metric, clip, item.role)
            if (item.sample, item.turn, item.side, key) in self._done:
                self.outcome.reused += 1
            elif key in self._known:  # the same audio measured before (another sample, an earlier run)
                old = self._known[key]
                self._write(
                    item,
                    clip.sha256,
                    metric,
                    key,
                    MetricError(old["error"]) if old["error"] else old["values"],
                    clip.flags,
                    clip.text,
                )
                self.outcome.reused += 1
            else:
                todo.setdefault(key, []).append((item, clip))
        return todo

    def _write(
        self,
        item: Item,
        sha: str,
        metric: Metric,
        key: str,
        result: MetricValues | MetricError,
        flags: tuple[str, ...],
        text: str = "",
    ) -> None:
        line = {
            "sample": item.sample,
            "turn": item.turn,
            "side": item.side,
            "role": item.role,
            "clip": item.shown,
            "sha256": sha,
            "metric": metric.name,
            "version": metric.version,
            "cache_key": key,
            "values": result if not isinstance(result, MetricError) else None,
            "error": result.reason if isinstance(result, MetricError) else None,
            "flags": list(flags),
        }
        if metric.reads_text:  # the value holds only while the text is the one measured against
            line["text_sha256"] = text_sha256(text)
        with self._lock:
            self._log.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._log.flush()
        self._done.add((item.sample, item.turn, item.side, key))


def _safe_measure(metric: Metric, clips: list[Clip]) -> list[MetricValues | MetricError]:
    """A metric's batch; if it fails, clip by clip, so one bad clip cannot take the others down."""
    try:
        return metric.measure(clips)
    except Exception:
        out: list[MetricValues | MetricError] = []
        for clip in clips:
            try:
                out += metric.measure([clip])
            except Exception as exc:
                out.append(MetricError(f"{metric.name} failed: {type(exc).__name__}: {exc}"))
        return out


def read_measures(path: Path) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Lines of measures.jsonl; a torn or invalid line is skipped with a problem."""
    lines: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for n, parsed, data in read_jsonl(path):
        if parsed and isinstance(data, dict) and "cache_key" in data:
            lines.append(data)
        else:
            problems.append(Problem(str(path), f"line {n}", "incomplete or invalid line; ignored", "warning"))
    return lines, problems
