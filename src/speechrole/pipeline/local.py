"""The local executor: runs the stages in order on one machine, streaming JSONL manifests.

Per stage it keeps `manifests/NN-stage.jsonl` (the rows it produced, each naming its input row in
`_src`), `NN-stage.dropped.jsonl` (the rows it dropped and why) and `NN-stage.meta.json` (its
configuration hash, whether it finished, counts and seconds). A rerun skips every input row already
produced or dropped under the same configuration, so a killed run resumes at the row it reached; a
changed stage option makes that stage (and what follows from it) run again. A row whose processing
raises is dropped with the error as its reason, and the run goes on.
"""

from __future__ import annotations

import json
import time
import typing
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechrole.fileio import write_json_atomic, write_text_atomic
from speechrole.pipeline.spec import Pipeline
from speechrole.pipeline.stage import DROP, Row, Stage

SRC = "_src"


class Progress(typing.Protocol):
    def stage(self, name: str) -> Any: ...


@dataclass
class StageSummary:
    name: str
    rows_in: int = 0
    kept: int = 0
    dropped: int = 0
    reused: int = 0  # produced or dropped by an earlier run
    reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "rows_in": self.rows_in,
            "kept": self.kept,
            "dropped": self.dropped,
            "reused": self.reused,
            "reasons": dict(self.reasons.most_common()),
            "seconds": round(self.seconds, 3),
        }


def read_rows(path: Path) -> list[Row]:
    """A JSONL manifest; a torn last line (a killed writer) is ignored."""
    rows = []
    if path.is_file():
        for raw in path.read_bytes().split(b"\n"):
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(row, dict) and "id" in row:
                rows.append(row)
    return rows


def reason_kind(reason: str) -> str:
    """The counted kind of a drop reason: its text before the first colon."""
    return reason.split(":", 1)[0].strip()


class StageFiles:
    def __init__(self, folder: Path, index: int, stage: Stage) -> None:
        stem = f"{index:02d}-{stage.name}"
        self.kept = folder / f"{stem}.jsonl"
        self.dropped = folder / f"{stem}.dropped.jsonl"
        self.meta = folder / f"{stem}.meta.json"

    def read_meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def reset(self) -> None:
        for p in (self.kept, self.dropped, self.meta):
            p.unlink(missing_ok=True)


def run_batch(stage: Stage, batch: list[Row]) -> list[Row]:
    """The stage's output for a batch; a batch that raises is redone row by row, and a row that raises
    is dropped with the error (one bad file never stops the others)."""
    try:
        return _with_src(batch, stage.process_batch([dict(r) for r in batch]))
    except Exception:
        if len(batch) == 1:
            raise
    out: list[Row] = []
    for row in batch:
        try:
            out += _with_src([row], stage.process_batch([dict(row)]))
        except Exception as exc:
            out.append({"id": row["id"], DROP: f"error: {type(exc).__name__}: {exc}"[:500], SRC: row["id"]})
    return out


def _with_src(batch: list[Row], out: list[Row]) -> list[Row]:
    """Name each output row's input: its own id when it kept it, else what the stage set in `_src`."""
    ids = {r["id"] for r in batch}
    for row in out:
        if SRC not in row:
            if row["id"] not in ids:
                raise RuntimeError(f"a stage made row {row['id']!r} without naming its input in {SRC}")
            row[SRC] = row["id"]
    return out


def safe_batch(stage: Stage, batch: list[Row]) -> list[Row]:
    try:
        return run_batch(stage, batch)
    except Exception as exc:  # a single row that raised
        row = batch[0]
        return [{"id": row["id"], DROP: f"error: {type(exc).__name__}: {exc}"[:500], SRC: row["id"]}]


