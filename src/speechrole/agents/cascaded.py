"""The cascaded agent: speech recognition -> a text LLM playing the role -> speech synthesis in its voice.

Every stage is a registered backend, so one component can be swapped at a time. Each reply records
the intermediates and the latency of each stage; in streaming mode the LLM's text is cut at sentence
boundaries and spoken as it comes, and the time to first audio is recorded.

Intermediates (written to generations.jsonl): `asr` (what was heard), `llm` (what was said), and,
only when they happened, `thinking` (a thinking model's reasoning, stripped and never spoken) and
`truncated` (the token limit that cut the answer, e.g. "max_tokens 512 reached").
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from speechrole.agents.asr import ASRS
from speechrole.agents.base import AGENTS, Agent, TurnRequest, parse_backend
from speechrole.agents.llm import LLMS, Messages
from speechrole.agents.tts import TTSS
from speechrole.audio import resample, write_wav
from speechrole.schema import AgentReply, Benchmark, Language

# A sentence ends at Western punctuation followed by whitespace (so "Mr." or "3." at the end of what has
# streamed so far is not cut yet), or at CJK punctuation, which needs no space.
_SENTENCE_END = re.compile(r"[.!?;…]+[\"'”’)\]]*\s+|[。！？；]+[”’」』]*")
_HAN = re.compile(r"[\u3400-\u9fff]")
_STAGE_DIRECTIONS = re.compile(r"\*[^*]{0,200}\*|\[[^\]]{0,200}\]|【[^】]{0,200}】|（[^）]{0,60}）")
#: A first spoken chunk shorter than this waits for more text (a lone "Ah." sounds broken).
MIN_CHUNK_CHARS = 12


#: The offline agent's 135M model rambles; asked for brevity it stays closer to the role.
OFFLINE_HINT = "Answer in character, in one to three short sentences."


def speakable(text: str) -> str:
    """What the voice should say: stage directions (*sighs*, [laughs], 【轻笑】) and markdown removed."""
    cleaned = _STAGE_DIRECTIONS.sub(" ", text)
    cleaned = re.sub(r"[#*_`>]+", " ", cleaned)
    return re.sub(r"\s+", " ", cleaned).strip()


def sentences(pieces: Iterable[str], min_chars: int = MIN_CHUNK_CHARS) -> Iterator[str]:
    """Regroup streamed text into sentences, each given out as soon as it is complete."""
    buffer = ""
    for piece in pieces:
        buffer += piece
        while (cut := _first_cut(buffer, min_chars)) is not None:
            yield buffer[:cut].strip()
            buffer = buffer[cut:]
    if buffer.strip():
        yield buffer.strip()


def _first_cut(text: str, min_chars: int) -> int | None:
    return next(
        (m.end() for m in _SENTENCE_END.finditer(text) if _weight(text[: m.end()]) >= min_chars), None
    )


def _weight(text: str) -> int:
    """Length in Latin-character equivalents: a Han character says about as much as a short word."""
    return len(text) + 2 * len(_HAN.findall(text))


def complete_sentences(text: str) -> str:
    """Drop a trailing fragment (a generation cut by its token limit) when a full sentence precedes it."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text + " ")]
    return text[: ends[-1]].strip() if ends and ends[-1] < len(text.rstrip()) else text.strip()


