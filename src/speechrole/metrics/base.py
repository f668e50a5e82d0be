"""Objective speech metrics: the interface, and the clip every metric reads.

A clip is decoded, downmixed and resampled to 16 kHz once, then shared by all metrics. Clips that are
silent, clipped or very short are flagged; a metric that cannot give a meaningful value for a clip
returns a `MetricError` with the reason (recorded, never a NaN and never a number made up).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from speechrole.audio import load_audio, resample
from speechrole.registry import Registry
from speechrole.schema import Language

RATE = 16000
SILENT_DBFS = -60.0  # RMS below this: no speech to measure
CLIPPED_SHARE = 0.001  # more samples than this at full scale: the clip is distorted
SHORT_S = 0.5  # shorter than this: too little speech for embeddings and MOS models


@dataclass
class Clip:
    """One clip as every metric sees it: mono 16 kHz float32, with what it should say."""

    sha256: str
    path: Path
    audio: np.ndarray  # mono, 16 kHz, float32 (not clipped: a clip's own excursions are kept)
    source_rate: int
    language: Language
    text: str = ""  # what the speaker says in it (the agent's own text, or the reference text)
    reference: Clip | None = None  # the role's reference voice clip, for speaker similarity
    flags: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return len(self.audio) / RATE


@dataclass(frozen=True)
class MetricError:
    """Why a metric has no value for a clip (recorded with the clip; never counted as a number)."""

    reason: str


#: A metric's values for one clip: its declared numeric fields, plus optional text notes (e.g. what ASR heard).
MetricValues = dict[str, float | str]


def decode_clip(path: Path, sha256: str, language: Language, text: str = "") -> Clip:
    """Decode once, downmix, resample to 16 kHz, and flag what makes measurements doubtful."""
    data, rate = load_audio(path)  # DataError (missing, corrupt, empty, NaN) is the caller's to record
    clipped = float(np.mean(np.abs(data) >= 0.999))
    mono = data.mean(axis=1, keepdims=True).astype(np.float32)
    audio = resample(mono, rate, RATE)[:, 0]
    flags = []
    rms = float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0
    if rms <= 10 ** (SILENT_DBFS / 20):
        flags.append("silent")
    if clipped > CLIPPED_SHARE:
        flags.append("clipped")
    if len(audio) < SHORT_S * RATE:
        flags.append("too_short")
    return Clip(sha256, path, audio, rate, language, text, flags=tuple(flags))


class Metric(ABC):
    """A registered metric: a name and version (part of every cached value), a direction per field,
    models loaded once (`load`), and a batch API over clips."""

    name: ClassVar[str]
    version: ClassVar[str]
    #: field -> "higher" or "lower" (which direction is better)
    fields: ClassVar[dict[str, Literal["higher", "lower", "none"]]]
    #: whether `measure` needs `clip.reference` (the role's voice clip)
    needs_reference_clip: ClassVar[bool] = False
    #: whether `measure` reads `clip.text` (then a value holds only while the text is unchanged)
    reads_text: ClassVar[bool] = False

    def load(self) -> None:  # noqa: B027 - optional: load models once per run
        """Load models; called once, before the first batch."""

    @abstractmethod
    def measure(self, clips: list[Clip]) -> list[MetricValues | MetricError]: ...

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "fields": dict(self.fields)}

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


METRICS: Registry[Metric] = Registry("metric")
