"""The stage contract of the data pipeline: what a stage needs, what it reads and writes, and how it
runs — the same code under the local executor and under Ray.

A row is a JSON-able dict with an `id`. A stage turns a batch of rows into rows: it may keep, change,
expand (one source row -> its segments) or drop a row. A dropped row is returned as `drop(row, why)`,
and the executor records it with its reason instead of passing it on. `per="row"` stages see batches
of `batch_size` rows; `per="all"` stages (clustering, reference selection, deduplication, export)
see every row at once.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from speechrole.registry import Registry

Row = dict[str, Any]
T = TypeVar("T")
U = TypeVar("U")
DROP = "_drop"  # a row returned with this key is dropped, for the reason it holds


def drop(row: Row, why: str) -> Row:
    """Mark a row as dropped by the stage, with a reason the summary counts."""
    return {"id": row["id"], DROP: why}


def row_id(*parts: object) -> str:
    """A deterministic id from the row's origin (source, times, turn ...): reruns give the same ids."""
    return hashlib.sha1("|".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Resources:
    """What one worker of the stage needs (Ray schedules by it; the local executor runs one worker)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float | None = None


def available_cpus() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def parallel_map(fn: Callable[[T], U], items: list[T], threads: int) -> list[U]:
    """`fn` over the items on up to `threads` threads, results in order (for work that leaves the GIL:
    a subprocess, an ONNX session per thread, a request to a server)."""
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


@dataclass
class Context:
    """What every stage may use: the pipeline's folder for files it writes, the pipeline's
    configuration (roles, languages, export folder), and how many CPU cores its worker may keep busy
    (all of this process's under the local executor; the stage's `resources.cpus` in a Ray actor)."""

    work_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    cpus: int = field(default_factory=available_cpus)

    def path(self, *parts: str) -> Path:
        out = self.work_dir.joinpath(*parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        return out


class Stage(ABC):
    """One step of the pipeline. Subclasses set the class attributes and implement `process_batch`."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"  # bump when the stage's output changes for the same input
    resources: Resources = Resources()  # a pipeline may set it per stage: `resources: {gpus: 1}`
    batch_size: ClassVar[int] = 8
    per: ClassVar[Literal["row", "all"]] = "row"
    reads: ClassVar[frozenset[str]] = frozenset()
    writes: ClassVar[frozenset[str]] = frozenset()
    keeps: ClassVar[bool] = True  # False: output rows are a new kind and carry only `writes`
    #: options taken from the nearest earlier stage that sets them, unless set here (verify speaks
    #: again with synthesize's `tts`)
    inherits: ClassVar[frozenset[str]] = frozenset()
    #: top-level sections of the pipeline file the stage reads (its output changes with them)
    uses: ClassVar[frozenset[str]] = frozenset()
    #: options the stage understands; any other is refused when the pipeline is built
    known: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - self.known)
        if unknown:
            known = ", ".join(sorted(self.known)) or "none"
            raise ValueError(f"unknown option {', '.join(map(repr, unknown))} (known: {known})")
        self.options = options

    def check(self, config: dict[str, Any]) -> str | None:
        """Why this stage cannot run here (an unknown or missing backend), asked when the pipeline is
        built, so that a run does not stop at its tenth stage; None when nothing is known to be wrong."""
        return None

    def setup(self, ctx: Context) -> None:  # noqa: B027 - optional: load models once per worker
        """Load models once per worker, before the first batch."""

    @abstractmethod
    def process_batch(self, rows: list[Row]) -> list[Row]: ...

    def teardown(self) -> None:  # noqa: B027 - optional
        """Release what `setup` took."""

    def config_hash(self, config: dict[str, Any] | None = None) -> str:
        """Identifies this stage's output: a changed option, version or used section of the pipeline
        file (`config`) means its rows are made again."""
        used = {k: (config or {}).get(k) for k in sorted(self.uses)}
        blob = json.dumps(
            {"stage": self.name, "version": self.version, "options": self.options, "uses": used},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {"stage": self.name, "version": self.version, "options": self.options}


STAGES: Registry[type[Stage]] = Registry("pipeline stage")


def register(stage: type[Stage]) -> type[Stage]:
    """Class decorator: register a stage under its `name`, with the first docstring line as summary."""
    summary = (stage.__doc__ or "").strip().splitlines()[0] if stage.__doc__ else ""
    STAGES.register(stage.name, summary=summary)(lambda: stage)
    return stage


def stage_class(name: str) -> type[Stage]:
    from speechrole.pipeline.stages import load_builtin

    load_builtin()
    return STAGES.create(name)
