"""Prosody without model weights: pitch (median and range), loudness, articulation rate, pauses.

Frames of 20 ms; speech frames are those within 35 dB of the clip's loudest frame; F0 comes from YIN
(librosa) on speech frames with a low zero-crossing rate (voiced), cleaned of octave jumps by a
median filter. Articulation rate is syllables per second of phonation (English syllables counted from
vowel groups of the text, Chinese syllables = Han characters). Pauses are silences of 150 ms or more
between the first and last speech frame.
"""

from __future__ import annotations

import re
import warnings
from typing import ClassVar, Literal

import numpy as np

from speechrole.metrics.base import METRICS, RATE, Clip, Metric, MetricError, MetricValues

HOP = RATE // 50  # 20 ms
SPEECH_DB = 35.0
PAUSE_S = 0.15
_VOWELS = re.compile(r"[aeiouy]+")
_HAN = re.compile(r"[\u3400-\u9fff]")


def _english_syllables(word: str) -> int:
    w = word.lower().strip("'")
    count = len(_VOWELS.findall(w))
    if count > 1 and w.endswith("e") and not w.endswith(("le", "ee")):
        count -= 1  # a silent final e
    return max(1, count)


def syllables(text: str) -> int:
    """A syllable count good enough for a rate: Han characters, plus vowel groups of Latin words."""
    return len(_HAN.findall(text)) + sum(_english_syllables(w) for w in re.findall(r"[A-Za-z']+", text))


class Prosody(Metric):
    name = "prosody"
    version = "1"
    reads_text = True  # the speaking rate counts the syllables of the text
    fields: ClassVar[dict[str, Literal["higher", "lower", "none"]]] = {
        "f0_median_hz": "none",
        "f0_range_st": "none",
        "energy_db": "none",
        "rate_syl_per_s": "none",
        "pause_ratio": "none",
    }

    def measure(self, clips: list[Clip]) -> list[MetricValues | MetricError]:
        return [self._one(c) for c in clips]

    def _one(self, clip: Clip) -> MetricValues | MetricError:
        import librosa

        if {"silent", "too_short"} & set(clip.flags):
            return MetricError("silent or too short for prosody")
        audio = clip.audio
        rms = librosa.feature.rms(y=audio, frame_length=2 * HOP, hop_length=HOP)[0]
        db = 20 * np.log10(np.maximum(rms, 1e-8))
        speech = db > db.max() - SPEECH_DB
        if speech.sum() < 5:
            return MetricError("too little speech for prosody")
        zcr = librosa.feature.zero_crossing_rate(audio, frame_length=2 * HOP, hop_length=HOP)[0]
        f0 = librosa.yin(audio, fmin=60, fmax=500, sr=RATE, frame_length=4 * HOP, hop_length=HOP)
        n = min(len(f0), len(speech), len(zcr))
        voiced = speech[:n] & (zcr[:n] < 0.25)
        track = f0[:n].copy()
        track[~voiced] = np.nan
        # Octave jumps: drop frames more than 7 semitones from their 5-frame neighbourhood's median.
        padded = np.pad(track, 2, mode="edge")
        with warnings.catch_warnings():  # windows with no voiced frame give NaN, on purpose
            warnings.simplefilter("ignore", RuntimeWarning)
            local = np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, 5), axis=1)
        with np.errstate(invalid="ignore"):
            steady = np.abs(12 * np.log2(track / local)) < 7
        pitch = track[steady]
        values: MetricValues = {"energy_db": float(np.mean(db[:n][speech[:n]]))}
        if pitch.size >= 5:
            lo, hi = np.percentile(pitch, [5, 95])
            values |= {"f0_median_hz": float(np.median(pitch)), "f0_range_st": float(12 * np.log2(hi / lo))}
        idx = np.flatnonzero(speech[:n])
        span = speech[idx[0] : idx[-1] + 1]
        pause_frames, run = 0, 0
        for is_speech in np.append(span, True):
            if is_speech:
                pause_frames += run if run * HOP / RATE >= PAUSE_S else 0
                run = 0
            else:
                run += 1
        values["pause_ratio"] = float(pause_frames / len(span))
        phonation_s = (len(span) - pause_frames) * HOP / RATE
        units = syllables(clip.text)
        if units and phonation_s > 0:
            values["rate_syl_per_s"] = float(units / phonation_s)
        return values


METRICS.register(
    "prosody", summary="F0 median and range, loudness, articulation rate, pause ratio (no weights)"
)(Prosody)


class Duration(Metric):
    name = "duration"
    version = "1"
    fields: ClassVar[dict[str, Literal["higher", "lower", "none"]]] = {"seconds": "none"}

    def measure(self, clips: list[Clip]) -> list[MetricValues | MetricError]:
        return [{"seconds": c.duration_s} for c in clips]


METRICS.register("duration", summary="clip duration in seconds")(Duration)
