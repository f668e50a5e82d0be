"""Scoring: the paper's per-metric mean of s_test/s_ref, with intervals, splits and comparisons."""

from __future__ import annotations

from pathlib import Path

from speechrole.results import SystemResults, discover_systems, read_any
from speechrole.score.aggregate import ScoreReport, Split, score_systems
from speechrole.score.stats import BootstrapSpec


def load_systems(paths: list[Path]) -> list[SystemResults]:
    """Every system found under the given paths; a name seen twice gets its path appended."""
    systems: list[SystemResults] = []
    seen: set[str] = set()
    for path in paths:
        for name, base in discover_systems(Path(path)):
            unique = name if name not in seen else f"{name} ({base})"
            seen.add(unique)
            systems.extend(read_any(unique, base))
    return systems


def recorded_benchmarks(paths: list[Path]) -> set[str]:
    """Benchmarks named in the `run.json` of the given run directories (to score them without --bench)."""
    from speechrole.fileio import read_json
    from speechrole.problems import DataError

    specs: set[str] = set()
    for path in paths:
        try:
            data = read_json(Path(path) / "run.json")
            specs.add(str(data["benchmark"]["spec"]))
        except (DataError, KeyError, TypeError):
            continue
    return specs


__all__ = ["BootstrapSpec", "ScoreReport", "Split", "load_systems", "recorded_benchmarks", "score_systems"]