class LocalExecutor:
    """Runs a pipeline in this process; `run()` returns a summary per stage."""

    def __init__(
        self,
        pipeline: Pipeline,
        progress: Progress | None = None,
        *,
        num_shards: int = 1,
        shard_index: int = 0,
    ) -> None:
        self.pipeline, self.progress = pipeline, progress
        self.num_shards, self.shard_index = num_shards, shard_index
        base = pipeline.work_dir
        self.folder = (
            base / "manifests" if num_shards == 1 else base / "shards" / f"{shard_index}-of-{num_shards}"
        )
        self.folder.mkdir(parents=True, exist_ok=True)

    def _sources(self) -> list[Row]:
        rows = self.pipeline.sources
        if self.num_shards > 1:
            rows = [r for r in rows if int(r["id"], 16) % self.num_shards == self.shard_index]
        return rows

    def stages(self) -> list[Stage]:
        """The stages this run executes: a shard stops before the first stage that needs every row."""
        if self.num_shards == 1:
            return self.pipeline.stages
        out = []
        for stage in self.pipeline.stages:
            if stage.per == "all":
                break
            out.append(stage)
        return out

    def run(self) -> list[StageSummary]:
        rows = self._sources()
        summaries = []
        for index, stage in enumerate(self.stages()):
            started = time.perf_counter()
            files = StageFiles(self.folder, index, stage)
            summary = StageSummary(stage.name, rows_in=len(rows))
            merged = None if self.num_shards > 1 else self._from_shards(index, stage, rows)
            if merged is not None:
                rows, summary.reused = merged, len(merged)
                summary.kept = len(merged)
            else:
                rows = self._run_stage(stage, files, rows, summary)
            summary.seconds = time.perf_counter() - started
            summaries.append(summary)
        write_json_atomic(self.folder / "summary.json", [s.to_dict() for s in summaries])
        return summaries

    def _from_shards(self, index: int, stage: Stage, rows: list[Row]) -> list[Row] | None:
        """Rows of a stage that every shard of an earlier sharded run finished (with this configuration)."""
        shards = sorted((self.pipeline.work_dir / "shards").glob("*-of-*"))
        if not shards or stage.per == "all":
            return None
        total = {p.name.split("-of-")[1] for p in shards}
        if len(total) != 1 or len(shards) != int(next(iter(total))):
            return None
        out: list[Row] = []
        for shard in shards:
            files = StageFiles(shard, index, stage)
            meta = files.read_meta()
            if not meta.get("complete") or meta.get("config") != stage.config_hash():
                return None
            out += read_rows(files.kept)
        wanted = {r["id"] for r in rows}
        return [{k: v for k, v in r.items() if k != SRC} for r in out if r[SRC] in wanted]

    def _run_stage(
        self, stage: Stage, files: StageFiles, rows: list[Row], summary: StageSummary
    ) -> list[Row]:
        meta = files.read_meta()
        digest = _digest(rows)
        whole_set_stale = stage.per == "all" and (meta.get("input") != digest or not meta.get("complete"))
        if meta.get("config") != stage.config_hash() or whole_set_stale:
            files.reset()  # another configuration, or a whole-set stage with other or unfinished input
        meta = {"stage": stage.name, "config": stage.config_hash(), "input": digest, "complete": False}
        wanted = {r["id"] for r in rows}
        kept = [r for r in read_rows(files.kept) if r.get(SRC) in wanted]
        dropped = [r for r in read_rows(files.dropped) if r.get(SRC, r["id"]) in wanted]
        done = {r[SRC] for r in kept} | {r.get(SRC, r["id"]) for r in dropped}
        if stage.per == "all":  # one output for the whole set: all of it is done, or none
            done = wanted if files.kept.is_file() and not whole_set_stale else set()
        todo = [r for r in rows if r["id"] not in done]
        summary.reused = len(rows) - len(todo)
        bar = self.progress.stage(stage.name) if self.progress else None
        if bar is not None:
            bar.start(len(rows))
            for _ in range(summary.reused):
                bar.advance("reused")
        if todo:
            write_json_atomic(files.meta, meta)
            with files.kept.open("a", encoding="utf-8") as k, files.dropped.open("a", encoding="utf-8") as d:
                for done_inputs, out in self.outputs(stage, todo):
                    for row in out:
                        (d if DROP in row else k).write(json.dumps(row, ensure_ascii=False) + "\n")
                        (dropped if DROP in row else kept).append(row)
                    k.flush()
                    d.flush()
                    if bar is not None:
                        for _ in range(done_inputs):
                            bar.advance("done")
        if stage.per == "all" and not todo and not files.kept.is_file():
            write_text_atomic(files.kept, "")
        summary.kept, summary.dropped = len(kept), len(dropped)
        summary.reasons = Counter(reason_kind(r[DROP]) for r in dropped)
        write_json_atomic(files.meta, {**meta, "complete": True, "kept": len(kept), "dropped": len(dropped)})
        return [{k: v for k, v in row.items() if k != SRC} for row in kept]  # provenance stays in the file

    def outputs(self, stage: Stage, todo: list[Row]) -> Iterator[tuple[int, list[Row]]]:
        """(input rows done, output rows) per batch, in input order; the stage's models load once."""
        stage.setup(self.pipeline.context)
        try:
            if stage.per == "all":
                yield len(todo), run_batch(stage, todo)
                return
            size = max(1, stage.batch_size)
            for start in range(0, len(todo), size):
                batch = todo[start : start + size]
                yield len(batch), safe_batch(stage, batch)
        finally:
            stage.teardown()


def _digest(rows: list[Row]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(r["id"] for r in rows)).encode()).hexdigest()[:16]
