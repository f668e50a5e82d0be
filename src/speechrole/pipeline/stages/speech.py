"""From dialogues to speech: synthesize the user's turns in a neutral voice and the role's turns in the
role's voice, then verify each role turn (quality, intelligibility, speaker similarity to the
reference) and retry failures with the next voice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from speechrole.audio import resample, write_wav
from speechrole.pipeline.stage import Context, Resources, Row, Stage, drop, register
from speechrole.pipeline.stages.audio import ANALYSIS_RATE, STORE_RATE, cosine, mono_at
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
    """Voice choice for synthesis: the bank voices ranked by nearness to the role's reference clip."""

    def __init__(self) -> None:
        from speechrole.agents.tts import VoiceBankTTS

        self.bank = VoiceBankTTS()
        self._ranked: dict[str, list[Any]] = {}

    def ranked(self, row: Row) -> list[Any]:
        if row["role"] not in self._ranked:
            self._ranked[row["role"]] = [v for _, v in self.bank.ranked(_role(row))] or [
                self.bank.voice_for(_role(row))
            ]
        return self._ranked[row["role"]]

    def user_voice(self, row: Row, role_voice: str) -> Any:
        first, second = USER_VOICES.get(row["language"], USER_VOICES["en"])
        wanted = second if first == role_voice else first
        return next(v for v in self.bank.voices if v.id == wanted)


def speak(voice: Any, text: str, path: Path) -> float:
    from speechrole.agents.cascaded import speakable
    from speechrole.agents.tts import synthesize_with

    audio, rate = synthesize_with(voice, speakable(text) or text)
    stored = resample(audio.reshape(-1, 1), rate, STORE_RATE)[:, 0]
    write_wav(path, stored, STORE_RATE)
    return round(len(stored) / STORE_RATE, 3)


@register
class Synthesize(Stage):
    """Speak every turn: the user's in a neutral bank voice, the role's in the bank voice nearest to the
    role's reference clip (cloning backends take its place where their weights are present)."""

    name = "synthesize"
    reads = frozenset({"turns", "role", "language", "ref_audio_path"})
    writes = frozenset({"turns", "voice"})
    batch_size = 4
    resources = Resources(cpus=1.0)

    def setup(self, ctx: Context) -> None:
        self.ctx, self.voices = ctx, _Voices()

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            voice = self.voices.ranked(row)[0]
            user = self.voices.user_voice(row, voice.id)
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
                        "role_duration": speak(voice, turn["role"], r),
                    }
                )
            out.append({**row, "turns": turns, "voice": {"role": voice.id, "user": user.id}})
        return out


@register
class Verify(Stage):
    """Check every role turn: DNSMOS OVRL, ASR error against its text (English), speaker similarity to
    the reference; a failing dialogue is spoken again with the next-nearest voice, up to `retries`."""

    name = "verify"
    reads = frozenset({"turns", "role", "language", "ref_audio_path", "voice"})
    writes = frozenset({"turns", "voice", "verify"})
    batch_size = 4
    resources = Resources(cpus=1.0)

    def setup(self, ctx: Context) -> None:
        from speechrole.agents import load_builtin
        from speechrole.agents.asr import ASRS
        from speechrole.metrics.dnsmos import DNSMOS
        from speechrole.speakers import default_encoder

        load_builtin()
        self.ctx, self.voices = ctx, _Voices()
        self.dnsmos = DNSMOS()
        self.dnsmos.load()
        self.asr = ASRS.create("whisper-tiny-en")
        self.encoder = default_encoder()

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
        if row["language"] == "en":
            heard = self.asr.transcribe_array(audio, Language.EN)
            result["wer"] = round(error_rate(text, heard, Language.EN), 3)
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
            ref = self.encoder.embed(mono_at(Path(row["ref_audio_path"]), ANALYSIS_RATE), ANALYSIS_RATE)
            ranked = self.voices.ranked(row)
            retries = int(self.options.get("retries", 1))
            current = next((k for k, v in enumerate(ranked) if v.id == row["voice"]["role"]), 0)
            attempts = []
            for attempt in range(retries + 1):
                voice = ranked[min(current + attempt, len(ranked) - 1)]
                if attempt:  # speak the role's turns again with the next voice
                    for turn in row["turns"]:
                        turn["role_duration"] = speak(voice, turn["role"], Path(turn["role_audio"]))
                checks = [self._check(row, t["role_audio"], t["role"], ref) for t in row["turns"]]
                failures = self._failures(checks)
                attempts.append({"voice": voice.id, "failures": failures})
                if not failures:
                    verified = {
                        **row,
                        "voice": {**row["voice"], "role": voice.id},
                        "verify": {"checks": checks, "attempts": attempts},
                    }
                    out.append(verified)
                    break
            else:
                out.append(drop(row, f"verify failed: {'; '.join(attempts[-1]['failures'])[:300]}"))
        return out
