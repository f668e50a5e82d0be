"""Clips prepared for the judge: each decoded and encoded once per run, addressed by the hash of its bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from speechrole.audio import AudioPolicy, PreparedClip, file_sha256, prepare_clip
from speechrole.judge.cache import JudgeCache
from speechrole.problems import DataError
from speechrole.schema import ClipRef


class ClipStore:
    """Prepares clips under one policy, remembers the recent ones, and knows hashes without decoding.

    `ref` gives a clip's hash (for cache keys) from the cache's clip index when the file was seen
    before, so a rerun decodes nothing; `prepared` gives the bytes to send, decoding at most once
    while the clip stays among the `capacity` most recent.
    """

    def __init__(self, policy: AudioPolicy, index: JudgeCache | None = None, capacity: int = 256) -> None:
        self.policy = policy
        self.index = index
        self.capacity = capacity
        self.decoded = 0  # clips decoded so far (each clip once per run while it stays in memory)
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, PreparedClip] = OrderedDict()  # file sha256 -> prepared clip
        self._file_sha: dict[str, str] = {}  # path -> file sha256, as hashed by `ref` in this run

    def _remember(self, file_sha: str, clip: PreparedClip) -> None:
        with self._lock:
            self._recent[file_sha] = clip
            self._recent.move_to_end(file_sha)
            while len(self._recent) > self.capacity:
                self._recent.popitem(last=False)

    def _prepare(self, path: Path, file_sha: str, field: str) -> PreparedClip:
        with self._lock:
            clip = self._recent.get(file_sha)
        if clip is None:
            clip = prepare_clip(path, self.policy, field=field)
            self.decoded += 1
            self._remember(file_sha, clip)
            if self.index is not None:
                self.index.clip_put(file_sha, self.policy.id, clip.sha256, clip.duration_s, clip.truncated)
        return clip

    def ref(self, path: Path, *, side: str, turn: int, shown_path: str, field: str = "") -> ClipRef:
        """The clip's identity for the judge: sha256 of the bytes that will be sent, duration, truncation."""
        if not path.is_file():
            raise DataError(path, field, "audio file not found")
        file_sha = file_sha256(path)
        with self._lock:
            self._file_sha[str(path)] = file_sha
        known = self.index.clip_get(file_sha, self.policy.id) if self.index is not None else None
        if known is None:
            clip = self._prepare(path, file_sha, field)
            known = (clip.sha256, clip.duration_s, clip.truncated)
        sha, duration, truncated = known
        return ClipRef(
            side=side, turn=turn, path=shown_path, sha256=sha, duration_s=duration, truncated=truncated
        )  # type: ignore[arg-type]

    def file_sha(self, path: Path) -> str:
        """The sha256 of the file's bytes as hashed by `ref` in this run."""
        with self._lock:
            known = self._file_sha.get(str(path))
        return known or file_sha256(path)

    def prepared(self, path: Path, expected_sha256: str) -> PreparedClip:
        """The bytes to send; an error if the file no longer gives the bytes its hash promised."""
        with self._lock:
            file_sha = self._file_sha.get(str(path))
        clip = self._prepare(path, file_sha or file_sha256(path), "")
        if clip.sha256 != expected_sha256:
            raise DataError(path, "", "the clip changed while the run was going on; run the judge again")
        return clip
