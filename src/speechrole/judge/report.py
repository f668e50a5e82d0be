"""What a judge run leaves behind besides its log: the official `test_results/` layout and `summary.json`.

Both are rebuilt from `judgments.jsonl` at the end of every run, so they never disagree with it, and
`summary.json` holds nothing that depends on how the run went (no timings, no cache hits): a run that
was killed and resumed writes the same summary as one that was not.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from speechrole.fileio import write_json_atomic, write_text_atomic
from speechrole.results import AVERAGE_MARK, SystemResults
from speechrole.schema import METRICS, Benchmark, Judgment, Mode
from speechrole.score.aggregate import score_systems


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def _entry(index: int, judgments: list[Judgment]) -> dict[str, Any]:
    """One official result entry; both orders of the swap protocol are averaged and both reasons kept."""
    entry: dict[str, Any] = {"idx": index}
    unscored: dict[str, str] = {}
    for metric in METRICS:
        found = [j for j in judgments if j.status == "scored" and metric in j.scores]
        if not found:
            reasons = sorted(
                {j.error or j.problems.get(metric, "") for j in judgments if metric in j.metrics}
            )
            unscored[metric] = "; ".join(r for r in reasons if r) or "not judged"
            continue
        tests = [j.scores[metric].test for j in found]
        refs = [j.scores[metric].ref for j in found]
        if len(found) == 1:
            reason = found[0].scores[metric].reason
        else:
            labels = {"AB": "tested agent heard first", "BA": "reference heard first"}
            reason = "\n\n".join(f"[{labels[j.order]}] {j.scores[metric].reason}" for j in found)
        entry[f"{metric}_results"] = {
            "reason": reason,
            "score": [_number(sum(tests) / len(tests)), _number(sum(refs) / len(refs))],
        }
    if unscored:
        entry["speechrole_unscored"] = unscored  # never a score: the metric key is left out
    if len({j.order for j in judgments if j.status == "scored"}) > 1:
        entry[AVERAGE_MARK] = sorted({j.order for j in judgments if j.status == "scored"})
    return entry


def export_test_results(bench: Benchmark, judgments: list[Judgment], results_dir: Path) -> list[Path]:
    """Write `{results_dir}/{mode}/{role}.json` for every role file that has judgments, by list position."""
    by_sample: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        by_sample[j.sample].append(j)
    files: set[tuple[Mode, str]] = {(s.mode, s.role) for s in bench.samples if s.key in by_sample}
    written = []
    for mode, role in sorted(files):
        samples = {s.index: s for s in bench.samples_of(role, mode)}
        entries = []
        for index in range(max(samples) + 1):
            if index in samples and samples[index].key in by_sample:
                entries.append(_entry(index, by_sample[samples[index].key]))
            else:
                entries.append({"idx": index, "speechrole_unscored": "not judged"})
        path = results_dir / mode.value / f"{role}.json"
        # One sample per line: readable, and written by the fast (C) JSON encoder, unlike indent=4.
        lines = ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries)
        write_text_atomic(path, f"[\n{lines}\n]\n")
        written.append(path)
    return written


def write_summary(
    path: Path, system: SystemResults | None, bench: Benchmark, judge: dict[str, Any], planned: int
) -> dict[str, Any]:
    """Scores with intervals (`score_systems`, as `speechrole score` computes them), the order effects of a
    two-order protocol (`score.order.order_effects`, via the same scores; null otherwise), call counts by
    outcome, stale judgments, usage and cost: a deterministic function of the run's files."""
    system = system or SystemResults(name=path.parent.name, source=path.parent)
    judgments = system.judgments
    scores = score_systems([system], bench=bench).systems[0]
    usage: dict[str, int] = defaultdict(int)
    unscored: dict[str, int] = defaultdict(int)
    for j in judgments:
        for key, value in j.usage.items():
            usage[key] += value
        if j.status == "unscored":
            unscored[j.error_kind or "other"] += 1
    costs = [j.cost_usd for j in judgments if j.cost_usd is not None]
    scored = sum(j.status == "scored" for j in judgments)
    summary = {
        "schema": "speechrole.judge-summary/2",
        "system": system.name,
        "benchmark": {
            "name": bench.name,
            "content_hash": bench.content_hash,
            "reference_set": bench.reference_set,
        },
        "judge": judge,
        "calls": {
            "planned": planned,
            "scored": scored,
            "unscored": len(judgments) - scored,
            "stale": sum(system.stale.values()),
            "not_judged": max(0, planned - len(judgments)),
        },
        "unscored_by_kind": dict(sorted(unscored.items())),
        "usage": dict(sorted(usage.items())),
        "cost_usd": round(sum(costs), 6) if costs else None,
        "order_effects": scores.order_effects.to_dict() if scores.order_effects else None,
        "scores": scores.to_dict(),
    }
    write_json_atomic(path, summary)
    return summary
