"""The local executor: runs the stages in order on one machine, streaming JSONL manifests.

Per stage it keeps `manifests/NN-stage.jsonl` (the rows it produced, each naming its input row in
`_src`), `NN-stage.dropped.jsonl` (the rows it dropped and why), `NN-stage.done.jsonl` (the inputs it
finished, each with a digest of the input row's content) and `NN-stage.meta.json` (its configuration
hash, whether it finished, counts). An input's outputs are written before it is logged as done, so a
killed run resumes at the input it reached and never keeps half of an input's outputs. An output is
reused only while its input row is unchanged and the stage's configuration is the same: a changed
option, a changed upstream row or a changed `roles` section makes exactly what depends on it again.
A row whose processing raises is dropped with the error (and retried by the next run); a whole-set
stage that raises stops the run, keeping every finished stage.
"""

from __future__ import annotations

import hashlib
import json
import time
import typing
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechrole.fileio import read_jsonl, write_json_atomic, write_text_atomic
from speechrole.models import ModelMissingError
from speechrole.pipeline.spec import Pipeline
from speechrole.pipeline.stage import DROP, Row, Stage
from speechrole.problems import DataError

SRC = "_src"
ERROR = "_error"  # on a dropped row: it was dropped because processing raised (the next run retries it)


class StageError(RuntimeError):
    """A stage could not run (its setup or a whole-set step raised); finished stages are kept."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        super().__init__(
            f"stage {stage} failed: {type(exc).__name__}: {exc} (finished work is kept; rerun to resume)"
        )


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
    examples: dict[str, str] = field(default_factory=dict)  # the first reason of each kind, in full
    seconds: float = 0.0  # all of it, setup included
    setup_seconds: float | None = None  # loading the stage's models (None: not measured, as under Ray)

    def count_drops(self, dropped: list[Row]) -> None:
        self.dropped = len(dropped)
        self.reasons = Counter(reason_kind(r[DROP]) for r in dropped)
        for row in dropped:
            self.examples.setdefault(reason_kind(row[DROP]), row[DROP])

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "rows_in": self.rows_in,
            "kept": self.kept,
            "dropped": self.dropped,
            "reused": self.reused,
            "reasons": dict(self.reasons.most_common()),
            "examples": self.examples,
            "seconds": round(self.seconds, 3),
            "setup_seconds": None if self.setup_seconds is None else round(self.setup_seconds, 3),
        }


def read_rows(path: Path) -> list[Row]:
    """A JSONL manifest; a torn last line (a killed writer) is ignored."""
    return [row for _, _, row in read_jsonl(path) if isinstance(row, dict) and "id" in row]


def reason_kind(reason: str) -> str:
    """The counted kind of a drop reason: its text before the first colon."""
    return reason.split(":", 1)[0].strip()


class StageFiles:
    def __init__(self, folder: Path, index: int, stage: Stage) -> None:
        stem = f"{index:02d}-{stage.name}"
        self.kept = folder / f"{stem}.jsonl"
        self.dropped = folder / f"{stem}.dropped.jsonl"
        self.done = folder / f"{stem}.done.jsonl"
        self.meta = folder / f"{stem}.meta.json"

    def read_meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def reset(self) -> None:
        for p in (self.kept, self.dropped, self.done, self.meta):
            p.unlink(missing_ok=True)

    def done_log(self) -> dict[str, str]:
        """Finished inputs: id -> digest of the input row they were made from."""
        return {r["id"]: r["in"] for r in read_rows(self.done) if isinstance(r.get("in"), str)}

    def rewrite(self, kept: list[Row], dropped: list[Row], done: dict[str, str]) -> None:
        """Keep only what is still valid (also drops a torn last line before new rows are appended)."""
        write_text_atomic(self.kept, lines(kept))
        write_text_atomic(self.dropped, lines(dropped))
        write_text_atomic(self.done, lines({"id": k, "in": v} for k, v in done.items()))


def lines(rows: Iterable[Row]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def row_digest(row: Row) -> str:
    """A digest of an input row's content: its outputs are reused only while it is unchanged."""
    blob = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def run_batch(stage: Stage, batch: list[Row]) -> list[Row]:
    """A row-wise stage's output for a batch; a batch that raises is redone row by row, and a row that
    raises is dropped with the error (one bad file never stops the others; the next run retries it)."""
    try:
        return _with_src(batch, stage.process_batch([dict(r) for r in batch]))
    except Exception as exc:
        if len(batch) == 1:
            return [_error_row(batch[0], exc)]
    out: list[Row] = []
    for row in batch:
        try:
            out += _with_src([row], stage.process_batch([dict(row)]))
        except Exception as exc:
            out.append(_error_row(row, exc))
    return out


def _error_row(row: Row, exc: BaseException) -> Row:
    why = f"error ({type(exc).__name__}): {exc}"[:500]
    return {"id": row["id"], DROP: why, ERROR: True, SRC: row["id"]}


def run_whole(stage: Stage, rows: list[Row]) -> list[Row]:
    """A whole-set stage's output: never split (a set of one would give another answer)."""
    return _with_src(rows, stage.process_batch([dict(r) for r in rows]))


