"""DNSMOS (P.835 SIG/BAK/OVRL and P.808 MOS) with the ONNX models bundled in `speechmos`.

The reference script scores 9.01 s windows every second, after repeating a short clip until it is at
least 9.01 s long: a 7 s clip becomes 14 s and is scored five times over, mostly on repeated audio.
Here windows are spaced `stride` seconds apart (default 9.01, i.e. windows that do not overlap), which
is 3-8x cheaper on the 3-10 s answers agents give; `dnsmos:stride=1` runs the reference windowing.
On 15 bundled-voice clips of 2.6-7.3 s the two differ by 0.03 MOS on average (at most 0.12).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from speechrole.metrics.base import METRICS, RATE, Clip, Metric, MetricError, MetricValues
from speechrole.models import ModelMissingError, needs_module

WINDOW_S = 9.01
# The calibration polynomials of the non-personalised DNSMOS P.835 model (Microsoft DNS-Challenge
# `dnsmos_local.py`, as in speechmos 0.0.1.1): raw model outputs -> MOS.
POLY_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
POLY_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
POLY_OVR = np.poly1d([-0.06766283, 1.11546468, 0.04602535])


def windows(audio: np.ndarray, stride_s: float) -> np.ndarray:
    """(n, 9.01 s) windows: the clip repeated to 9.01 s when shorter (as the reference does), then every
    `stride_s` seconds, the last window ending where the audio ends."""
    length = int(WINDOW_S * RATE)
    short = len(audio) < length
    while len(audio) < length:
        audio = np.concatenate([audio, audio])
    if stride_s <= 1.0:  # the reference: hops of a second over the (repeated) audio
        count = int(np.floor(len(audio) / RATE) - WINDOW_S) + 1
        starts = [i * RATE for i in range(count)]
    elif short:  # one window already holds the whole clip
        starts = [0]
    else:
        step = int(stride_s * RATE)
        starts = list(range(0, len(audio) - length + 1, step))
        if starts[-1] + length < len(audio):
            starts.append(len(audio) - length)
    return np.stack([audio[s : s + length] for s in starts]).astype(np.float32)


class DNSMOS(Metric):
    name = "dnsmos"
    fields: ClassVar[dict[str, Literal["higher", "lower"]]] = {
        "sig": "higher",
        "bak": "higher",
        "ovrl": "higher",
        "p808": "higher",
    }

    def __init__(self, stride: float | str = WINDOW_S, threads: int | str = 1, **_: Any) -> None:
        self.stride = float(stride)
        self.threads = max(1, int(threads))  # per model call; metrics score clips in parallel instead
        self._sessions: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    @property
    def version(self) -> str:  # type: ignore[override]
        return "1" if self.stride == WINDOW_S else f"1-stride{self.stride:g}"

    def load(self) -> None:
        if self._sessions is not None:
            return
        if (why := needs_module("speechmos", "pip install speechmos onnxruntime")) is not None:
            raise ModelMissingError(f"DNSMOS: {why}")
        import importlib.util

        import onnxruntime as ort
        from librosa.feature import melspectrogram  # noqa: F401 - ~2 s of imports: loading, not the first clip

        spec = importlib.util.find_spec("speechmos")
        base = Path(next(iter(spec.submodule_search_locations))) / "dnsmos_models"  # type: ignore[union-attr]
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Two sessions take turns: a pool that spins waiting for work would steal the other's cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sessions = tuple(
            ort.InferenceSession(str(base / f), options, providers=["CPUExecutionProvider"])
            for f in ("sig_bak_ovr.onnx", "model_v8.onnx")
        )  # type: ignore[assignment]

    def _scores(self, audios: list[np.ndarray]) -> list[MetricValues]:
        """All clips through the P.835 model first, then all through P.808 (the models take turns
        less often, which keeps each one's working set in cache)."""
        from librosa import power_to_db
        from librosa.feature import melspectrogram

        assert self._sessions is not None
        primary, p808 = self._sessions
        segments = [windows(np.clip(audio, -1.0, 1.0), self.stride) for audio in audios]
        raws = [primary.run(None, {"input_1": s})[0] for s in segments]
        out: list[MetricValues] = []
        for segs, raw in zip(segments, raws, strict=True):
            mels = []
            for seg in segs:  # the P.808 model reads a log-mel spectrogram of each window
                mel = melspectrogram(y=seg[:-160], sr=RATE, n_fft=321, hop_length=160, n_mels=120)
                mels.append(((power_to_db(mel, ref=np.max) + 40) / 40).T)
            p808_mos = p808.run(None, {"input_1": np.stack(mels).astype(np.float32)})[0][:, 0]
            out.append(
                {
                    "sig": float(np.mean(POLY_SIG(raw[:, 0]))),
                    "bak": float(np.mean(POLY_BAK(raw[:, 1]))),
                    "ovrl": float(np.mean(POLY_OVR(raw[:, 2]))),
                    "p808": float(np.mean(p808_mos)),
                }
            )
        return out

    def measure(self, clips: list[Clip]) -> list[MetricValues | MetricError]:
        self.load()
        audible = [c for c in clips if "silent" not in c.flags]
        scored = iter(self._scores([c.audio for c in audible]))
        return [
            MetricError("silent clip: nothing to rate") if "silent" in c.flags else next(scored)
            for c in clips
        ]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "models": "speechmos 0.0.1.1 (DNSMOS P.835 sig_bak_ovr + P.808 model_v8)",
            "window_stride_s": self.stride,
        }


METRICS.register(
    "dnsmos",
    summary="DNSMOS SIG/BAK/OVRL and P.808 (bundled ONNX); dnsmos:stride=1 for the reference windowing",
    check=lambda: needs_module("speechmos", "pip install speechmos onnxruntime"),
)(DNSMOS)
