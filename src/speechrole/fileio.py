"""File I/O that every stage shares: JSON reading with clear errors, atomic writes, safe path resolution."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from speechrole.problems import DataError


def read_json(path: Path) -> Any:
    """Parse a JSON file; any failure becomes a `DataError` naming the file and the position."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, "", f"cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            reason += " (the file looks truncated)"
        raise DataError(path, "", reason) from None


def read_jsonl(path: Path) -> Iterator[tuple[int, bool, Any]]:
    """(line number, parsed?, value) for each non-blank line of an append-only JSONL file; a missing
    file has none. A line that is not JSON — a write cut short by a kill, possibly inside a multi-byte
    character, so lines are decoded one by one — comes as (n, False, None) for the caller to judge."""
    if not path.is_file():
        return
    for n, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            yield n, True, json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            yield n, False, None


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: done once, at import, before any thread
    os.umask(mask)
    return mask


_UMASK = _umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Write a whole file so that readers see either the old or the new content, never a torn one.

    Atomic against a killed process (temp file, then rename); not fsynced, so not durable against a
    power cut, which would cost hundreds of milliseconds per run for no gain a rerun cannot give."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any, indent: int = 2) -> None:
    """Write JSON the way the official tools do (UTF-8, not ASCII-escaped), atomically."""
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=indent))


def resolve_inside(root: Path, relpath: str, *, file: object = "", field: str = "") -> Path:
    """Resolve an opaque data path inside `root`, refusing any path that escapes it.

    The check is lexical (after normalising `..`), not through symlinks, so datasets stored as
    symlinks (e.g. a Hugging Face cache snapshot) still work while `../../etc/passwd` is refused.
    """
    if not isinstance(relpath, str) or not relpath.strip():
        raise DataError(file, field, "empty audio path")
    raw = relpath.replace("\\", "/")
    root_abs = Path(os.path.normpath(root.absolute()))
    candidate = Path(raw) if PurePosixPath(raw).is_absolute() else root_abs / raw
    normalised = Path(os.path.normpath(candidate))
    if normalised != root_abs and root_abs not in normalised.parents:
        raise DataError(file, field, f"path {relpath!r} escapes the dataset root {root_abs}")
    return normalised


def cache_dir(*parts: str) -> Path:
    """A folder under the speechrole cache: `$SPEECHROLE_CACHE_DIR`, else `$XDG_CACHE_HOME/speechrole`,
    else `~/.cache/speechrole` (created when missing)."""
    base = os.environ.get("SPEECHROLE_CACHE_DIR")
    root = (
        Path(base)
        if base
        else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "speechrole"
    )
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
