from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechrole.problems import DataError
from speechrole.results import PROTOCOL_V1, PROTOCOL_V2, discover_systems, read_result_file, read_system
from speechrole.schema import METRICS, Mode
from tests.factory import result_entry, write_results


def test_json_protocol_repeated_idx_falls_back_to_list_position(tmp_path: Path) -> None:
    # Both entries claim idx 0: the position decides, and the file is flagged.
    file = write_results(tmp_path, "multi", "Ada", [result_entry(0, (8, 9)), result_entry(0, (5, 10))])
    judgments, problems = read_result_file(file, Mode.MULTI, "Ada")
    assert [(p.field, p.severity) for p in problems] == [("idx", "warning")]
    assert [j.sample for j in judgments] == ["multi/Ada/0", "multi/Ada/1"]
    assert judgments[1].scores["Speech_Fluency"].test == 5
    assert all(j.status == "scored" and len(j.scores) == 8 for j in judgments)


def test_free_text_protocol_without_score_field(tmp_path: Path) -> None:
    file = write_results(
        tmp_path, "single", "Ada", [result_entry(0, (7, 9), free_text=True, with_score=False)]
    )
    (j,), problems = read_result_file(file, Mode.SINGLE, "Ada")
    assert (
        problems == []
        and j.scores["Knowledge_Consistency"].test == 7
        and j.scores["Knowledge_Consistency"].ref == 9
    )


def test_free_text_disagreeing_with_score_field_is_a_warning(tmp_path: Path) -> None:
    entry = result_entry(0, (7, 9), free_text=True)
    entry["Speech_Fluency_results"]["score"] = [6, 9]
    file = write_results(tmp_path, "single", "Ada", [entry])
    (j,), problems = read_result_file(file, Mode.SINGLE, "Ada")
    assert j.scores["Speech_Fluency"].test == 6
    assert [(p.severity, p.field) for p in problems] == [("warning", "[0].Speech_Fluency_results")]


def test_nested_one_element_lists(tmp_path: Path) -> None:
    file = write_results(tmp_path, "single", "Ada", [[result_entry(0, (8, 9))], [result_entry(0, (9, 9))]])
    judgments, _ = read_result_file(file, Mode.SINGLE, "Ada")
    assert [j.sample for j in judgments] == ["single/Ada/0", "single/Ada/1"]
    assert judgments[1].scores["Instruction_Adherence"].test == 9


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ((0, 9), "score 0"),
        (("8", 9), "not an integer"),
        ((8, 11), "out of range"),
        ((8.3, 9), "not an integer"),
        ([8], "malformed"),
        (None, "metric missing"),
    ],
)
def test_bad_metric_values_are_unscored_never_zero(tmp_path: Path, value: object, kind: str) -> None:
    scores = {m: (8, 9) for m in METRICS}
    scores["Emotion_Appropriateness"] = value  # type: ignore[assignment]
    file = write_results(tmp_path, "single", "Ada", [result_entry(0, scores)])
    (j,), problems = read_result_file(file, Mode.SINGLE, "Ada")
    assert "Emotion_Appropriateness" not in j.scores
    assert j.problems["Emotion_Appropriateness"].startswith(kind)
    assert len(j.scores) == 7 and j.status == "scored"
    assert [(p.file, p.field) for p in problems] == [(str(file), "[0].Emotion_Appropriateness_results")]


def test_entry_that_is_not_an_object_is_unscored(tmp_path: Path) -> None:
    file = write_results(tmp_path, "single", "Ada", ["garbage", result_entry(1, (8, 9))])
    judgments, problems = read_result_file(file, Mode.SINGLE, "Ada")
    assert judgments[0].status == "unscored" and judgments[0].error
    assert judgments[1].status == "scored"
    assert sorted(p.field for p in problems) == ["[0]", "idx"]  # the entry, and idx unusable: by position


def test_truncated_file_is_a_problem_and_the_rest_is_read(tmp_path: Path) -> None:
    write_results(tmp_path / "sys", "single", "Ada", [result_entry(0, (8, 9))])
    bad = tmp_path / "sys" / "single" / "Bram.json"
    bad.write_text(json.dumps([result_entry(0, (8, 9))])[:100], encoding="utf-8")
    system = read_system(tmp_path / "sys", "sys")
    assert len(system.judgments) == 1
    assert [(p.file, "truncated" in p.reason) for p in system.problems] == [(str(bad), True)]


def test_protocol_is_inferred_from_the_files(tmp_path: Path) -> None:
    write_results(tmp_path / "v1", "single", "Ada", [result_entry(0, (8, 9), free_text=True)])
    write_results(tmp_path / "v2", "single", "Ada", [result_entry(0, (8, 9))])
    assert read_system(tmp_path / "v1", "v1").protocol == PROTOCOL_V1
    assert read_system(tmp_path / "v2", "v2").protocol == PROTOCOL_V2


def test_discover_systems(tmp_path: Path) -> None:
    tree = tmp_path / "SpeechRole-Eval" / "test_results"
    for name in ("sysA", "sysB"):
        write_results(tree / name, "single", "Ada", [result_entry(0, (8, 9))])
    assert [n for n, _ in discover_systems(tree)] == ["sysA", "sysB"]
    assert [n for n, _ in discover_systems(tmp_path / "SpeechRole-Eval")] == ["sysA", "sysB"]
    assert discover_systems(tree / "sysA") == [("sysA", tree / "sysA")]
    run = tmp_path / "run"
    write_results(run / "test_results", "multi", "Ada", [result_entry(0, (8, 9))])
    (run / "run.json").write_text(json.dumps({"name": "my-agent"}), encoding="utf-8")
    assert discover_systems(run) == [("my-agent", run)]  # the run itself: results, measures, generations
    with pytest.raises(DataError, match="no judge results"):
        discover_systems(tmp_path / "run" / "test_results" / "multi")
