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
    """One metric's paired judge scores, always (tested agent, reference), whatever order the judge saw.

    A judge call yields integers 1..10 (its parser enforces that); an exported average of both orders
    of the swap protocol may hold halves. Strings and booleans are defects, never coerced.
    """

    test: int | float = Field(ge=SCORE_MIN, le=SCORE_MAX)
    ref: int | float = Field(ge=SCORE_MIN, le=SCORE_MAX)
    reason: str = ""

    @field_validator("test", "ref", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"score must be a number, got {value!r}")
        return value


class ClipRef(_Model):
    """One clip a judge heard: which side and turn, the sha256 of the bytes sent, and what was done to it."""

    side: Literal["test", "reference"]
    turn: int
    path: str
    sha256: str
    duration_s: float
    truncated: bool = False


class Judgment(_Model):
    """One judge verdict on one sample. Unscored judgments carry their reason and are never a score.

    `scores` holds only the metrics that were read and validated; `problems` says, per metric, why a
    metric is missing. A judgment read from an official result file has protocol `official` and order
    `AB`; one made by `speechrole judge` also records the call: prompt and audio hashes, usage, cost,
    latency, retries and re-asks.
    """

    sample: str  # sample key, see `sample_key`
    status: Literal["scored", "unscored"]
    scores: dict[str, MetricScore] = Field(default_factory=dict)
    problems: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    error_kind: str = (
        ""  # for unscored calls: rate_limit, server, timeout, connection, rejected, unusable_answer, ...
    )
    protocol: str = "official"
    protocol_version: str = ""
    judge_model: str = ""
    order: Literal["AB", "BA"] = "AB"  # AB: tested agent heard first, as "Model A"
    metrics: tuple[str, ...] = METRICS  # the metrics this call asked for
    raw_text: str = ""
    source: str = ""  # where this judgment was read from (file path), for error messages
    # --- provenance of a judge call (empty for judgments read from official files) ---
    base_url: str = ""
    resolved_model: str = ""  # the model id the server reported
    cache_key: str = ""
    prompt_sha256: str = ""
    audio: tuple[ClipRef, ...] = ()
    sampling: dict[str, float | int | None] = Field(default_factory=dict)
    usage: dict[str, int] = Field(default_factory=dict)
    cost_usd: float | None = None
    latency_s: float = 0.0
    retries: int = 0
    reasks: int = 0
    cached: bool = False
    created: str = ""
    #: digests of what the judgment was made from (see `speechrole.run.judge_inputs`); a judgment is used
    #: only while they match the run's files
    inputs: dict[str, str] = Field(default_factory=dict)

    @property
    def task(self) -> str:
        return task_id(self.sample, self.protocol, self.order, self.metrics)

    @model_validator(mode="after")
    def _consistent(self) -> Judgment:
        unknown = sorted((set(self.scores) | set(self.metrics)) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics: {unknown}")
        if self.status == "scored" and not self.scores:
            raise ValueError("a scored judgment needs at least one metric score")
        if self.status == "unscored" and self.scores:
            raise ValueError("an unscored judgment cannot carry scores")
        return self


def task_id(sample: str, protocol: str, order: str, metrics: tuple[str, ...]) -> str:
    """What a judgment answers within a run: the sample, protocol, order and metrics asked."""
    asked = "all" if tuple(metrics) == METRICS else "+".join(metrics)
    return f"{sample}|{protocol}|{order}|{asked}"
