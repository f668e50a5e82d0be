"""From dialogues to speech: synthesize the user's turns in a neutral voice and the role's turns in the
role's voice, then verify each role turn (quality, intelligibility, speaker similarity to the
reference) and retry failures with the next voice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from speechrole.audio import resample, write_wav
from speechrole.pipeline.stage import Context, Resources, Row, Stage, drop, register
from speechrole.pipeline.stages.audio import (
    ANALYSIS_RATE,
    SPEAKER_ENCODER,
    STORE_RATE,
    _Encoder,
    cosine,
    mono_at,
)
from speechrole.schema import Language, Role

#: The user's voice per language (a bank voice; another one when the role would speak with it).
USER_VOICES = {
    "en": ("espeak:en-us+f2", "flite:slt"),
    "zh": ("espeak:cmn-latn-pinyin+f2", "espeak:cmn-latn-pinyin"),
}


def _role(row: Row) -> Role:
    p = row["profile"]
    return Role(
        id=row["role"],
        name=p.get("name") or row["role"],
        work=p.get("work", ""),
        language=Language(row["language"]),
        reference_audio=row["ref_audio_path"],
        reference_transcript=row["ref_text"],
    )


class _Voices:
    """Who speaks a dialogue. The user: a neutral bank voice. The role: a cloning backend (F5-TTS,
    CosyVoice2) from the role's reference clip, or the bank voices ranked by nearness to that clip.
    Attempt k is the k-th take: the k-th nearest bank voice, or the cloning backend with seed k."""

    def __init__(self, tts: str | dict[str, Any] = "voicebank") -> None:
        from speechrole.agents.base import create_backend, parse_backend
        from speechrole.agents.tts import TTSS, VoiceBankTTS

        name, _ = parse_backend(tts)
        self.bank = VoiceBankTTS()
        self.clone = None if name == "voicebank" else create_backend(TTSS, tts)
        self.clone_name = name
        self._ranked: dict[str, list[Any]] = {}

    def _bank_ranked(self, row: Row) -> list[Any]:
        """The role's bank voices, nearest first; a retry never takes the user's voice."""
        if row["role"] not in self._ranked:
            ranked = [v for _, v in self.bank.ranked(_role(row))] or [self.bank.voice_for(_role(row))]
            user = self._user_voice_id(row["language"], ranked[0].id)
            self._ranked[row["role"]] = ranked[:1] + [v for v in ranked[1:] if v.id != user]
        return self._ranked[row["role"]]

    @staticmethod
    def _user_voice_id(language: str, role_voice: str) -> str:
        first, second = USER_VOICES.get(language, USER_VOICES["en"])
        return second if first == role_voice else first

    def role_voice(self, row: Row, attempt: int) -> str:
        """The id of the role's voice at this attempt (recorded in the row)."""
        if self.clone is not None:
            return f"{self.clone_name}:seed{attempt}"
        ranked = self._bank_ranked(row)
        return str(ranked[min(attempt, len(ranked) - 1)].id)

    def speak_role(self, row: Row, text: str, path: Path, attempt: int) -> float:
        if self.clone is None:
            ranked = self._bank_ranked(row)
            return speak(ranked[min(attempt, len(ranked) - 1)], text, path)
        from speechrole.agents.cascaded import speakable

        audio, rate = self.clone.synthesize(speakable(text) or text, _role(row), seed=attempt)  # type: ignore[call-arg]
        return store(audio, rate, path)

    def user_voice(self, row: Row) -> Any:
        """The user's voice: the language's neutral voice (another one than the role's)."""
        role = self.role_voice(row, 0)
        wanted = self._user_voice_id(row["language"], role)
        others = [v for v in self.bank.voices if v.id != role]
        if not others:
            raise RuntimeError("no bank voice left for the user's turns: install espeak-ng (make demo does)")
        return next((v for v in others if v.id == wanted), others[0])


def tts_problem(tts: str | dict[str, Any]) -> str | None:
    """Why the `tts` option of synthesize and verify cannot be used here (asked before the run)."""
    from speechrole.agents.base import backend_problem
    from speechrole.agents.tts import TTSS

    return backend_problem(TTSS, tts)


def store(audio: np.ndarray, rate: int, path: Path) -> float:
    """Write a take at the storage rate; its duration in seconds."""
    stored = resample(np.asarray(audio, dtype=np.float32).reshape(-1, 1), rate, STORE_RATE)[:, 0]
    write_wav(path, stored, STORE_RATE)
    return round(len(stored) / STORE_RATE, 3)


def speak(voice: Any, text: str, path: Path) -> float:
    from speechrole.agents.cascaded import speakable
    from speechrole.agents.tts import synthesize_with

    return store(*synthesize_with(voice, speakable(text) or text), path)


@register
class Synthesize(Stage):
    """Speak every turn: the user's in a neutral bank voice, the role's in the role's voice — cloned from
    its reference clip (option `tts: {name: f5-tts, ckpt: ...}` or `cosyvoice2`) or, by default, the
    bank voice nearest to that clip."""

    name = "synthesize"
    known = frozenset({"tts"})
    reads = frozenset({"turns", "role", "language", "ref_audio_path"})
    writes = frozenset({"turns", "voice"})
    batch_size = 4
    resources = Resources(cpus=1.0)

    def check(self, config: dict[str, Any]) -> str | None:
        return tts_problem(self.options.get("tts", "voicebank"))

    def setup(self, ctx: Context) -> None:
        self.ctx, self.voices = ctx, _Voices(self.options.get("tts", "voicebank"))

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            user = self.voices.user_voice(row)
            turns = []
            for j, turn in enumerate(row["turns"]):
                u = self.ctx.path("tts", row["id"], f"{j}_user.wav")
                r = self.ctx.path("tts", row["id"], f"{j}_role.wav")
                turns.append(
                    {
                        **turn,
                        "user_audio": str(u),
                        "user_duration": speak(user, turn["user"], u),
                        "role_audio": str(r),
                        "role_duration": self.voices.speak_role(row, turn["role"], r, 0),
                    }
                )
            voice = {"role": self.voices.role_voice(row, 0), "user": user.id, "attempt": 0}
            out.append({**row, "turns": turns, "voice": voice})
        return out


