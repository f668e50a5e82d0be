"""`judgments.jsonl`: one line per judgment, appended and flushed, never rewritten.

A run killed mid-write leaves at most a torn last line; reading skips it and the next append starts
on a fresh line, so nothing already written is lost. When a task appears several times (a retried
failure, a re-judged changed clip), the last line wins.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from speechrole.fileio import read_jsonl
from speechrole.problems import Problem
from speechrole.schema import Judgment


def read_judgments(path: Path) -> tuple[list[Judgment], list[Problem]]:
    """All judgments in file order. A line that is not JSON (a write cut short by a kill) is skipped with
    a warning; a JSON line that is not a valid judgment is an error."""
    judgments: list[Judgment] = []
    problems: list[Problem] = []
    for lineno, parsed, data in read_jsonl(path):
        if not parsed:
            problems.append(
                Problem(
                    str(path), f"line {lineno}", "incomplete line (interrupted write); ignored", "warning"
                )
            )
            continue
        try:
            judgments.append(Judgment.model_validate(data))
        except ValidationError as exc:
            problems.append(
                Problem(str(path), f"line {lineno}", f"invalid judgment: {exc.errors()[0]['msg']}")
            )
    return judgments, problems


def latest_by_task(judgments: list[Judgment]) -> dict[str, Judgment]:
    latest: dict[str, Judgment] = {}
    for j in judgments:
        latest[j.task] = j
    return latest


class JudgmentLog:
    """Append-only writer; repairs a torn tail before the first append."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with path.open("ab") as handle:
                handle.write(b"\n")  # the torn line stays (and is skipped); new lines start clean
        self._handle = path.open("a", encoding="utf-8")

    def append(self, judgment: Judgment) -> None:
        self._handle.write(json.dumps(judgment.model_dump(mode="json"), ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
