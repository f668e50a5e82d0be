"""Speech synthesis backends for cascaded agents.

Offline, no cloning model exists, so the `voicebank` backend gives each role the bundled voice nearest
to its reference clip by speaker embedding (espeak-ng, flite and festival voices from Debian), and
records which voice and how near. With weights present, F5-TTS and CosyVoice2 clone the role's voice
from its reference clip and transcript (`cloning.py`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from speechrole.audio import load_audio
from speechrole.models import ModelMissingError
from speechrole.registry import Registry
from speechrole.schema import Language, Role


class TTS(Protocol):
    def prepare(self, roles: Iterable[Role]) -> None: ...

    def synthesize(self, text: str, role: Role) -> tuple[np.ndarray, int]:
        """Mono float32 samples and their rate."""
        ...

    def describe(self) -> dict[str, Any]: ...


TTSS: Registry[TTS] = Registry("TTS backend")


@dataclass(frozen=True)
class BankVoice:
    engine: str  # espeak | flite | festival
    voice: str  # the engine's name for it
    language: Language

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.voice}"


def _run(cmd: list[str], stdin: str | None, out: Path) -> None:
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0 or not out.is_file() or out.stat().st_size < 100:
        raise RuntimeError(f"{cmd[0]} failed ({result.returncode}): {result.stderr.strip()[:200]}")


def _espeak(voice: str, text: str, out: Path) -> None:
    _run(["espeak-ng", "-v", voice, "-w", str(out), "--stdin"], text, out)


def _flite(voice: str, text: str, out: Path) -> None:
    _run(["flite", "-voice", voice, "-t", text, "-o", str(out)], None, out)


def _festival(voice: str, text: str, out: Path) -> None:
    _run(["text2wave", "-eval", f"(voice_{voice})", "-o", str(out)], text, out)


#: engine -> (program that must be on PATH, synthesiser, Debian packages that provide it)
ENGINES = {
    "espeak": ("espeak-ng", _espeak, "espeak-ng"),
    "flite": ("flite", _flite, "flite"),
    "festival": ("text2wave", _festival, "festival festvox-us-slt-hts festvox-kallpc16k"),
}

#: Mutually distinct voices (resemblyzer cosine between them mostly 0.45-0.8; see research notes).
DEFAULT_BANK: tuple[BankVoice, ...] = (
    BankVoice("flite", "awb", Language.EN),
    BankVoice("flite", "rms", Language.EN),
    BankVoice("flite", "slt", Language.EN),
    BankVoice("flite", "kal16", Language.EN),
    BankVoice("festival", "cmu_us_slt_arctic_hts", Language.EN),
    BankVoice("festival", "kal_diphone", Language.EN),
    BankVoice("espeak", "en-us+m3", Language.EN),
    BankVoice("espeak", "en-us+f2", Language.EN),
    BankVoice("espeak", "en-gb-scotland+m2", Language.EN),
    # Mandarin: `cmn-latn-pinyin`, not `cmn` (which reads the pinyin as English in espeak-ng 1.51).
    BankVoice("espeak", "cmn-latn-pinyin", Language.ZH),
    BankVoice("espeak", "cmn-latn-pinyin+f2", Language.ZH),
    BankVoice("espeak", "cmn-latn-pinyin+m3", Language.ZH),
)

CALIBRATION = {
    Language.EN: "I have been thinking about what you said yesterday, and I believe you were right about the ship.",
    Language.ZH: "我昨天想了很久你说的话，我觉得你说得对，我们明天一早就出发吧。",
}


def synthesize_with(voice: BankVoice, text: str) -> tuple[np.ndarray, int]:
    """Render `text` with one bank voice; mono float32 and its rate."""
    program, render, packages = ENGINES[voice.engine]
    if shutil.which(program) is None:
        raise ModelMissingError(f"{program} is not installed (Debian: apt-get install {packages})")
    with tempfile.TemporaryDirectory(prefix="speechrole-tts-") as tmp:
        out = Path(tmp) / "out.wav"
        render(voice.voice, text, out)
        data, rate = load_audio(out)
    return data.mean(axis=1).astype(np.float32), rate


def installed_voices(bank: Iterable[BankVoice] = DEFAULT_BANK) -> list[BankVoice]:
    return [v for v in bank if shutil.which(ENGINES[v.engine][0]) is not None]


def _check_bank() -> str | None:
    if not installed_voices():
        return "no TTS engine found (Debian: apt-get install espeak-ng flite festival festvox-us-slt-hts festvox-kallpc16k)"
    from speechrole.models import needs_module

    return needs_module(
        "resemblyzer", "pip install --no-deps resemblyzer==0.1.4 (voices are matched by speaker embedding)"
    )


class VoiceBankTTS:
    """Each role speaks with the installed bank voice nearest to its reference clip (of its language)."""

    thread_safe = True

    def __init__(self) -> None:
        self.voices = installed_voices()
        if not self.voices:
            raise ModelMissingError(_check_bank() or "no bank voice installed")
        self.assignment: dict[str, dict[str, Any]] = {}
        self._embeddings: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _voice_embedding(self, voice: BankVoice) -> np.ndarray:
        from speechrole.speakers import default_encoder

        if voice.id not in self._embeddings:
            audio, rate = synthesize_with(voice, CALIBRATION[voice.language])
            self._embeddings[voice.id] = default_encoder().embed(audio, rate)
        return self._embeddings[voice.id]

    def ranked(self, role: Role) -> list[tuple[float, BankVoice]]:
        """The role's language's voices, nearest to its reference clip first (empty without a clip)."""
        candidates = [v for v in self.voices if v.language is role.language] or self.voices
        if not (role.reference_audio and Path(role.reference_audio).is_file()):
            return []
        from speechrole.speakers import default_encoder

        target = default_encoder().embed_file(Path(role.reference_audio))
        scored = [(float(self._voice_embedding(v) @ target), v) for v in candidates]
        return sorted(scored, key=lambda sv: (-sv[0], sv[1].id))

    def _assign(self, role: Role) -> dict[str, Any]:
        ranked = self.ranked(role)
        if ranked:
            return {
                "voice": ranked[0][1].id,
                "how": "nearest to the reference clip",
                "similarity": round(ranked[0][0], 4),
                "runner_up": ranked[1][1].id if len(ranked) > 1 else None,
            }
        candidates = [v for v in self.voices if v.language is role.language] or self.voices
        voice = candidates[zlib.crc32(role.id.encode()) % len(candidates)]
        return {"voice": voice.id, "how": "by role id (no reference clip)", "similarity": None}

    def prepare(self, roles: Iterable[Role]) -> None:
        with self._lock:
            for role in roles:
                if role.id not in self.assignment:
                    self.assignment[role.id] = self._assign(role)

    def voice_for(self, role: Role) -> BankVoice:
        self.prepare([role])
        wanted = self.assignment[role.id]["voice"]
        return next(v for v in self.voices if v.id == wanted)

    def synthesize(self, text: str, role: Role) -> tuple[np.ndarray, int]:
        return synthesize_with(self.voice_for(role), text)

    def describe(self) -> dict[str, Any]:
        versions = {e: _engine_version(e) for e, (program, _, _) in ENGINES.items() if shutil.which(program)}
        return {
            "backend": "voicebank",
            "voices": [v.id for v in self.voices],
            "engines": versions,
            "speaker_encoder": "resemblyzer 0.1.4 (GE2E)",
            "assignment": dict(sorted(self.assignment.items())),
        }


def _engine_version(engine: str) -> str:
    program = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival"}[engine]
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    first = next((line for line in out.splitlines() if line.strip()), "")
    return first.strip()[:80] or hashlib.sha256(out.encode()).hexdigest()[:12]


@TTSS.register(
    "voicebank",
    summary="bundled voices (espeak-ng, flite, festival), nearest to each role's clip",
    check=_check_bank,
)
def _voicebank(**options: Any) -> TTS:
    return VoiceBankTTS(**options)