def _with_src(batch: list[Row], out: list[Row]) -> list[Row]:
    """Name each output row's input: its own id when it kept it, else what the stage set in `_src`."""
    ids = {r["id"] for r in batch}
    for row in out:
        if SRC not in row:
            if row["id"] not in ids:
                raise RuntimeError(f"a stage made row {row['id']!r} without naming its input in {SRC}")
            row[SRC] = row["id"]
    return out


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
        """Run every stage (resuming what an earlier run finished); one run per folder at a time."""
        import fcntl

        with (self.folder / ".lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(f"another run is writing {self.folder}: wait for it, or stop it") from None
            return self._run()

    def _run(self) -> list[StageSummary]:
        rows = self._sources()
        summaries = []
        for index, stage in enumerate(self.stages()):
            started = time.perf_counter()
            summary = StageSummary(stage.name, rows_in=len(rows))
            try:
                rows = self._run_stage(index, stage, rows, summary)
            except (DataError, ModelMissingError, StageError):
                raise
            except Exception as exc:
                raise StageError(stage.name, exc) from exc
            summary.seconds = time.perf_counter() - started
            summaries.append(summary)
        write_json_atomic(self.folder / "summary.json", [s.to_dict() for s in summaries])
        return summaries

    def _shard_outputs(
        self, index: int, stage: Stage, config: str, wanted: dict[str, str]
    ) -> tuple[list[Row], list[Row], dict[str, str]]:
        """What an earlier sharded run finished of these inputs (same configuration, same input rows)."""
        kept: list[Row] = []
        dropped: list[Row] = []
        done: dict[str, str] = {}
        if self.num_shards > 1 or stage.per == "all":
            return kept, dropped, done
        for shard in sorted((self.pipeline.work_dir / "shards").glob("*-of-*")):
            files = StageFiles(shard, index, stage)
            if files.read_meta().get("config") != config:
                continue
            ok = {k for k, v in files.done_log().items() if wanted.get(k) == v and k not in done}
            kept += [r for r in read_rows(files.kept) if r.get(SRC) in ok]
            dropped += [r for r in read_rows(files.dropped) if r.get(SRC) in ok and not r.get(ERROR)]
            done.update({k: wanted[k] for k in ok})
        return kept, dropped, done

    def _run_stage(self, index: int, stage: Stage, rows: list[Row], summary: StageSummary) -> list[Row]:
        files = StageFiles(self.folder, index, stage)
        config = stage.config_hash(self.pipeline.context.config)
        if files.read_meta().get("config") != config:
            files.reset()  # another configuration: nothing of the old one is reused
        current = {r["id"]: row_digest(r) for r in rows}
        log = files.done_log()
        valid = {k for k, v in log.items() if current.get(k) == v}
        if stage.per == "all" and log != current:
            valid = set()  # one output for the whole set: any change of the set makes it again
        kept_all, dropped_all = read_rows(files.kept), read_rows(files.dropped)
        valid -= {r.get(SRC) for r in dropped_all if r.get(ERROR)}  # retry what raised last time
        kept = [r for r in kept_all if r.get(SRC) in valid]
        dropped = [r for r in dropped_all if r.get(SRC) in valid]
        done = {k: current[k] for k in valid}
        more_kept, more_dropped, more_done = self._shard_outputs(
            index, stage, config, {k: v for k, v in current.items() if k not in valid}
        )
        kept, dropped, done = kept + more_kept, dropped + more_dropped, {**done, **more_done}
        todo = [r for r in rows if r["id"] not in done]
        stale = len(kept_all) != len(kept) or len(dropped_all) != len(dropped) or len(log) != len(done)
        if todo or stale:
            files.rewrite(kept, dropped, done)
        summary.reused = len(rows) - len(todo)
        bar = self.progress.stage(stage.name) if self.progress else None
        if bar is not None:
            bar.start(len(rows))
            for _ in range(summary.reused):
                bar.advance("reused")
        meta = {"stage": stage.name, "config": config, "complete": False}
        if todo:
            write_json_atomic(files.meta, meta)
            opened = (files.kept.open("a", encoding="utf-8"), files.dropped.open("a", encoding="utf-8"))
            with opened[0] as k, opened[1] as d, files.done.open("a", encoding="utf-8") as log_file:
                for finished, out in self.outputs(stage, todo, summary):
                    k.write(lines(r for r in out if DROP not in r))  # outputs first, then the log line
                    d.write(lines(r for r in out if DROP in r))  # that says their input is done
                    k.flush()
                    d.flush()
                    log_file.write(lines({"id": i, "in": current[i]} for i in finished))
                    log_file.flush()
                    kept += [r for r in out if DROP not in r]
                    dropped += [r for r in out if DROP in r]
                    if bar is not None:
                        for _ in finished:
                            bar.advance("done")
        summary.kept = len(kept)
        summary.count_drops(dropped)
        write_json_atomic(files.meta, {**meta, "complete": True, "kept": len(kept), "dropped": len(dropped)})
        return [{k: v for k, v in row.items() if k != SRC} for row in kept]  # provenance stays in the file

    def outputs(
        self, stage: Stage, todo: list[Row], summary: StageSummary
    ) -> Iterator[tuple[list[str], list[Row]]]:
        """(inputs finished, output rows) per batch, in input order; the stage's models load once
        (and the time that takes goes to `summary.setup_seconds`)."""
        started = time.perf_counter()
        try:
            stage.setup(self.pipeline.context)
            summary.setup_seconds = time.perf_counter() - started
        except (DataError, ModelMissingError):
            raise
        except Exception as exc:
            raise StageError(stage.name, exc) from exc
        try:
            if stage.per == "all":
                yield [r["id"] for r in todo], run_whole(stage, todo)
                return
            size = max(1, stage.batch_size)
            for start in range(0, len(todo), size):
                batch = todo[start : start + size]
                yield [r["id"] for r in batch], run_batch(stage, batch)
        finally:
            stage.teardown()
