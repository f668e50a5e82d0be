"""Audio in one place: probing and decoding clips (the judge and metrics stages extend this module)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechrole.problems import DataError


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    sample_rate: int
    channels: int
    frames: int


def probe(path: Path, *, field: str = "", decode: bool = True) -> AudioInfo:
    """Header facts of a clip; with `decode`, the whole clip is decoded to prove it is readable.

    Any failure (missing, not audio, truncated, empty, non-finite samples) is a `DataError` naming the file.
    """
    import soundfile as sf

    if not path.is_file():
        raise DataError(path, field, "audio file not found")
    try:
        info = sf.info(str(path))
        if decode:
            data, _ = sf.read(str(path), dtype="float32", always_2d=True)
            if data.shape[0] and not np.isfinite(data).all():
                raise DataError(path, field, "audio holds non-finite samples (NaN or inf)")
            frames = int(data.shape[0])
        else:
            frames = int(info.frames)
    except DataError:
        raise
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, ValueError, ...
        raise DataError(path, field, f"audio does not decode: {exc}") from None
    if frames == 0:
        raise DataError(path, field, "audio is empty (0 samples)")
    return AudioInfo(
        duration_s=frames / info.samplerate,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=frames,
    )
