"""Zero-shot voice cloning from the role's reference clip and transcript: F5-TTS and CosyVoice2.

These are the models the paper's cascades use. Their weights are not bundled (and cannot be fetched
here): they come from paths in the spec or from the local Hugging Face cache. With the package and
weights present they load for real, never asking the hub; otherwise they fail with one line saying
what is missing and where to put it.
"""

from __future__ import annotations

import inspect
import threading
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from speechrole.agents.tts import TTS, TTSS
from speechrole.audio import load_audio, probe, resample
from speechrole.models import (
    WEIGHTS_MISSING,
    ModelMissingError,
    cached_file,
    first_missing,
    hf_cache_dir,
    needs_module,
    weights_problem,
)
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


F5_REPO = "SWivid/F5-TTS"
F5_DEFAULT = "F5TTS_v1_Base"
F5_CKPT = f"{F5_DEFAULT}/model_1250000.safetensors"
VOCOS_REPO = "charactr/vocos-mel-24khz"
VOCOS_FILES = ("config.yaml", "pytorch_model.bin")
F5_INSTALL = "pip install f5-tts"
F5_HINT = (
    f"download {F5_CKPT} (and vocab.txt) from {F5_REPO} and pass "
    "tts={name: f5-tts, ckpt: PATH, vocab: PATH} in an agent YAML (vocoder: a folder holding "
    f"{VOCOS_REPO}'s config.yaml and pytorch_model.bin, unless that repo is in the Hugging Face cache)"
)


def f5_weights(options: Mapping[str, Any]) -> tuple[Path, Path | None, Path]:
    """The checkpoint, vocabulary (None: the package's own) and vocoder folder F5-TTS loads: from the
    options, else from the Hugging Face cache; `ModelMissingError` naming what is missing."""
    model = str(options.get("model") or F5_DEFAULT)
    if options.get("ckpt"):
        ckpt: Path | None = Path(str(options["ckpt"])).expanduser()
        if not ckpt.is_file():
            raise ModelMissingError(f"{WEIGHTS_MISSING}: F5-TTS checkpoint {ckpt} (ckpt); {F5_HINT}")
    else:
        ckpt = cached_file(F5_REPO, F5_CKPT) if model == F5_DEFAULT else None
        if ckpt is None:
            raise ModelMissingError(
                f"{WEIGHTS_MISSING}: no F5-TTS ckpt given and {F5_REPO}/{F5_CKPT} is not in the Hugging Face "
                f"cache ({hf_cache_dir()}); {F5_HINT}"
            )
    vocab = Path(str(options["vocab"])).expanduser() if options.get("vocab") else None
    if vocab is not None and not vocab.is_file():
        raise ModelMissingError(f"{WEIGHTS_MISSING}: F5-TTS vocabulary {vocab} (vocab); {F5_HINT}")
    if options.get("vocoder"):
        vocoder = Path(str(options["vocoder"])).expanduser()
    else:
        cached = cached_file(VOCOS_REPO, VOCOS_FILES[1])
        if cached is None:
            raise ModelMissingError(
                f"{WEIGHTS_MISSING}: no F5-TTS vocoder given and {VOCOS_REPO} is not in the Hugging Face cache "
                f"({hf_cache_dir()}); download its {' and '.join(VOCOS_FILES)} into a folder and pass vocoder: PATH"
            )
        vocoder = cached.parent
    if (missing := first_missing(vocoder, VOCOS_FILES)) is not None:
        raise ModelMissingError(f"{WEIGHTS_MISSING}: F5-TTS vocoder file {missing} ({VOCOS_REPO}, vocoder)")
    return ckpt, vocab, vocoder


class F5TTSBackend(_ZeroShot):
    """F5-TTS (`f5_tts.api.F5TTS`), weights from local files; 24 kHz; seeded per role and text.

    Note: the released F5-TTS weights are CC-BY-NC (trained on Emilia)."""

    def __init__(
        self,
        ckpt: str = "",
        vocab: str = "",
        model: str = F5_DEFAULT,
        vocoder: str = "",
        device: str = "",
        nfe_step: int | str = 32,
    ) -> None:
        if (why := needs_module("f5_tts", F5_INSTALL)) is not None:
            raise ModelMissingError(f"F5-TTS unavailable: {why}")
        self.ckpt, vocab_path, vocoder_dir = f5_weights(
            {"ckpt": ckpt, "vocab": vocab, "model": model, "vocoder": vocoder}
        )
        from f5_tts.api import F5TTS

        self.model, self.nfe_step = model, int(nfe_step)
        self._tts = F5TTS(
            model=model,
            ckpt_file=str(self.ckpt),
            vocab_file=str(vocab_path or ""),
            vocoder_local_path=str(vocoder_dir),  # a local vocoder: never the hub
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
    summary="F5-TTS zero-shot cloning from the role's clip + transcript: "
    "tts={name: f5-tts, ckpt: PATH, vocab: PATH, vocoder: DIR} (or SWivid/F5-TTS in the HF cache)",
    check=lambda: needs_module("f5_tts", F5_INSTALL),
    weights=lambda options: weights_problem(f5_weights, options),
)
def _f5(**options: Any) -> TTS:
    return F5TTSBackend(**options)


COSYVOICE_INSTALL = "install CosyVoice from its repository (FunAudioLLM/CosyVoice)"
COSYVOICE_REPO = "FunAudioLLM/CosyVoice2-0.5B"
#: what `CosyVoice2(model_dir)` reads (spk2info.pt is optional); a folder name ends in /
COSYVOICE_FILES = (
    "cosyvoice2.yaml",
    "llm.pt",
    "flow.pt",
    "hift.pt",
    "campplus.onnx",
    "speech_tokenizer_v2.onnx",
    "CosyVoice-BlankEN/",
)
COSYVOICE_HINT = (
    f"download the {COSYVOICE_REPO} model folder and pass tts=cosyvoice2:/path/to/CosyVoice2-0.5B"
)
PROMPT_RATE = 16000
PROMPT_MAX_S = 30.0  # CosyVoice2's speech tokenizer refuses longer prompts


