"""Audio in one place: probe, decode, downmix, resample, loudness-normalise, truncate, encode, hash.

Every clip a judge hears goes through `prepare_clip` under an `AudioPolicy`, so the same policy is
applied to both sides of a comparison and is recorded (its `id` is part of every cache key).
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechrole.problems import DataError

#: Below this, BS.1770 loudness is not defined (one 400 ms gating block); such clips are left as they are.
MIN_LOUDNESS_SECONDS = 0.4
PEAK_CEILING = 0.99


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    sample_rate: int
    channels: int
    frames: int


@dataclass(frozen=True)
class AudioPolicy:
    """What is done to a clip before a judge hears it. `None` means "leave as it is"."""

    max_seconds: float | None = 60.0
    sample_rate: int | None = None
    mono: bool = False
    loudness_lufs: float | None = None
    raw: bool = False  # send the file's bytes as they are, whatever they hold (the released v1 judge)

    @property
    def id(self) -> str:
        base = f"audio/1:max={self.max_seconds}:sr={self.sample_rate}:mono={int(self.mono)}:lufs={self.loudness_lufs}"
        return base + ":raw" if self.raw else base


@dataclass(frozen=True)
class PreparedClip:
    """A clip ready to send: 16-bit PCM WAV bytes, their sha256, and what was done to get them."""

    wav: bytes
    sha256: str
    duration_s: float
    source_duration_s: float
    sample_rate: int
    truncated: bool

    def base64(self) -> str:
        return base64.b64encode(self.wav).decode("ascii")


def probe(path: Path, *, field: str = "", decode: bool = True) -> AudioInfo:
    """Facts of a clip; with `decode` (the default), the whole clip is decoded to prove it is readable.

    Any failure (missing, not audio, truncated, empty, non-finite samples) is a `DataError` naming the file.
    """
    if decode:
        data, rate = load_audio(path, field=field)
        return AudioInfo(data.shape[0] / rate, rate, int(data.shape[1]), int(data.shape[0]))
    import soundfile as sf

    if not path.is_file():
        raise DataError(path, field, "audio file not found")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, ...
        raise DataError(path, field, f"audio does not decode: {exc}") from None
    if info.frames == 0:
        raise DataError(path, field, "audio is empty (0 samples)")
    return AudioInfo(
        info.frames / info.samplerate, int(info.samplerate), int(info.channels), int(info.frames)
    )


def load_audio(path: Path, *, field: str = "") -> tuple[np.ndarray, int]:
    """Decode a clip to float32 (frames x channels); a clip that is missing, corrupt or empty is a `DataError`."""
    import soundfile as sf

    if not path.is_file():
        raise DataError(path, field, "audio file not found")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DataError(path, field, f"audio does not decode: {exc}") from None
    if data.shape[0] == 0:
        raise DataError(path, field, "audio is empty (0 samples)")
    if not np.isfinite(data).all():
        raise DataError(path, field, "audio holds non-finite samples (NaN or inf)")
    return data, int(rate)


def resample(data: np.ndarray, rate: int, target: int) -> np.ndarray:
    """High-quality resampling (libsoxr); `data` is frames x channels."""
    if rate == target:
        return data
    import soxr

    return np.asarray(soxr.resample(data, rate, target), dtype=np.float32).reshape(-1, data.shape[1])


def normalise_loudness(data: np.ndarray, rate: int, target_lufs: float) -> np.ndarray:
    """Scale to an integrated loudness (ITU-R BS.1770 via pyloudnorm), never clipping; silence stays silence."""
    if data.shape[0] < MIN_LOUDNESS_SECONDS * rate:
        return data
    import pyloudnorm

    loudness = pyloudnorm.Meter(rate).integrated_loudness(data)
    if not np.isfinite(loudness):
        return data
    out = data * np.float32(10.0 ** ((target_lufs - loudness) / 20.0))
    peak = float(np.abs(out).max())
    return out * np.float32(PEAK_CEILING / peak) if peak > PEAK_CEILING else out


def encode_wav(data: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(data, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _passthrough(path: Path, policy: AudioPolicy) -> PreparedClip | None:
    """A 16-bit PCM WAV that the policy would not change is sent as it is, without decoding."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return None  # load_audio will say what is wrong
    duration = info.frames / info.samplerate if info.samplerate else 0.0
    unchanged = (
        info.format == "WAV"
        and info.subtype == "PCM_16"
        and info.frames > 0
        and policy.loudness_lufs is None
        and policy.sample_rate in (None, info.samplerate)
        and (not policy.mono or info.channels == 1)
        and (policy.max_seconds is None or duration <= policy.max_seconds)
    )
    if not unchanged:
        return None
    wav = path.read_bytes()
    sha = hashlib.sha256(wav).hexdigest()
    return PreparedClip(wav, sha, duration, duration, int(info.samplerate), truncated=False)


def prepare_clip(path: Path, policy: AudioPolicy, *, field: str = "") -> PreparedClip:
    """Decode and process a clip under `policy`; the order is fixed: downmix, resample, cut, loudness.

    A 16-bit PCM WAV that the policy leaves unchanged is passed through byte for byte; under a `raw`
    policy every file is (after a header check that it is audio)."""
    if policy.raw:
        info = probe(path, field=field, decode=False)
        wav = path.read_bytes()
        return PreparedClip(
            wav, hashlib.sha256(wav).hexdigest(), info.duration_s, info.duration_s, info.sample_rate, False
        )
    if path.suffix.lower() == ".wav" and (same := _passthrough(path, policy)) is not None:
        return same
    data, rate = load_audio(path, field=field)
    source_duration = data.shape[0] / rate
    if policy.mono and data.shape[1] > 1:
        data = data.mean(axis=1, keepdims=True)
    if policy.sample_rate is not None:
        data, rate = resample(data, rate, policy.sample_rate), policy.sample_rate
    truncated = False
    if policy.max_seconds is not None and data.shape[0] > policy.max_seconds * rate:
        data, truncated = data[: int(policy.max_seconds * rate)], True
    if policy.loudness_lufs is not None:
        data = normalise_loudness(data, rate, policy.loudness_lufs)
    wav = encode_wav(data, rate)
    return PreparedClip(
        wav=wav,
        sha256=hashlib.sha256(wav).hexdigest(),
        duration_s=data.shape[0] / rate,
        source_duration_s=source_duration,
        sample_rate=rate,
        truncated=truncated,
    )


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_wav(path: Path, data: np.ndarray, rate: int) -> None:
    """Write 16-bit PCM WAV atomically (a temp file, then rename): a killed run leaves no half clip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(encode_wav(np.asarray(data, dtype=np.float32), rate))
    tmp.replace(path)
