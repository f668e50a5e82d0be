from __future__ import annotations

import pytest
from pydantic import ValidationError

from speechrole.schema import METRICS, Judgment, MetricScore, Mode, sample_key


@pytest.mark.parametrize("bad", ["8", True, 0, 11, None, 0.5])
def test_metric_score_rejects_anything_but_a_number_1_to_10(bad: object) -> None:
    with pytest.raises(ValidationError):
        MetricScore(test=bad, ref=9)  # type: ignore[arg-type]


def test_metric_score_accepts_numbers_in_range() -> None:
    assert MetricScore(test=1, ref=10).test == 1
    assert MetricScore(test=8.5, ref=9).test == 8.5  # an average of both orders


def test_judgment_status_must_match_scores() -> None:
    score = {METRICS[0]: MetricScore(test=8, ref=9)}
    assert Judgment(sample="single/Ada/0", status="scored", scores=score).scores
    with pytest.raises(ValidationError):
        Judgment(sample="single/Ada/0", status="unscored", scores=score)
    with pytest.raises(ValidationError):
        Judgment(sample="single/Ada/0", status="scored")
    with pytest.raises(ValidationError):
        Judgment(sample="single/Ada/0", status="scored", scores={"Charm": MetricScore(test=8, ref=9)})


def test_sample_key_is_stable() -> None:
    assert sample_key(Mode.MULTI, "Queen Elizabeth I", 1) == "multi/Queen Elizabeth I/1"
    assert sample_key("single", "hutao", 0) == "single/hutao/0"
