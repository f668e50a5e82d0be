"""Zero-shot voice cloning from the role's reference clip and transcript: F5-TTS and CosyVoice2.

These are the models the paper's cascades use. Their weights are not bundled (and cannot be fetched
here); with the package and weights present they load for real, otherwise they fail with one line
saying what is missing and where to put it.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from speechrole.agents.tts import TTS, TTSS
from speechrole.models import ModelMissingError, local_dir, needs_module
from speechrole.schema import Role


def _reference(role: Role) -> tuple[str, str]:
    if not role.reference_audio or not Path(role.reference_audio).is_file():
        raise ValueError(f"role {role.id!r} has no reference clip to clone")
    if not role.reference_transcript:
        raise ValueError(f"role {role.id!r} has no reference transcript (audios_text.json) to clone with")
    return role.reference_audio, role.reference_transcript


class _ZeroShot:
    """What both cloning backends share: the role's clip and transcript as the prompt, one synthesis
    at a time, and a seed per role, text and take (the same take gives the same audio)."""

    _lock: threading.Lock  # each backend holds its own

    def prepare(self, roles: Iterable[Role]) -> None:
        for role in roles:
            _reference(role)

    @staticmethod
    def seed_for(role: Role, text: str, take: int) -> int:
        return zlib.crc32(f"{role.id}\n{text}".encode()) + take


class F5TTSBackend(_ZeroShot):
    """F5-TTS (`f5_tts.api.F5TTS`), weights from a local checkpoint; 24 kHz; seeded per role and text.

    Note: the released F5-TTS weights are CC-BY-NC (trained on Emilia)."""

    def __init__(
        self,
        ckpt: str = "",
        vocab: str = "",
        model: str = "F5TTS_v1_Base",
        vocoder: str = "",
        device: str = "",
        nfe_step: int | str = 32,
    ) -> None:
        if (why := needs_module("f5_tts", "pip install f5-tts")) is not None:
            raise ModelMissingError(f"F5-TTS unavailable: {why}")
        hint = (
            "download F5TTS_v1_Base/model_1250000.safetensors (and vocab.txt) from the SWivid/F5-TTS "
            "repository and pass tts={name: f5-tts, ckpt: PATH, vocab: PATH} in an agent YAML"
        )
        if not ckpt:
            raise ModelMissingError(f"F5-TTS needs its checkpoint: {hint}")
        self.ckpt = local_dir(ckpt, "F5-TTS checkpoint", hint)
        from f5_tts.api import F5TTS

        self.model, self.nfe_step = model, int(nfe_step)
        self._tts = F5TTS(
            model=model,
            ckpt_file=str(self.ckpt),
            vocab_file=vocab,
            vocoder_local_path=vocoder or None,
            device=device or None,
        )
        self._lock = threading.Lock()

    def synthesize(self, text: str, role: Role, seed: int = 0) -> tuple[np.ndarray, int]:
        """`seed` varies the take (a retry after a failed check); the same seed gives the same audio."""
        ref_file, ref_text = _reference(role)
        with self._lock:
            wav, rate, _ = self._tts.infer(
                ref_file=ref_file,
                ref_text=ref_text,
                gen_text=text,
                nfe_step=self.nfe_step,
                seed=self.seed_for(role, text, seed),
                show_info=lambda *a, **k: None,
            )
        return np.asarray(wav, dtype=np.float32).reshape(-1), int(rate)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "f5-tts",
            "model": self.model,
            "ckpt": str(self.ckpt),
            "nfe_step": self.nfe_step,
            "license_note": "F5-TTS weights are CC-BY-NC",
        }


@TTSS.register(
    "f5-tts",
    summary="F5-TTS zero-shot cloning from the role's clip + transcript (needs f5-tts and its weights)",
    check=lambda: needs_module("f5_tts", "pip install f5-tts; weights from SWivid/F5-TTS"),
)
def _f5(**options: Any) -> TTS:
    return F5TTSBackend(**options)


class CosyVoice2Backend(_ZeroShot):
    """CosyVoice2 `inference_zero_shot`, every yielded piece kept (the released script kept only the first)."""

    def __init__(self, model: str = "") -> None:
        if (
            why := needs_module("cosyvoice", "install CosyVoice from its repository (FunAudioLLM/CosyVoice)")
        ) is not None:
            raise ModelMissingError(f"CosyVoice2 unavailable: {why}")
        hint = "download the CosyVoice2-0.5B model folder and pass tts=cosyvoice2:/path/to/CosyVoice2-0.5B"
        if not model:
            raise ModelMissingError(f"CosyVoice2 needs its model folder: {hint}")
        self.model_dir = local_dir(model, "CosyVoice2 model folder", hint)
        from cosyvoice.cli.cosyvoice import CosyVoice2

        self._tts = CosyVoice2(str(self.model_dir), load_jit=False, load_trt=False, fp16=False)
        self._lock = threading.Lock()

    def synthesize(self, text: str, role: Role, seed: int = 0) -> tuple[np.ndarray, int]:
        """`seed` varies the take (a retry after a failed check); the same seed gives the same audio."""
        import torch

        ref_file, ref_text = _reference(role)
        with self._lock:
            torch.manual_seed(self.seed_for(role, text, seed))
            pieces = [
                out["tts_speech"].cpu().numpy().reshape(-1)
                for out in self._tts.inference_zero_shot(text, ref_text, ref_file, stream=False)
            ]
        if not pieces:
            raise RuntimeError("CosyVoice2 returned no audio")
        return np.concatenate(pieces).astype(np.float32), int(self._tts.sample_rate)

    def describe(self) -> dict[str, Any]:
        return {"backend": "cosyvoice2", "model": str(self.model_dir)}


@TTSS.register(
    "cosyvoice2",
    summary="CosyVoice2 zero-shot cloning from the role's clip + transcript (needs CosyVoice and its weights)",
    check=lambda: needs_module("cosyvoice", "install CosyVoice (FunAudioLLM/CosyVoice) and its weights"),
)
def _cosyvoice(**options: Any) -> TTS:
    return CosyVoice2Backend(**options)
