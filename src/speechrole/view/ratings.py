"""Human ratings from the viewer's blind A/B mode, in an SQLite database in the runs directory.

A rating task is created when a pair is shown: it records which side is "A" so that the page itself
never reveals it. A rating holds, per metric, the rater's scores of the agent and of the reference
(mapped back from A/B), with the rater's id and the time.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from speechrole.schema import METRICS

Side = Literal["agent", "reference"]
FILENAME = "ratings.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY, rater TEXT NOT NULL, run TEXT NOT NULL, sample TEXT NOT NULL,
  a_is TEXT NOT NULL CHECK (a_is IN ('agent', 'reference')), created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ratings (
  task TEXT NOT NULL REFERENCES tasks(id), rater TEXT NOT NULL, run TEXT NOT NULL, sample TEXT NOT NULL,
  metric TEXT NOT NULL, agent INTEGER NOT NULL CHECK (agent BETWEEN 1 AND 10),
  reference INTEGER NOT NULL CHECK (reference BETWEEN 1 AND 10), a_is TEXT NOT NULL, created TEXT NOT NULL,
  PRIMARY KEY (task, metric)
);
"""


@dataclass(frozen=True)
class Task:
    id: str
    rater: str
    run: str
    sample: str
    a_is: Side

    @property
    def b_is(self) -> Side:
        return "reference" if self.a_is == "agent" else "agent"


@dataclass(frozen=True)
class Rating:
    rater: str
    run: str
    sample: str
    metric: str
    agent: int
    reference: int
    created: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RatingStore:
    """Thread-safe access to the ratings database (one connection, serialised)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def new_task(self, rater: str, run: str, sample: str, a_is: Side) -> Task:
        task = Task(uuid.uuid4().hex, rater, run, sample, a_is)
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)", (task.id, rater, run, sample, a_is, _now())
            )
        return task

    def task(self, task_id: str) -> Task | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, rater, run, sample, a_is FROM tasks WHERE id = ?", (task_id,)
            ).fetchone()
        return Task(*row) if row else None

    def save(self, task: Task, scores: dict[str, tuple[int, int]]) -> None:
        """Store one rating: `scores[metric] = (agent, reference)` for all 8 metrics, each 1..10."""
        if set(scores) != set(METRICS):
            raise ValueError(f"a rating needs all 8 metrics; missing {sorted(set(METRICS) - set(scores))}")
        for metric, pair in scores.items():
            if not all(isinstance(v, int) and 1 <= v <= 10 for v in pair):
                raise ValueError(f"{metric}: scores must be integers 1..10, got {pair}")
        created = _now()
        rows = [
            (task.id, task.rater, task.run, task.sample, m, a, r, task.a_is, created)
            for m, (a, r) in scores.items()
        ]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def rated(self, rater: str) -> set[tuple[str, str]]:
        """(run, sample) pairs this rater has rated."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT run, sample FROM ratings WHERE rater = ?", (rater,)
            ).fetchall()
        return {(run, sample) for run, sample in rows}

    def ratings(self) -> list[Rating]:
        with self._lock:
            rows = self._db.execute(
                "SELECT rater, run, sample, metric, agent, reference, created FROM ratings ORDER BY created"
            ).fetchall()
        return [Rating(*row) for row in rows]

    def close(self) -> None:
        self._db.close()
