"""The core nouns of speechrole, typed and validated: Role, Turn, Sample, Benchmark, AgentReply, Judgment.

Every other module speaks in these types. They are plain pydantic models so that anything read from disk
is validated once, at the boundary, and the rest of the code can trust it.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Language(str, Enum):
    EN = "en"
    ZH = "zh"


class Mode(str, Enum):
    """Single-turn or multi-turn; the official tree names them `single_turn`/`multi_turn`."""

    SINGLE = "single"
    MULTI = "multi"


#: The 8 judge metrics, in the official order (the key stem of `{Metric}_results` in judge files).
METRICS: tuple[str, ...] = (
    "Instruction_Adherence",
    "Speech_Fluency",
    "Conversational_Coherence",
    "Speech_Naturalness",
    "Prosodic_Consistency",
    "Emotion_Appropriateness",
    "Personality_Consistency",
    "Knowledge_Consistency",
)

#: Short labels used in tables.
METRIC_ABBREV: dict[str, str] = dict(
    zip(METRICS, ("IA", "SF", "CC", "SN", "PC", "EA", "PersC", "KC"), strict=True)
)

#: The paper's three aspects; overall is the mean of the 8 metrics.
GROUPS: dict[str, tuple[str, ...]] = {
    "interaction": METRICS[0:3],
    "expressiveness": METRICS[3:6],
    "fidelity": METRICS[6:8],
}

SCORE_MIN, SCORE_MAX = 1, 10


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Role(_Model):
    """A character: who to play, in which language, and with which reference voice."""

    id: str = Field(min_length=1)
    name: str
    work: str = ""
    language: Language
    profile: str = ""
    reference_audio: str | None = None  # opaque path, relative to the benchmark root
    reference_transcript: str | None = None
    defects: tuple[str, ...] = ()  # known data defects, reported next to every score of this role


class Turn(_Model):
    """One exchange: the user's question and the reference answer, each as text and audio."""

    user_text: str
    reference_text: str
    user_audio: str | None = None
    #: the selected reference rendering (see `Benchmark.reference_set`)
    reference_audio: str | None = None
    #: every reference rendering the data carries, by field name (`role_speech_path`, `role_speech_path1`, ...)
    reference_audios: dict[str, str] = Field(default_factory=dict)


class Sample(_Model):
    """One dialogue of a role, judged as a whole. `index` is its position in the role's test file."""

    role: str
    mode: Mode
    index: int = Field(ge=0)
    turns: tuple[Turn, ...] = Field(min_length=1)
    system_prompt: str = ""
    context: str = ""
    category: str = ""
    source: str = ""  # the file this sample was read from, for error messages

    @property
    def key(self) -> str:
        return sample_key(self.mode, self.role, self.index)


def sample_key(mode: Mode | str, role: str, index: int) -> str:
    """The stable identity of a sample across benchmarks, outputs, judgments and scores."""
    return f"{Mode(mode).value}/{role}/{index}"


class Benchmark(_Model):
    """A loaded benchmark: its roles and samples, and the root its audio paths are resolved in."""

    name: str
    root: Path
    roles: dict[str, Role]
    samples: tuple[Sample, ...]
    reference_set: str = "role_speech_path"
    content_hash: str = ""

    @model_validator(mode="after")
    def _samples_have_roles(self) -> Benchmark:
        missing = sorted({s.role for s in self.samples} - set(self.roles))
        if missing:
            raise ValueError(f"samples refer to unknown roles: {missing}")
        return self

    def samples_of(self, role: str, mode: Mode | None = None) -> list[Sample]:
        return [s for s in self.samples if s.role == role and (mode is None or s.mode == mode)]

    def sample(self, key: str) -> Sample | None:
        return next((s for s in self.samples if s.key == key), None)


class AgentReply(_Model):
    """What an agent says for one user turn: text, audio, intermediates (ASR text, ...), stage latencies."""

    text: str
    audio: str | None = None  # path of the written clip
    intermediates: dict[str, str] = Field(default_factory=dict)
    latency_s: dict[str, float] = Field(default_factory=dict)


class MetricScore(_Model):
    """One metric's paired judge scores, always (tested agent, reference), whatever order the judge saw."""

    test: int = Field(ge=SCORE_MIN, le=SCORE_MAX)
    ref: int = Field(ge=SCORE_MIN, le=SCORE_MAX)
    reason: str = ""

    @field_validator("test", "ref", mode="before")
    @classmethod
    def _strict_int(cls, value: object) -> object:
        # A string or float score is a judge or file defect, never silently coerced.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"score must be an integer, got {value!r}")
        return value


class Judgment(_Model):
    """One judge verdict on one sample. Unscored judgments carry their reason and are never a score.

    `scores` holds only the metrics that were read and validated; `problems` says, per metric, why a
    metric is missing. A judgment read from an official result file has protocol `official` and order `AB`.
    """

    sample: str  # sample key, see `sample_key`
    status: Literal["scored", "unscored"]
    scores: dict[str, MetricScore] = Field(default_factory=dict)
    problems: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    protocol: str = "official"
    protocol_version: str = ""
    judge_model: str = ""
    order: Literal["AB", "BA"] = "AB"  # AB: tested agent heard first, as "Model A"
    raw_text: str = ""
    source: str = ""  # where this judgment was read from (file path), for error messages

    @model_validator(mode="after")
    def _consistent(self) -> Judgment:
        unknown = sorted(set(self.scores) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics: {unknown}")
        if self.status == "scored" and not self.scores:
            raise ValueError("a scored judgment needs at least one metric score")
        if self.status == "unscored" and self.scores:
            raise ValueError("an unscored judgment cannot carry scores")
        return self
