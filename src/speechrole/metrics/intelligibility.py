"""Intelligibility: does speech recognition hear what the speaker meant to say?

ASR of the clip against its own text (the agent's answer as spoken, stage directions removed; the
reference answer's text for reference clips): word error rate for English, character error rate for
Chinese, after normalisation (case, punctuation, spaces). Uses the agents' ASR backends; the bundled
whisper tiny.en is English-only, so Chinese clips need a multilingual model (`intelligibility:asr=...`).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from speechrole.metrics.base import METRICS, Clip, Metric, MetricError, MetricValues
from speechrole.models import needs_module
from speechrole.schema import Language

_PUNCT = re.compile(r"[^\w\s']|_", re.UNICODE)
_HAN = re.compile(r"[\u3400-\u9fff]")


def normalise_words(text: str) -> str:
    """English: lower case, no punctuation (apostrophes inside words kept), single spaces."""
    text = _PUNCT.sub(" ", text.lower().replace("’", "'"))
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def normalise_chars(text: str) -> str:
    """Chinese: characters only, no punctuation or spaces (Latin letters lower-cased)."""
    return "".join(ch for ch in _PUNCT.sub("", text.lower()) if not ch.isspace())


def error_rate(reference: str, hypothesis: str, language: Language) -> float:
    import jiwer

    if language is Language.ZH:
        ref, hyp = normalise_chars(reference), normalise_chars(hypothesis)
        return float(jiwer.cer(ref, hyp)) if ref else float("nan")
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    return float(jiwer.wer(ref, hyp)) if ref else float("nan")


class Intelligibility(Metric):
    name = "intelligibility"
    fields: ClassVar[dict[str, Literal["higher", "lower", "none"]]] = {"error_rate": "lower"}
    reads_text = True

    def __init__(self, asr: str = "whisper-tiny-en", **_: Any) -> None:
        self.asr_spec = asr
        self._asr: Any = None
        self._english_only = asr == "whisper-tiny-en"

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"1-{self.asr_spec}"

    def load(self) -> None:
        if self._asr is None:
            from speechrole.agents import load_builtin
            from speechrole.agents.asr import ASRS
            from speechrole.agents.base import parse_backend

            load_builtin()
            name, options = parse_backend(self.asr_spec)
            self._asr = ASRS.create(name, **options)
            self._english_only = self._english_only or bool(getattr(self._asr, "english_only", False))

    def measure(self, clips: list[Clip]) -> list[MetricValues | MetricError]:
        self.load()
        out: list[MetricValues | MetricError] = []
        for clip in clips:
            if not clip.text.strip():
                out.append(MetricError("no text to compare with"))
            elif "silent" in clip.flags:
                out.append(MetricError("silent clip: nothing to recognise"))
            elif clip.language is Language.ZH and self._english_only:
                out.append(
                    MetricError(
                        f"the ASR ({self.asr_spec}) is English-only; pass intelligibility:asr=whisper:MODEL for Chinese"
                    )
                )
            else:
                heard = self._asr.transcribe_array(clip.audio, clip.language)
                rate = error_rate(clip.text, heard, clip.language)
                out.append(
                    MetricError("nothing left of the text after normalisation")
                    if rate != rate
                    else {"error_rate": rate, "asr_text": heard}
                )
        return out

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "asr": self._asr.describe() if self._asr else self.asr_spec,
            "unit": "WER for English, CER for Chinese",
        }


METRICS.register(
    "intelligibility",
    summary="ASR of the clip vs its own text: WER (en) / CER (zh); intelligibility:asr=whisper:MODEL for Chinese",
    check=lambda: needs_module("faster_whisper", "pip install 'speechrole[agents]'"),
)(Intelligibility)
