"""Benchmark sources: an official SpeechRole-Eval tree on disk (more sources register here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from speechrole.bench.official import load_official
from speechrole.problems import DataError, Problem
from speechrole.schema import Benchmark

Loader = Callable[..., tuple[Benchmark, list[Problem]]]

#: Named benchmarks (e.g. the bundled `mini`) register a loader here.
NAMED: dict[str, Loader] = {}


def load_benchmark(spec: str | Path, **options: object) -> tuple[Benchmark, list[Problem]]:
    """Load a benchmark from a directory in the official layout, or by registered name.

    Returns the benchmark and the problems met while reading it (bad files and samples are left
    out and reported; everything else loads).
    """
    key = str(spec)
    if key in NAMED:
        return NAMED[key](**options)
    path = Path(spec)
    if path.is_dir():
        return load_official(path, **options)  # type: ignore[arg-type]
    known = ", ".join(sorted(NAMED)) or "none yet"
    raise DataError(spec, "", f"not a benchmark directory (named benchmarks: {known})")


__all__ = ["NAMED", "load_benchmark", "load_official"]
