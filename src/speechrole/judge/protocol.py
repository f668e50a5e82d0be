"""Judge protocols and the requests they make.

A protocol fixes how a sample is judged: which orders (tested agent as Model A, or both ways), which
metrics per call, how audio is prepared, and how the prompt is laid out. Its name and version go into
every judgment and every cache key.
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from speechrole.audio import AudioPolicy
from speechrole.judge.parse import parse_answer
from speechrole.judge.rubric import Rubric
from speechrole.schema import METRICS, Benchmark, ClipRef, MetricScore, Role, Sample

if TYPE_CHECKING:
    from speechrole.judge.config import JudgeConfig
    from speechrole.judge.released import ReleasedJudge

Order = Literal["AB", "BA"]


@dataclass(frozen=True)
class Protocol:
    name: str
    version: str
    description: str
    orders: tuple[Order, ...]
    per_metric: bool  # one call per metric instead of one call for all 8
    round_labels: bool  # a "Round n:" text part before each clip
    example_scores: tuple[int, int] | None  # numbers shown in the answer schema (the released judge's anchor)
    audio: AudioPolicy

    def metric_sets(self) -> list[tuple[str, ...]]:
        return [(m,) for m in METRICS] if self.per_metric else [METRICS]

    def calls_per_sample(self) -> int:
        return len(self.orders) * len(self.metric_sets())


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="official",
            version="1",
            description="the released judge's structure: one call per sample, tested agent as Model A, "
            "clips cut to 60 s, example scores in the schema; our wording, so not comparable with published numbers",
            orders=("AB",),
            per_metric=False,
            round_labels=False,
            example_scores=(8, 9),
            audio=AudioPolicy(max_seconds=60.0),
        ),
        Protocol(
            name="swap",
            version="1",
            description="both orders, scores mapped back to (test, reference) and averaged; round labels, "
            "no example scores, both sides resampled to 16 kHz mono and loudness-normalised to -23 LUFS",
            orders=("AB", "BA"),
            per_metric=False,
            round_labels=True,
            example_scores=None,
            audio=AudioPolicy(max_seconds=60.0, sample_rate=16000, mono=True, loudness_lufs=-23.0),
        ),
        Protocol(
            name="per-metric",
            version="1",
            description="one call per metric (8 per sample), as the first released judge did",
            orders=("AB",),
            per_metric=True,
            round_labels=False,
            example_scores=None,
            audio=AudioPolicy(max_seconds=60.0),
        ),
    )
}


#: Built at run time from the user's copy of the released judge script (`judge.released`).
RELEASED = "released"


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        names = ", ".join([*PROTOCOLS, RELEASED])
        raise ValueError(f"unknown protocol {name!r}; choose one of {names}") from None


def released_protocol(judge: ReleasedJudge) -> Protocol:
    """The released judge as a protocol: its calls, answer format and audio preparation."""
    calls = (
        "one call per metric, free-text '[Scores]' answer"
        if judge.per_metric
        else "one call per sample, JSON answer"
    )
    return Protocol(
        name=RELEASED,
        version=str(judge.version),
        description=f"the released SpeechRole judge v{judge.version}, its requests rebuilt from {judge.path.name} "
        f"(sha256 {judge.sha256[:12]}): {calls}; the released measurement, so its numbers can be set beside "
        "published ones when the same judge model answers",
        orders=("AB",),
        per_metric=judge.per_metric,
        round_labels=False,
        example_scores=None,
        audio=judge.audio,
    )


@dataclass(frozen=True)
class Part:
    """A piece of the user message: text, or the clip at `clip` in the request's clip list."""

    text: str | None = None
    clip: int | None = None


@dataclass(frozen=True)
class JudgeRequest:
    sample: str
    order: Order
    metrics: tuple[str, ...]
    system: str
    parts: tuple[Part, ...]
    clips: tuple[ClipRef, ...]
    data_prefix: str = ""  # put before each clip's base64 (the released judge sends data URLs)

    @property
    def prompt_sha256(self) -> str:
        """Hash of everything the judge reads: the texts, and the clips by the sha256 of their bytes."""
        shape = [
            self.system,
            *[p.text if p.text is not None else f"<clip {self.clips[p.clip].sha256}>" for p in self.parts],
        ]  # type: ignore[index]
        if self.data_prefix:
            shape.append(f"<data prefix {self.data_prefix}>")
        return hashlib.sha256(json.dumps(shape, ensure_ascii=False).encode("utf-8")).hexdigest()

    def messages(self, clip_base64: Callable[[ClipRef], str]) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        for p in self.parts:
            if p.text is not None:
                content.append({"type": "text", "text": p.text})
            else:
                clip = self.clips[p.clip]  # type: ignore[index]
                content.append(
                    {
                        "type": "input_audio",
                        "input_audio": {"data": self.data_prefix + clip_base64(clip), "format": "wav"},
                    }
                )
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]


