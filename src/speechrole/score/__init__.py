"""Scoring: the paper's per-metric mean of s_test/s_ref, with intervals, splits and comparisons.

`load_systems` reads (run directories through `speechrole.run.Run`, official result trees directly);
everything else in this package is pure functions over tables.
"""

from __future__ import annotations

from pathlib import Path

from speechrole.results import SystemResults, discover_systems, read_any
from speechrole.schema import Benchmark
from speechrole.score.aggregate import Failures, ScoreReport, score_systems
from speechrole.score.order import OrderEffects, order_effects
from speechrole.score.stats import BootstrapSpec
from speechrole.score.table import Split


def load_systems(paths: list[Path], bench: Benchmark | None = None) -> list[SystemResults]:
    """Every system found under the given paths; a name seen twice gets its path appended. Runs are read
    against `bench` when given, else against the benchmark each records."""
    systems: list[SystemResults] = []
    seen: set[str] = set()
    for path in paths:
        for name, base in discover_systems(Path(path)):
            unique = name if name not in seen else f"{name} ({base})"
            seen.add(unique)
            systems.extend(read_any(unique, base, bench))
    return systems


__all__ = [
    "BootstrapSpec",
    "Failures",
    "OrderEffects",
    "ScoreReport",
    "Split",
    "load_systems",
    "order_effects",
    "score_systems",
]
