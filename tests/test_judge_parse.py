from __future__ import annotations

import json

import pytest

from speechrole.judge.parse import AnswerError, parse_answer
from speechrole.schema import METRICS


def answer(**overrides: object) -> dict:
    data = {m: {"reason": f"about {m}", "score_a": 7, "score_b": 9} for m in METRICS}
    data.update(overrides)  # type: ignore[arg-type]
    return data


def test_plain_json_maps_a_and_b_back_to_test_and_reference() -> None:
    text = json.dumps(answer())
    ab = parse_answer(text, METRICS, "AB")
    ba = parse_answer(text, METRICS, "BA")
    assert (ab["Speech_Fluency"].test, ab["Speech_Fluency"].ref) == (7, 9)
    assert (ba["Speech_Fluency"].test, ba["Speech_Fluency"].ref) == (9, 7)
    assert ab["Speech_Fluency"].reason == "about Speech_Fluency"


def test_first_fenced_block_is_used() -> None:
    text = f"Sure.\n```json\n{json.dumps(answer())}\n```\nand another\n```json\n{{}}\n```"
    assert len(parse_answer(text, METRICS, "AB")) == 8


def test_prose_around_unfenced_json_is_refused() -> None:
    with pytest.raises(AnswerError, match="not JSON"):
        parse_answer(f"My evaluation: {json.dumps(answer())} Thanks!", METRICS, "AB")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Speech_Fluency": {"reason": "x", "score_a": 11, "score_b": 9}}, "outside 1..10"),
        ({"Speech_Fluency": {"reason": "x", "score_a": "8", "score_b": 9}}, "must be an integer"),
        ({"Speech_Fluency": {"reason": "x", "score_a": 8.5, "score_b": 9}}, "must be an integer"),
        ({"Speech_Fluency": {"reason": "x", "score_a": 0, "score_b": 9}}, "outside 1..10"),
        ({"Speech_Fluency": {"reason": "x", "score_b": 9}}, "got missing"),
        ({"Speech_Fluency": "great"}, "must be an object"),
    ],
)
def test_invalid_scores_are_refused(change: dict, message: str) -> None:
    with pytest.raises(AnswerError, match=message):
        parse_answer(json.dumps(answer(**change)), METRICS, "AB")


def test_missing_metric_is_refused_and_named() -> None:
    data = answer()
    del data["Knowledge_Consistency"]
    with pytest.raises(AnswerError, match="missing aspects: Knowledge_Consistency"):
        parse_answer(json.dumps(data), METRICS, "AB")


def test_integral_floats_are_accepted_and_only_asked_metrics_matter() -> None:
    data = {"Speech_Fluency": {"reason": "", "score_a": 8.0, "score_b": 10}}
    scores = parse_answer(json.dumps(data), ("Speech_Fluency",), "AB")
    assert scores["Speech_Fluency"].test == 8


@pytest.mark.parametrize("text", ["", "[]", "```json\n{oops\n```"])
def test_non_objects_are_refused(text: str) -> None:
    with pytest.raises(AnswerError):
        parse_answer(text, METRICS, "AB")