def role_label(role: Role) -> str:
    """The role as the released judge names it: "{Name} from {Work}"."""
    return f"{role.name} from {role.work}" if role.work else role.name


def answer_schema(metrics: tuple[str, ...], example: tuple[int, int] | None) -> str:
    a, b = (str(example[0]), str(example[1])) if example else ("<integer 1-10>", "<integer 1-10>")
    lines = [f'  "{m}": {{"reason": "<short comparison>", "score_a": {a}, "score_b": {b}}}' for m in metrics]
    return "{\n" + ",\n".join(lines) + "\n}"


def build_request(
    protocol: Protocol,
    rubric: Rubric,
    role: Role,
    sample: Sample,
    order: Order,
    metrics: tuple[str, ...],
    test_clips: list[ClipRef],
    reference_clips: list[ClipRef],
) -> JudgeRequest:
    """The judge request for one sample, one order and a set of metrics."""
    question = rubric.question.format(
        system_prompt=sample.system_prompt, user_turns="\n###\n".join(t.user_text for t in sample.turns)
    )
    sides = (
        {"A": test_clips, "B": reference_clips} if order == "AB" else {"A": reference_clips, "B": test_clips}
    )
    clips: list[ClipRef] = []
    parts: list[Part] = [Part(text=question)]
    for model in ("A", "B"):
        parts.append(Part(text=rubric.response_start.format(model=model)))
        for n, clip in enumerate(sides[model], 1):
            if protocol.round_labels:
                parts.append(Part(text=rubric.round_label.format(round=n)))
            parts.append(Part(clip=len(clips)))
            clips.append(clip)
        parts.append(Part(text=rubric.response_end.format(model=model)))
    definitions = "\n\n".join(f"### {m}\n{rubric.metrics[m]}" for m in metrics)
    parts.append(
        Part(
            text=rubric.instruction.format(
                role_name=role_label(role),
                metric_definitions=definitions,
                schema=answer_schema(metrics, protocol.example_scores),
            )
        )
    )
    return JudgeRequest(sample.key, order, metrics, rubric.system, tuple(parts), tuple(clips))


class Prompter(typing.Protocol):
    """Where a protocol's texts come from and how answers are read: speechrole's rubric
    (`RubricPrompter`) or the user's copy of the released judge script (`released.ReleasedJudge`)."""

    @property
    def tag(self) -> str: ...  # goes into the judge version: `rubric-<sha>` or `script-<sha>`

    def key_parts(self) -> dict[str, str]: ...

    def sampling(self, config: JudgeConfig) -> dict[str, Any]: ...

    def request(
        self,
        protocol: Protocol,
        role: Role,
        sample: Sample,
        bench: Benchmark,
        order: Order,
        metrics: tuple[str, ...],
        tests: list[ClipRef],
        refs: list[ClipRef],
    ) -> JudgeRequest: ...

    def parse(self, text: str, metrics: tuple[str, ...], order: str) -> dict[str, MetricScore]: ...

    def reask(self, messages: list[dict[str, Any]], answer: str, problem: str) -> list[dict[str, Any]]: ...

    def describe(self) -> dict[str, Any]: ...


class RubricPrompter:
    """Requests from speechrole's rubric (the `official`, `swap` and `per-metric` protocols)."""

    def __init__(self, rubric: Rubric) -> None:
        self.rubric = rubric

    @property
    def tag(self) -> str:
        return f"rubric-{self.rubric.sha256[:12]}"

    def key_parts(self) -> dict[str, str]:
        return {}  # the rubric reaches the cache key through the prompt text

    def sampling(self, config: JudgeConfig) -> dict[str, Any]:
        return config.sampling()

    def request(
        self,
        protocol: Protocol,
        role: Role,
        sample: Sample,
        bench: Benchmark,
        order: Order,
        metrics: tuple[str, ...],
        tests: list[ClipRef],
        refs: list[ClipRef],
    ) -> JudgeRequest:
        return build_request(protocol, self.rubric, role, sample, order, metrics, tests, refs)

    def parse(self, text: str, metrics: tuple[str, ...], order: str) -> dict[str, MetricScore]:
        return parse_answer(text, metrics, order)

    def reask(self, messages: list[dict[str, Any]], answer: str, problem: str) -> list[dict[str, Any]]:
        """The conversation for a re-ask: the answer, then what was wrong with it."""
        return [
            *messages,
            {"role": "assistant", "content": answer},
            {"role": "user", "content": self.rubric.reask.format(problem=problem)},
        ]

    def describe(self) -> dict[str, Any]:
        return {"rubric_sha256": self.rubric.sha256, "rubric_version": self.rubric.version}
