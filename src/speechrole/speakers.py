"""Speaker embeddings: who a voice sounds like, as a unit vector (cosine = dot product).

Bundled tier: resemblyzer's GE2E encoder (weights in its wheel; needs torch). It picks the bank voice
nearest to a role's reference clip, and measures speaker similarity.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

from speechrole.audio import load_audio, resample
from speechrole.models import ModelMissingError


class SpeakerEncoder(Protocol):
    name: str

    def embed(self, audio: np.ndarray, rate: int) -> np.ndarray: ...


class ResemblyzerEncoder:
    """GE2E d-vectors (256-d, L2-normalised) from the resemblyzer package."""

    name = "resemblyzer"

    def __init__(self) -> None:
        try:
            import torch
            from resemblyzer import VoiceEncoder
        except ImportError as exc:
            raise ModelMissingError(
                f"speaker encoder unavailable: {exc.name} is not installed "
                "(pip install torch==2.13.0 librosa webrtcvad-wheels, then pip install --no-deps resemblyzer==0.1.4)"
            ) from None
        from librosa.feature import melspectrogram  # noqa: F401 - resemblyzer's: ~2 s of imports, paid here

        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        self._encoder = VoiceEncoder("cpu", verbose=False)
        self._lock = threading.Lock()

    def embed(self, audio: np.ndarray, rate: int) -> np.ndarray:
        from resemblyzer.audio import normalize_volume, trim_long_silences
        from resemblyzer.hparams import audio_norm_target_dBFS, sampling_rate

        mono = audio.reshape(len(audio), -1).mean(axis=1, keepdims=True).astype(np.float32)
        wav = normalize_volume(
            resample(mono, rate, sampling_rate)[:, 0], audio_norm_target_dBFS, increase_only=True
        )
        trimmed = trim_long_silences(wav)
        wav = trimmed if trimmed.size >= sampling_rate // 4 else wav  # VAD found next to no speech: keep all
        with self._lock:
            vector = self._encoder.embed_utterance(wav)
        return np.asarray(vector, dtype=np.float32)

    def embed_file(self, path: Path) -> np.ndarray:
        data, rate = load_audio(path)
        return self.embed(data, rate)


@cache
def default_encoder() -> ResemblyzerEncoder:
    """One encoder per process (loading takes about a second)."""
    return ResemblyzerEncoder()
