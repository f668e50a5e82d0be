from __future__ import annotations

from pathlib import Path

import pytest

from speechrole.fileio import read_json, resolve_inside, write_json_atomic
from speechrole.problems import DataError


def test_resolve_inside_accepts_relative_paths(tmp_path: Path) -> None:
    assert resolve_inside(tmp_path, "a/b.wav") == tmp_path / "a" / "b.wav"
    assert resolve_inside(tmp_path, "a/../b.wav") == tmp_path / "b.wav"


@pytest.mark.parametrize("bad", ["../secret.wav", "a/../../secret.wav", "/etc/passwd", "..\\..\\x.wav"])
def test_resolve_inside_refuses_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DataError, match="escapes the dataset root") as info:
        resolve_inside(tmp_path / "root", bad, file="data.json", field="[0].role_speech_path")
    assert info.value.problem.file == "data.json"
    assert info.value.problem.field == "[0].role_speech_path"


def test_resolve_inside_allows_absolute_paths_inside_and_symlinked_storage(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "x.wav").write_bytes(b"")
    root.mkdir()
    (root / "x.wav").symlink_to(tmp_path / "blobs" / "x.wav")
    assert resolve_inside(root, str(root / "x.wav")) == root / "x.wav"
    assert resolve_inside(root, "x.wav").exists()


def test_resolve_inside_refuses_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        resolve_inside(tmp_path, "  ")


def test_read_json_reports_truncation(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('[{"idx": 0, "Speech_Fluency_results": {"reason": "fine", "sco', encoding="utf-8")
    with pytest.raises(DataError, match="truncated") as info:
        read_json(path)
    assert str(path) in str(info.value)


def test_write_json_atomic_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "out" / "x.json"
    write_json_atomic(path, {"role": "李白"})
    assert read_json(path) == {"role": "李白"}
    assert "李白" in path.read_text(encoding="utf-8")  # not ASCII-escaped, like the official files
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_atomic_writes_get_the_usual_permissions(tmp_path: Path) -> None:
    import stat

    from speechrole import fileio
    from speechrole.fileio import write_text_atomic

    write_text_atomic(tmp_path / "report.html", "<p>x</p>")
    expected = 0o666 & ~fileio._UMASK
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == expected != 0o600
