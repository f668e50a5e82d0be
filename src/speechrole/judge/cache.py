"""A content-addressed cache of judge answers in SQLite, shared by every run on the machine.

The key is a hash of everything that decides an answer: judge model and endpoint, protocol and its
version, the prompt text, the sha256 of every clip's bytes in order, the order and the sampling
settings. A rerun costs nothing; a changed clip or rubric is judged again. Only answers that parsed
and validated are stored, so a failure is retried on the next run rather than remembered.

It also remembers, per clip file and audio policy, the hash of the prepared bytes, so that a rerun
can compute its cache keys without decoding any audio.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from speechrole.fileio import cache_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, protocol TEXT NOT NULL, created TEXT NOT NULL, payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    file_sha256 TEXT NOT NULL, policy TEXT NOT NULL, sha256 TEXT NOT NULL, duration_s REAL NOT NULL,
    truncated INTEGER NOT NULL, PRIMARY KEY (file_sha256, policy)
);
"""


def default_cache_path() -> Path:
    """`judge.sqlite` in the speechrole cache folder (see `fileio.cache_dir`)."""
    return cache_dir() / "judge.sqlite"


def cache_key(**parts: Any) -> str:
    """A stable hash of the named parts (sorted, JSON-encoded)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class JudgeCache:
    """Thread-safe (one connection behind a lock), safe for several processes (SQLite WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "PRAGMA synchronous=NORMAL"
        )  # a cache: losing the last answers on power loss is fine
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT payload FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model: str, protocol: str, payload: dict[str, Any]) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, model, protocol, created, payload) VALUES (?, ?, ?, ?, ?)",
                (key, model, protocol, now, json.dumps(payload, ensure_ascii=False)),
            )

    def clip_get(self, file_sha256: str, policy: str) -> tuple[str, float, bool] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sha256, duration_s, truncated FROM clips WHERE file_sha256 = ? AND policy = ?",
                (file_sha256, policy),
            ).fetchone()
        return (row[0], float(row[1]), bool(row[2])) if row else None

    def clip_put(
        self, file_sha256: str, policy: str, sha256: str, duration_s: float, truncated: bool
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO clips VALUES (?, ?, ?, ?, ?)",
                (file_sha256, policy, sha256, duration_s, int(truncated)),
            )

    def info(self) -> dict[str, Any]:
        with self._lock:
            total, oldest, newest = self._db.execute(
                "SELECT COUNT(*), MIN(created), MAX(created) FROM answers"
            ).fetchone()
            by_model = self._db.execute(
                "SELECT model, protocol, COUNT(*) FROM answers GROUP BY model, protocol ORDER BY model, protocol"
            ).fetchall()
            clips = self._db.execute("SELECT COUNT(*) FROM clips").fetchone()[0]
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {
            "path": str(self.path),
            "answers": total,
            "clips": clips,
            "bytes": size,
            "oldest": oldest,
            "newest": newest,
            "by_model": [{"model": m, "protocol": p, "answers": n} for m, p, n in by_model],
        }

    def clear(self, model: str | None = None) -> int:
        """Delete cached answers (of one judge model, or all) and the clip index; returns answers deleted."""
        with self._lock:
            if model is None:
                count = self._db.execute("DELETE FROM answers").rowcount
                self._db.execute("DELETE FROM clips")
            else:
                count = self._db.execute("DELETE FROM answers WHERE model = ?", (model,)).rowcount
            self._db.execute("VACUUM")
        return count