def cosyvoice2_dir(options: Mapping[str, Any]) -> Path:
    """The CosyVoice2 model folder: `model` from the options, else a download in the Hugging Face or
    ModelScope cache; `ModelMissingError` naming the first missing file."""
    if options.get("model"):
        folder = Path(str(options["model"])).expanduser()
    else:
        cached = cached_file(COSYVOICE_REPO, COSYVOICE_FILES[0])
        candidates = [
            *([cached.parent] if cached is not None else []),
            Path("~/.cache/modelscope/hub/models/iic/CosyVoice2-0.5B").expanduser(),
            Path("~/.cache/modelscope/hub/iic/CosyVoice2-0.5B").expanduser(),
        ]
        found = [c for c in candidates if (c / COSYVOICE_FILES[0]).is_file()]
        if not found:
            raise ModelMissingError(
                f"{WEIGHTS_MISSING}: no CosyVoice2 model given and {COSYVOICE_REPO} is not in the Hugging Face "
                f"cache ({hf_cache_dir()}); {COSYVOICE_HINT}"
            )
        folder = found[0]
    if (missing := first_missing(folder, COSYVOICE_FILES)) is not None:
        raise ModelMissingError(f"{WEIGHTS_MISSING}: CosyVoice2 file {missing}; {COSYVOICE_HINT}")
    return folder


def prompt_speech_16k(path: Path) -> Any:
    """A clip as CosyVoice2's prompt tensor: mono float32 at 16 kHz, shape [1, T] (its `load_wav`)."""
    import torch

    data, rate = load_audio(path, field="reference_audio")
    mono = resample(data.mean(axis=1, keepdims=True), rate, PROMPT_RATE)[:, 0]
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)).unsqueeze(0)


def prompt_kind(method: Any) -> str:
    """How `inference_zero_shot` takes its prompt: `tensor` (its `prompt_speech_16k`, CosyVoice2 releases
    until late 2025) or `path` (its `prompt_wav`, later ones)."""
    try:
        names = list(inspect.signature(method).parameters)
    except (TypeError, ValueError):
        return "tensor"
    return "path" if "prompt_wav" in names else "tensor"


class CosyVoice2Backend(_ZeroShot):
    """CosyVoice2 `inference_zero_shot`, every yielded piece kept (the released script kept only the first).

    CosyVoice releases before December 2025 take the prompt as a 16 kHz tensor (`prompt_speech_16k`),
    later ones as a file (`prompt_wav`); the model's signature says which, and it gets that."""

    def __init__(self, model: str = "") -> None:
        if (why := needs_module("cosyvoice", COSYVOICE_INSTALL)) is not None:
            raise ModelMissingError(f"CosyVoice2 unavailable: {why}")
        self.model_dir = cosyvoice2_dir({"model": model})
        from cosyvoice.cli.cosyvoice import CosyVoice2

        self._tts = CosyVoice2(str(self.model_dir), load_jit=False, load_trt=False, fp16=False)
        self.prompt_as = prompt_kind(self._tts.inference_zero_shot)
        self._lock = threading.Lock()

    def prompt(self, role: Role) -> Any:
        """The role's clip as this CosyVoice takes it: a [1, T] 16 kHz tensor, or the file's path."""
        ref_file, _ = _reference(role)
        info = probe(Path(ref_file), field="reference_audio", decode=False)
        if info.duration_s > PROMPT_MAX_S:
            raise ValueError(
                f"role {role.id!r}: reference clip {ref_file} is {info.duration_s:.1f} s; "
                f"CosyVoice2 takes at most {PROMPT_MAX_S:g} s of prompt speech"
            )
        if self.prompt_as == "tensor":
            return prompt_speech_16k(Path(ref_file))
        if info.sample_rate < PROMPT_RATE:
            raise ValueError(
                f"role {role.id!r}: reference clip {ref_file} is {info.sample_rate} Hz; CosyVoice2 needs 16 kHz or more"
            )
        return ref_file

    def synthesize(self, text: str, role: Role, seed: int = 0) -> tuple[np.ndarray, int]:
        """`seed` varies the take (a retry after a failed check); the same seed gives the same audio."""
        import torch

        _, ref_text = _reference(role)
        prompt = self.prompt(role)
        with self._lock:
            torch.manual_seed(self.seed_for(role, text, seed))
            pieces = [
                out["tts_speech"].cpu().numpy().reshape(-1)
                for out in self._tts.inference_zero_shot(text, ref_text, prompt, stream=False)
            ]
        if not pieces:
            raise RuntimeError("CosyVoice2 returned no audio")
        return np.concatenate(pieces).astype(np.float32), int(self._tts.sample_rate)

    def describe(self) -> dict[str, Any]:
        return {"backend": "cosyvoice2", "model": str(self.model_dir), "prompt": self.prompt_as}


@TTSS.register(
    "cosyvoice2",
    summary="CosyVoice2 zero-shot cloning from the role's clip + transcript: "
    "tts=cosyvoice2:/path/to/CosyVoice2-0.5B (or that repo in the HF cache)",
    check=lambda: needs_module("cosyvoice", COSYVOICE_INSTALL),
    weights=lambda options: weights_problem(cosyvoice2_dir, options),
)
def _cosyvoice(**options: Any) -> TTS:
    return CosyVoice2Backend(**options)
