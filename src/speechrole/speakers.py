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


#: Partial utterances per network call in `embed_many`, always (zero-padded): the same clip gives the
#: same numbers whatever else is in its batch, under any executor.
PARTIALS_PER_CALL = 16


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

    def _prepare(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """resemblyzer's input: mono at its rate, volume raised to its target, long silences cut."""
        from resemblyzer.audio import normalize_volume, trim_long_silences
        from resemblyzer.hparams import audio_norm_target_dBFS, sampling_rate

        mono = audio.reshape(len(audio), -1).mean(axis=1, keepdims=True).astype(np.float32)
        wav = normalize_volume(
            resample(mono, rate, sampling_rate)[:, 0], audio_norm_target_dBFS, increase_only=True
        )
        trimmed = trim_long_silences(wav)
        return trimmed if trimmed.size >= sampling_rate // 4 else wav  # VAD found next to no speech: keep all

    def embed(self, audio: np.ndarray, rate: int) -> np.ndarray:
        wav = self._prepare(audio, rate)
        with self._lock:
            vector = self._encoder.embed_utterance(wav)
        return np.asarray(vector, dtype=np.float32)

    def embed_many(self, audios: list[np.ndarray], rate: int) -> list[np.ndarray]:
        """Embeddings of many clips, their 1.6 s partial utterances (resemblyzer's, as `embed` cuts
        them) through the network together, `PARTIALS_PER_CALL` at a time, zero-padded: a clip's
        embedding never depends on the clips that share its batch (a test holds it so)."""
        import torch
        from resemblyzer.audio import wav_to_mel_spectrogram

        mels: list[np.ndarray] = []
        owner: list[int] = []
        for i, audio in enumerate(audios):
            wav = self._prepare(audio, rate)
            wav_slices, mel_slices = self._encoder.compute_partial_slices(len(wav), 1.3, 0.75)
            wav = np.pad(wav, (0, max(0, wav_slices[-1].stop - len(wav))))
            mel = wav_to_mel_spectrogram(wav)
            mels += [mel[s] for s in mel_slices]
            owner += [i] * len(mel_slices)
        if not mels:
            return []
        batch = np.stack(mels).astype(np.float32)
        batch = np.concatenate(
            [batch, np.zeros((-len(batch) % PARTIALS_PER_CALL, *batch.shape[1:]), np.float32)]
        )
        with self._lock, torch.no_grad():
            partials = np.concatenate(
                [
                    self._encoder(torch.from_numpy(batch[k : k + PARTIALS_PER_CALL])).numpy()
                    for k in range(0, len(batch), PARTIALS_PER_CALL)
                ]
            )[: len(owner)]
        owners = np.array(owner)
        out = []
        for i in range(len(audios)):
            raw = partials[owners == i].mean(axis=0)
            out.append((raw / np.linalg.norm(raw, 2)).astype(np.float32))
        return out

    def embed_file(self, path: Path) -> np.ndarray:
        data, rate = load_audio(path)
        return self.embed(data, rate)


@cache
def default_encoder() -> ResemblyzerEncoder:
    """One encoder per process (loading takes about a second)."""
    return ResemblyzerEncoder()