def ends_a_sentence(text: str) -> bool:
    """Whether `text` ends with sentence-final punctuation (not cut off midway)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text + " ")]
    return bool(ends) and ends[-1] >= len(text.rstrip())


def role_messages(request: TurnRequest, heard: str, hint: str = "") -> Messages:
    """The role-play conversation: the sample's system prompt (plus the agent's style hint, if any), the
    history, and what the agent heard."""
    system = request.system_prompt() + (f"\n\n{hint}" if hint else "")
    messages: Messages = [{"role": "system", "content": system}]
    for exchange in request.history:
        messages += [
            {"role": "user", "content": exchange.user},
            {"role": "assistant", "content": exchange.assistant},
        ]
    return [*messages, {"role": "user", "content": heard}]


class CascadedAgent(Agent):
    """ASR -> LLM -> TTS. Stage options go as `llm.quantize=int8`; `asr_zh=gold` picks another ASR for
    one language (e.g. where the default model cannot hear it)."""

    def __init__(
        self,
        asr: str | dict[str, Any] = "whisper-tiny-en",
        llm: str | dict[str, Any] = "smollm2",
        tts: str | dict[str, Any] = "voicebank",
        streaming: bool | str = False,
        hint: str = "",
        **options: Any,
    ) -> None:
        stages: dict[str, dict[str, Any]] = {"asr": {}, "llm": {}, "tts": {}}
        by_language: dict[Language, str | dict[str, Any]] = {}
        for key, value in options.items():
            stage, dot, option = key.partition(".")
            if dot and stage in stages:
                stages[stage][option] = value
            elif key.startswith("asr_") and key[4:] in {lang.value for lang in Language}:
                by_language[Language(key[4:])] = value
            else:
                raise ValueError(
                    f"unknown option {key!r} (stage options go as asr.X, llm.X, tts.X; asr_zh=...)"
                )
        self.specs = {"asr": asr, "llm": llm, "tts": tts}
        self.hint = hint  # appended to the system prompt, e.g. to keep a small model's answers short
        self.asr = _create(ASRS, asr, stages["asr"])
        self.asr_by_language = {lang: _create(ASRS, spec, {}) for lang, spec in by_language.items()}
        self.llm = _create(LLMS, llm, stages["llm"])
        self.tts = _create(TTSS, tts, stages["tts"])
        self.streaming = str(streaming).lower() in {"1", "true", "yes", "on"}

    @property
    def thread_safe(self) -> bool:  # type: ignore[override]
        parts = (self.asr, self.llm, self.tts, *self.asr_by_language.values())
        return all(getattr(part, "thread_safe", False) for part in parts)

    def prepare(self, bench: Benchmark) -> None:
        self.tts.prepare(bench.roles.values())

    def reply(self, request: TurnRequest) -> AgentReply:
        started = time.perf_counter()
        asr = self.asr_by_language.get(request.role.language, self.asr)
        heard = asr.transcribe(request.user_audio, request.role.language, request.user_text)
        t_asr = time.perf_counter()
        messages = role_messages(request, heard, self.hint)
        chunks: list[tuple[np.ndarray, int]] = []
        latency: dict[str, float] = {"asr": t_asr - started}
        if self.streaming:
            text, tts_time, first_audio = "", 0.0, None
            stream = self.llm.answer_stream(messages)
            for sentence in sentences(stream):
                if text and stream.answer.truncated and not ends_a_sentence(sentence):
                    break  # the fragment the token limit cut off, dropped as complete_sentences does
                text += (" " if text else "") + sentence
                if (spoken := speakable(sentence)) and any(ch.isalnum() for ch in spoken):
                    t0 = time.perf_counter()
                    chunks.append(self.tts.synthesize(spoken, request.role))
                    tts_time += time.perf_counter() - t0
                    first_audio = first_audio or time.perf_counter() - started
            latency.update(llm=time.perf_counter() - t_asr - tts_time, tts=tts_time)
            latency["first_audio"] = first_audio if first_audio is not None else time.perf_counter() - started
            notes = stream.answer.notes()
        else:
            answer = self.llm.answer(messages)
            text, notes = complete_sentences(answer.text), answer.notes()
            t_llm = time.perf_counter()
            spoken = speakable(text)
            if spoken and any(ch.isalnum() for ch in spoken):
                chunks.append(self.tts.synthesize(spoken, request.role))
            latency.update(llm=t_llm - t_asr, tts=time.perf_counter() - t_llm)
            latency["first_audio"] = time.perf_counter() - started
        if not chunks:
            raise RuntimeError(f"the LLM's answer has nothing to say aloud: {text[:80]!r}")
        audio, rate = _join(chunks)
        write_wav(request.audio_out, audio, rate)
        latency["total"] = time.perf_counter() - started
        return AgentReply(
            text=text.strip(),
            audio=str(request.audio_out),
            intermediates={"asr": heard, "llm": text.strip(), **notes},
            latency_s={k: round(v, 4) for k, v in latency.items()},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "agent": "cascaded",
            "streaming": self.streaming,
            "hint": self.hint,
            "asr": self.asr.describe(),
            **{f"asr_{lang.value}": part.describe() for lang, part in self.asr_by_language.items()},
            "llm": self.llm.describe(),
            "tts": self.tts.describe(),
        }


def _create(registry: Any, spec: str | dict[str, Any], extra: dict[str, Any]) -> Any:
    name, options = parse_backend(spec)
    return registry.create(name, **{**options, **extra})


def _join(chunks: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, int]:
    rate = chunks[0][1]
    parts = [c if r == rate else resample(c.reshape(-1, 1), r, rate).reshape(-1) for c, r in chunks]
    return np.concatenate(parts), rate


@AGENTS.register(
    "cascaded",
    summary="ASR -> text LLM -> TTS; e.g. cascaded:asr=whisper-tiny-en,llm=openai:qwen3-8b@http://127.0.0.1:8000/v1,tts=voicebank",
)
def _cascaded(**options: Any) -> Agent:
    return CascadedAgent(**options)


@AGENTS.register(
    "offline",
    summary="the bundled offline cascade: whisper tiny.en -> SmolLM2-135M -> voice bank "
    "(no offline Chinese ASR exists: Chinese turns use the benchmark's transcript, asr_zh=gold)",
)
def _offline(**options: Any) -> Agent:
    defaults = {
        "asr": "whisper-tiny-en",
        "asr_zh": "gold",
        "llm": "smollm2",
        "tts": "voicebank",
        "hint": OFFLINE_HINT,
    }
    return CascadedAgent(**{**defaults, **options})
