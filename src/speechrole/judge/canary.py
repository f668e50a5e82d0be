"""Drift canaries: a few fixed comparisons the judge is asked again before a run spends its budget.

A judge behind an unchanged model name can change (a provider update, a new default). The canary set is
chosen once per benchmark (by hash of its content, so every user of the same benchmark gets the same
set): for each canary sample the judge compares the reference with itself (expect a tie) or with another
role's reference answer (expect a clear loss), so the answers have range. The first time a judge
configuration (model, endpoint, protocol, version with rubric or released-script hash, sampling) asks
them, its answers are stored beside the answer cache; each later `speechrole judge --canary` asks them
again, live (never from the cache), and stops before judging anything else if, on any metric, the
scores moved by more than the threshold (mean absolute change in points).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechrole.fileio import read_json, write_json_atomic
from speechrole.judge.cache import default_cache_path
from speechrole.problems import DataError
from speechrole.schema import METRICS, Benchmark, Judgment, Sample

if TYPE_CHECKING:
    from speechrole.judge.runner import JudgeRun

CANARIES = 4
THRESHOLD = 0.5  # points, mean absolute change per metric
FILENAME = "canary.jsonl"


@dataclass(frozen=True)
class CanaryDrift:
    metric: str
    n: int  # canary answers compared (each gives a test and a reference score)
    shift_test: float  # mean change of the tested side's score, in points
    shift_ref: float
    mean_abs: float  # mean |change| over both sides
    drifted: bool


@dataclass
class CanaryResult:
    judge: dict[str, str]
    store: str
    recorded: bool  # the first time: the answers became the stored ones
    drift: list[CanaryDrift] = field(default_factory=list)
    unscored: int = 0
    spent_usd: float = 0.0
    threshold: float = THRESHOLD

    @property
    def drifted(self) -> bool:
        return any(d.drifted for d in self.drift)

    def record(self) -> dict[str, Any]:
        return {
            "kind": "canary",
            "judge": self.judge,
            "store": self.store,
            "recorded": self.recorded,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "unscored": self.unscored,
            "drift": [dataclasses.asdict(d) for d in self.drift],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


def canary_samples(bench: Benchmark, n: int = CANARIES) -> list[Sample]:
    """The benchmark's canaries: the first `n` samples by the hash of (content hash, sample key)."""

    def rank(s: Sample) -> str:
        return hashlib.sha256(f"{bench.content_hash}/{s.key}".encode()).hexdigest()

    usable = [s for s in bench.samples if all(t.reference_audio for t in s.turns)]
    return sorted(usable, key=rank)[:n]


def _donor(bench: Benchmark, sample: Sample, position: int) -> Sample:
    """Whose reference the tested side plays: itself (even positions) or another role's (odd)."""
    if position % 2 == 0:
        return sample
    others = [s for s in bench.samples if s.role != sample.role and s.mode == sample.mode]
    return (
        sorted(others, key=lambda s: hashlib.sha256(f"{sample.key}/{s.key}".encode()).hexdigest())[0]
        if others
        else sample
    )


def write_canary_outputs(bench: Benchmark, canaries: list[Sample], folder: Path) -> None:
    """The canaries' tested side, in the run layout: copies of reference clips."""
    files: dict[tuple[str, str], dict[str, Any]] = {}
    for position, sample in enumerate(canaries):
        donor = _donor(bench, sample, position)
        turns = []
        for j, turn in enumerate(sample.turns):
            source = donor.turns[j % len(donor.turns)]
            rel = f"model_output/{sample.mode.value}_result/audio/{sample.role}/{sample.role}_{sample.index}_{j}.wav"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bench.root / (source.reference_audio or ""), folder / rel)
            turns.append(
                {
                    "turn": j,
                    "user_input": {"text": turn.user_text},
                    "model_output": {"text": source.reference_text, "audio_path": rel},
                }
            )
        files.setdefault((sample.mode.value, sample.role), {"role": sample.role})[
            f"dialogue_{sample.index}"
        ] = turns
    for (mode, role), payload in files.items():
        write_json_atomic(folder / "model_output" / f"{mode}_result" / "json" / f"{role}.json", payload)