@register
class Verify(Stage):
    """Check every role turn: DNSMOS OVRL, ASR error against its text (WER; CER for Chinese, given a
    multilingual `asr`), speaker similarity to the reference; a failing dialogue's role turns are
    spoken again — the next-nearest bank voice, or the cloning backend with a new seed — up to
    `retries` times. It takes synthesize's `tts` and the asr stage's `asr`."""

    name = "verify"
    uses = frozenset({SPEAKER_ENCODER})
    known = frozenset({"tts", "asr", "min_ovrl", "max_wer", "min_similarity", "retries"})
    reads = frozenset({"turns", "role", "language", "ref_audio_path", "voice"})
    writes = frozenset({"turns", "voice", "verify"})
    inherits = frozenset({"tts", "asr"})
    batch_size = 4
    resources = Resources(cpus=1.0)

    def check(self, config: dict[str, Any]) -> str | None:
        from speechrole.agents.asr import ASRS
        from speechrole.agents.base import backend_problem

        why = tts_problem(self.options.get("tts", "voicebank"))
        return why or backend_problem(ASRS, self.options.get("asr", "whisper-tiny-en"))

    def setup(self, ctx: Context) -> None:
        from speechrole.agents.asr import ASRS
        from speechrole.agents.base import create_backend
        from speechrole.metrics.dnsmos import DNSMOS

        self.ctx, self.voices = ctx, _Voices(self.options.get("tts", "voicebank"))
        self.dnsmos = DNSMOS()
        self.dnsmos.load()
        self.asr = create_backend(ASRS, self.options.get("asr", "whisper-tiny-en"))
        self.encoder = _Encoder(ctx.config).encoder
        self._refs: dict[str, np.ndarray] = {}

    def _reference(self, path: str) -> np.ndarray:
        """The reference clip's embedding, once per role's clip (every dialogue of a role shares it)."""
        if path not in self._refs:
            self._refs[path] = self.encoder.embed(mono_at(Path(path), ANALYSIS_RATE), ANALYSIS_RATE)
        return self._refs[path]

    def _check(self, row: Row, path: str, text: str, ref: np.ndarray) -> dict[str, Any]:
        from speechrole.metrics.base import MetricError, decode_clip
        from speechrole.metrics.intelligibility import error_rate

        clip = decode_clip(Path(path), path, Language(row["language"]), text)
        values = self.dnsmos.measure([clip])[0]
        result: dict[str, Any] = {
            "ovrl": None if isinstance(values, MetricError) else round(float(values["ovrl"]), 3)
        }
        audio = mono_at(Path(path), ANALYSIS_RATE)
        result["similarity"] = round(cosine(self.encoder.embed(audio, ANALYSIS_RATE), ref), 4)
        language = Language(row["language"])
        if language is Language.EN or not getattr(self.asr, "english_only", False):
            heard = self.asr.transcribe_array(audio, language)
            result["wer"] = round(error_rate(text, heard, language), 3)  # CER for Chinese
        return result

    def _failures(self, checks: list[dict[str, Any]]) -> list[str]:
        o = self.options
        out = []
        for j, c in enumerate(checks):
            if c["ovrl"] is None or c["ovrl"] < float(o.get("min_ovrl", 2.5)):
                out.append(f"turn {j}: DNSMOS OVRL {c['ovrl']}")
            if c.get("wer") is not None and c["wer"] > float(o.get("max_wer", 0.5)):
                out.append(f"turn {j}: WER {c['wer']}")
            if c["similarity"] < float(o.get("min_similarity", 0.6)):
                out.append(f"turn {j}: speaker similarity {c['similarity']}")
        return out

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            ref = self._reference(row["ref_audio_path"])
            retries = int(self.options.get("retries", 1))
            first = int(row["voice"].get("attempt", 0))
            attempts = []
            for attempt in range(first, first + retries + 1):
                if attempt > first:  # speak the role's turns again (next voice, or a new seed) into new
                    for j, turn in enumerate(row["turns"]):  # files: synthesize's stay as they were
                        path = self.ctx.path("tts", row["id"], f"{j}_role.try{attempt}.wav")
                        turn["role_duration"] = self.voices.speak_role(row, turn["role"], path, attempt)
                        turn["role_audio"] = str(path)
                checks = [self._check(row, t["role_audio"], t["role"], ref) for t in row["turns"]]
                failures = self._failures(checks)
                voice = self.voices.role_voice(row, attempt)
                attempts.append({"voice": voice, "failures": failures})
                if not failures:
                    verified = {
                        **row,
                        "voice": {**row["voice"], "role": voice, "attempt": attempt},
                        "verify": {"checks": checks, "attempts": attempts},
                    }
                    out.append(verified)
                    break
            else:
                out.append(drop(row, f"verify failed: {'; '.join(attempts[-1]['failures'])[:300]}"))
        return out
