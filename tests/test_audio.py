from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from speechrole.audio import AudioPolicy, load_audio, prepare_clip, probe
from speechrole.problems import DataError


def _write(path: Path, data: np.ndarray, sr: int) -> Path:
    sf.write(path, data, sr)
    return path


def _noise(seconds: float, sr: int, level: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (level * rng.standard_normal((int(seconds * sr), channels))).astype(np.float32)
    return x if channels > 1 else x[:, 0]


def test_official_policy_keeps_rate_and_cuts_at_60_s(tmp_path: Path) -> None:
    path = _write(tmp_path / "long.wav", _noise(61.0, 8000, 0.1), 8000)
    clip = prepare_clip(path, AudioPolicy(max_seconds=60.0))
    assert clip.truncated and clip.sample_rate == 8000
    assert clip.duration_s == pytest.approx(60.0) and clip.source_duration_s == pytest.approx(61.0)
    data, rate = sf.read(io.BytesIO(clip.wav))
    assert rate == 8000 and len(data) == 60 * 8000
    short = prepare_clip(_write(tmp_path / "short.wav", _noise(2.0, 8000, 0.1), 8000), AudioPolicy())
    assert not short.truncated


def test_swap_policy_mono_16k_and_equal_loudness(tmp_path: Path) -> None:
    policy = AudioPolicy(sample_rate=16000, mono=True, loudness_lufs=-23.0)
    quiet = prepare_clip(_write(tmp_path / "q.wav", _noise(3.0, 44100, 0.01, channels=2), 44100), policy)
    loud = prepare_clip(_write(tmp_path / "l.wav", _noise(3.0, 22050, 0.3, seed=1), 22050), policy)
    meter = pyloudnorm.Meter(16000)
    for clip in (quiet, loud):
        data, rate = sf.read(io.BytesIO(clip.wav))
        assert rate == 16000 and data.ndim == 1
        assert meter.integrated_loudness(data) == pytest.approx(-23.0, abs=0.5)


def test_silence_and_tiny_clips_are_left_alone(tmp_path: Path) -> None:
    policy = AudioPolicy(loudness_lufs=-23.0)
    silent = prepare_clip(_write(tmp_path / "s.wav", np.zeros(16000, dtype=np.float32), 16000), policy)
    data, _ = sf.read(io.BytesIO(silent.wav))
    assert not np.any(data)
    tiny = prepare_clip(_write(tmp_path / "t.wav", _noise(0.1, 16000, 0.2), 16000), policy)
    assert tiny.duration_s == pytest.approx(0.1)


def test_hash_is_of_the_bytes_sent_and_stable(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.wav", _noise(1.0, 16000, 0.1), 16000)
    a, b = prepare_clip(path, AudioPolicy()), prepare_clip(path, AudioPolicy())
    assert a.sha256 == b.sha256
    assert prepare_clip(path, AudioPolicy(loudness_lufs=-20.0)).sha256 != a.sha256
    assert a.base64().startswith("UklGR")  # "RIFF"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "does not decode"), (b"RIFF....WAVEfmt garbage", "does not decode"), (None, "not found")],
)
def test_bad_files_are_data_errors(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=reason):
        load_audio(path)
    with pytest.raises(DataError, match=reason):
        probe(path)


def test_empty_wav_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(DataError, match="empty"):
        load_audio(path)
