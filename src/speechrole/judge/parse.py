"""Strict parsing of a judge's answer: plain JSON or the first fenced JSON block, then validation.

Nothing is guessed: a missing metric, a string or out-of-range score, or prose around unfenced JSON
makes the answer unusable, with a reason (the caller may re-ask). Scores are mapped from the judge's
(Model A, Model B) back to (tested agent, reference) according to the order the judge heard them in.
"""

from __future__ import annotations

import json
import re
from typing import Any

from speechrole.schema import SCORE_MAX, SCORE_MIN, MetricScore

_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)


class AnswerError(ValueError):
    """The answer cannot be used; the message says why (it is shown to the judge on a re-ask)."""


def extract_json(text: str) -> Any:
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    match = _FENCE.search(stripped)
    if match is None:
        raise AnswerError("not JSON: the reply is neither a JSON object nor contains a fenced JSON block")
    try:
        return json.loads(match.group(1))
    except json.JSONDecodeError as exc:
        raise AnswerError(f"the fenced block is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _score(entry: dict[str, Any], key: str, metric: str) -> int:
    value = entry.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        shown = "missing" if value is None else repr(value)
        raise AnswerError(f"{metric}.{key} must be an integer from 1 to 10, got {shown}")
    if not SCORE_MIN <= value <= SCORE_MAX:
        raise AnswerError(f"{metric}.{key} = {value} is outside 1..10")
    return value


def parse_answer(text: str, metrics: tuple[str, ...], order: str) -> dict[str, MetricScore]:
    """Scores per metric as (test, reference); `AnswerError` lists everything that is wrong."""
    data = extract_json(text)
    if not isinstance(data, dict):
        raise AnswerError(f"expected a JSON object with one entry per aspect, got a {type(data).__name__}")
    problems: list[str] = []
    scores: dict[str, MetricScore] = {}
    missing = [m for m in metrics if m not in data]
    if missing:
        problems.append(f"missing aspects: {', '.join(missing)}")
    for metric in metrics:
        entry = data.get(metric)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            problems.append(f"{metric} must be an object with reason, score_a and score_b")
            continue
        try:
            a, b = _score(entry, "score_a", metric), _score(entry, "score_b", metric)
        except AnswerError as exc:
            problems.append(str(exc))
            continue
        reason = entry.get("reason") if isinstance(entry.get("reason"), str) else ""
        test, ref = (a, b) if order == "AB" else (b, a)
        scores[metric] = MetricScore(test=test, ref=ref, reason=reason)
    if problems:
        raise AnswerError("; ".join(problems))
    return scores