def _scores(judgments: list[Judgment]) -> dict[str, dict[str, list[int]]]:
    """task id -> metric -> [test, ref], from the scored judgments."""
    out: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for j in judgments:
        if j.status == "scored":
            for metric, s in j.scores.items():
                out[j.task][metric] = [s.test, s.ref]
    return dict(out)


def compare(
    stored: dict[str, dict[str, list[int]]], now: dict[str, dict[str, list[int]]], threshold: float
) -> list[CanaryDrift]:
    """Per metric, the mean change of both sides' scores on the canary answers present in both."""
    rows = []
    for metric in METRICS:
        pairs = [
            (stored[t][metric], now[t][metric])
            for t in stored
            if metric in stored[t] and metric in now.get(t, {})
        ]
        if not pairs:
            continue
        d_test = [b[0] - a[0] for a, b in pairs]
        d_ref = [b[1] - a[1] for a, b in pairs]
        mean_abs = (sum(map(abs, d_test)) + sum(map(abs, d_ref))) / (2 * len(pairs))
        rows.append(
            CanaryDrift(
                metric,
                len(pairs),
                round(sum(d_test) / len(pairs), 6),
                round(sum(d_ref) / len(pairs), 6),
                round(mean_abs, 6),
                mean_abs > threshold,
            )
        )
    return rows


def store_path(run: JudgeRun) -> Path:
    """Where this benchmark's canary answers under this judge configuration are kept."""
    c = run.config
    identity = json.dumps(
        {
            "model": c.model,
            "base_url": c.base_url,
            "protocol": run.protocol.name,
            "version": run.version,
            "sampling": run.sampling,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    root = (c.cache_path or default_cache_path()).parent / "canaries"
    return root / run.bench.content_hash[:16] / f"{digest}.json"


async def check_canaries(run: JudgeRun, threshold: float = THRESHOLD, n: int = CANARIES) -> CanaryResult:
    """Ask the canaries again (live) under `run`'s configuration and compare with the stored answers."""
    from speechrole.judge.config import JudgeTarget
    from speechrole.judge.log import read_judgments
    from speechrole.judge.runner import JudgeRun

    canaries = canary_samples(run.bench, n)
    if not canaries:
        raise DataError(run.bench.root, "", "no sample with reference audio to use as a canary")
    path = store_path(run)
    label = {"model": run.config.model, "protocol": run.protocol.name, "version": run.version}
    with tempfile.TemporaryDirectory(prefix="speechrole-canary-") as tmp:
        folder = Path(tmp)
        write_canary_outputs(run.bench, canaries, folder)
        config = dataclasses.replace(
            run.config,
            samples=tuple(s.key for s in canaries),
            use_cache=False,
            canary=False,
            limit=None,
            roles=None,
            modes=None,
        )
        outcome = await JudgeRun(run.bench, JudgeTarget.for_run(folder), config).run()
        judgments, _ = read_judgments(folder / "judgments.jsonl")
    now = _scores(judgments)
    result = CanaryResult(
        label,
        str(path),
        recorded=False,
        unscored=outcome.unscored,
        spent_usd=outcome.spent_usd,
        threshold=threshold,
    )
    if path.is_file():
        stored = read_json(path).get("scores", {})
        result.drift = compare(stored, now, threshold)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            path,
            {
                "judge": label,
                "benchmark": run.bench.content_hash,
                "canaries": [s.key for s in canaries],
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "scores": now,
            },
        )
        result.recorded = True
    return result


__all__ = [
    "CANARIES",
    "FILENAME",
    "THRESHOLD",
    "CanaryDrift",
    "CanaryResult",
    "canary_samples",
    "check_canaries",
    "compare",
]
