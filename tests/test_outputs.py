from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechrole.bench import load_benchmark
from speechrole.outputs import (
    OutputTurn,
    convert_predictions,
    find_output_tree,
    read_role_output,
    role_output_json,
    write_role_output,
)
from speechrole.problems import DataError
from speechrole.schema import Mode
from tests.factory import make_outputs


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    dialogues = {
        0: [OutputTurn("Hi?", "Hello.", "model_output/x/multi_result/audio/R/R_0_0.wav")],
        1: [OutputTurn("A?", "B.", "a.wav"), OutputTurn("C?", "D.", "b.wav")],
    }
    file = tmp_path / "R.json"
    write_role_output(file, "R", dialogues)
    data = json.loads(file.read_text(encoding="utf-8"))
    assert list(data) == ["role", "dialogue_0", "dialogue_1"]
    assert data["dialogue_1"][1] == {
        "turn": 1,
        "user_input": {"text": "C?"},
        "model_output": {"text": "D.", "audio_path": "b.wav"},
    }
    back, problems = read_role_output(file)
    assert problems == [] and back.dialogues == dialogues and not back.legacy


def test_legacy_single_dialogue_key(tmp_path: Path) -> None:
    file = tmp_path / "R.json"
    payload = role_output_json("R", {0: [OutputTurn("q", "a", "x.wav")]})
    payload["dialogue"] = payload.pop("dialogue_0")
    file.write_text(json.dumps(payload), encoding="utf-8")
    out, _ = read_role_output(file)
    assert out.legacy and list(out.dialogues) == [0]


def test_malformed_turns_are_problems(tmp_path: Path) -> None:
    file = tmp_path / "R.json"
    file.write_text(json.dumps({"role": "R", "dialogue_0": "oops", "dialogue_1": [3]}), encoding="utf-8")
    out, problems = read_role_output(file)
    assert {p.field for p in problems} == {"dialogue_0", "dialogue_1[0]"}
    assert out.dialogues[1] == [OutputTurn("", None, None)]


def test_find_output_tree_variants(tmp_path: Path, bench_root: Path) -> None:
    run = make_outputs(tmp_path / "run", bench_root, audio=False)
    for given in (run, run / "model_output"):
        tree = find_output_tree(given)
        assert (tree.base, tree.root) == (run / "model_output", run)
    official = tmp_path / "SpeechRole-Eval"
    (official / "model_output" / "m1" / "multi_result" / "json").mkdir(parents=True)
    tree = find_output_tree(official / "model_output" / "m1")
    assert (tree.base, tree.root) == (official / "model_output" / "m1", official)
    assert find_output_tree(official).base == official / "model_output" / "m1"
    (official / "model_output" / "m2" / "single_result" / "json").mkdir(parents=True)
    with pytest.raises(DataError, match="several models"):
        find_output_tree(official)
    assert find_output_tree(official, model="m2").base == official / "model_output" / "m2"
    with pytest.raises(DataError, match="no model outputs"):
        find_output_tree(tmp_path / "empty")


def test_convert_predictions_with_aliases(tmp_path: Path, bench_root: Path) -> None:
    bench, _ = load_benchmark(bench_root)
    lines = []
    for s in bench.samples_of("Ada", Mode.MULTI):
        for j in range(len(s.turns)):
            # Mix the aliases the official HF converter accepts.
            rec = {
                "role": "Ada",
                "idx": s.index,
                "turn_id": j,
                "model_output": {"text": f"t{j}", "audio_path": f"a/{s.index}_{j}.wav"},
            }
            if j == 1:
                rec = {
                    "role": "Ada",
                    "dialogue_index": s.index,
                    "turn": j,
                    "response": "r",
                    "model_output_audio_path": "b.wav",
                    "user_text": "typed",
                }
            lines.append(json.dumps(rec))
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    result = convert_predictions([pred], bench, tmp_path / "out", Mode.MULTI)
    assert result.problems == []
    out, _ = read_role_output(tmp_path / "out" / "multi_result" / "json" / "Ada.json")
    assert [len(t) for t in out.dialogues.values()] == [2, 3]
    assert out.dialogues[0][0] == OutputTurn(
        bench.samples_of("Ada", Mode.MULTI)[0].turns[0].user_text, "t0", "a/0_0.wav"
    )
    assert out.dialogues[1][1] == OutputTurn("typed", "r", "b.wav")


def test_convert_reports_missing_turns_and_bad_records_and_keeps_the_rest(
    tmp_path: Path, bench_root: Path
) -> None:
    bench, _ = load_benchmark(bench_root)
    records = [
        {"role": "Bram", "mode": "single", "dialogue_id": 0, "turn": 0, "text": "x", "audio_path": "x.wav"},
        {"role": "Bram", "mode": "single", "dialogue_id": 1, "turn": 0, "text": "y"},  # no audio
        {"role": "Bram", "dialogue_id": 1, "turn": 0, "text": "y", "audio_path": "y.wav"},  # no mode
        {"role": "Nobody", "mode": "single", "dialogue_id": 0, "turn": 0, "audio_path": "z.wav"},
    ]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"predictions": records}), encoding="utf-8")
    result = convert_predictions([pred], bench, tmp_path / "out")
    reasons = sorted(f"{p.field}: {p.reason}" for p in result.problems)
    assert reasons == [
        ".predictions[1]: needs audio_path",
        ".predictions[2]: mode None: add a mode field (single|multi) or pass --mode",
        "Nobody: role not in the benchmark's single data",
        "single/Bram dialogue 1 turn 0: missing prediction",
    ]
    assert (tmp_path / "out" / "single_result" / "json" / "Bram.json").is_file()  # partial work is kept


def test_convert_accepts_role_keyed_outputs(tmp_path: Path, bench_root: Path) -> None:
    bench, _ = load_benchmark(bench_root)
    single = bench.samples_of("libai", Mode.SINGLE)
    payload = {
        "libai": {f"dialogue_{s.index}": [{"text": "诗", "audio_path": f"{s.index}.wav"}] for s in single}
    }
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    result = convert_predictions([pred], bench, tmp_path / "out", Mode.SINGLE)
    assert result.problems == [] and len(result.written) == 1
