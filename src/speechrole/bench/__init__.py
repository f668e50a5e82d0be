"""Benchmark sources: an official SpeechRole-Eval tree on disk (more sources register here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from speechrole.bench.official import load_official
from speechrole.problems import DataError, Problem
from speechrole.schema import Benchmark

#: A benchmark on the Hugging Face hub: `hf:OWNER/NAME[@REVISION]`, e.g. hf:yuhui1038/SpeechRole-Eval.
HF_PREFIX = "hf:"

Loader = Callable[..., tuple[Benchmark, list[Problem]]]


def _mini(**options: object) -> tuple[Benchmark, list[Problem]]:
    from speechrole.bench.mini import load_mini  # renders audio: imported only when asked for

    return load_mini(**options)


#: Named benchmarks register a loader here.
NAMED: dict[str, Loader] = {"mini": _mini}


def load_benchmark(spec: str | Path, **options: object) -> tuple[Benchmark, list[Problem]]:
    """Load a benchmark from a directory in the official layout, or by registered name.

    Returns the benchmark and the problems met while reading it (bad files and samples are left
    out and reported; everything else loads).
    """
    key = str(spec)
    if key in NAMED:
        return NAMED[key](**options)
    if key.startswith(HF_PREFIX):
        from speechrole.bench.hub import download

        bench, problems = load_official(download(key[len(HF_PREFIX) :]), **options)  # type: ignore[arg-type]
        return bench.model_copy(update={"name": key[len(HF_PREFIX) :]}), problems
    path = Path(spec)
    if path.is_dir():
        return load_official(path, **options)  # type: ignore[arg-type]
    known = ", ".join(sorted(NAMED)) or "none yet"
    raise DataError(
        spec, "", f"not a benchmark directory, nor {HF_PREFIX}OWNER/NAME, nor a named benchmark ({known})"
    )


__all__ = ["HF_PREFIX", "NAMED", "load_benchmark", "load_official"]
