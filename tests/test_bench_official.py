from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from speechrole.bench import load_benchmark
from speechrole.bench.official import find_benchmark_root, load_official
from speechrole.problems import DataError
from speechrole.schema import Language, Mode
from tests.factory import make_benchmark


def test_loads_roles_samples_and_languages(bench_root: Path) -> None:
    bench, problems = load_benchmark(bench_root)
    assert problems == []
    assert sorted(bench.roles) == ["Ada", "Bram", "libai"]
    assert len(bench.samples) == 12
    ada = bench.roles["Ada"]
    assert (ada.name, ada.work, ada.language) == ("Ada Lovelace", "Notes-on-the-Engine", Language.EN)
    assert bench.roles["libai"].language is Language.ZH
    assert ada.reference_audio and Path(ada.reference_audio).is_file()
    assert ada.reference_transcript
    multi = bench.samples_of("Ada", Mode.MULTI)
    assert [len(s.turns) for s in multi] == [2, 3]
    assert multi[1].key == "multi/Ada/1"
    assert multi[0].category == "Opinion and Emotion Inquiry"
    assert bench.reference_set == "role_speech_path"
    assert multi[0].turns[0].reference_audio == "test_data/multi_turn_speech/Ada/1_Ada_0_0_role.wav"


def test_content_hash_is_stable_and_changes_with_data(tmp_path: Path) -> None:
    a = load_official(make_benchmark(tmp_path / "a", audio=False))[0]
    b = load_official(make_benchmark(tmp_path / "b", audio=False))[0]
    assert a.content_hash == b.content_hash
    f = tmp_path / "b" / "test_data" / "single_turn" / "Ada.json"
    f.write_text(f.read_text(encoding="utf-8").replace("Curiosity", "Ambition"), encoding="utf-8")
    assert load_official(tmp_path / "b")[0].content_hash != a.content_hash


def test_hf_reference_sets(tmp_path: Path) -> None:
    root = make_benchmark(tmp_path / "hf", audio=False, hf_sets=True)
    bench, _ = load_official(root)
    assert bench.reference_set == "role_speech_path1"
    turn = bench.samples[0].turns[0]
    assert turn.reference_audio is not None and turn.reference_audio.endswith("_role1.wav")
    assert set(turn.reference_audios) == {
        "role_speech_path",
        "role_speech_path1",
        "role_speech_path2",
        "role_speech_path3",
    }
    bench3, _ = load_official(root, reference_set="3")
    assert bench3.reference_set == "role_speech_path3"
    assert bench3.samples[0].turns[0].reference_audio.endswith("_role3.wav")  # type: ignore[union-attr]


def test_language_override(bench_root: Path) -> None:
    bench, _ = load_benchmark(bench_root, languages={"Ada": Language.ZH})
    assert bench.roles["Ada"].language is Language.ZH


def test_bad_sample_is_reported_and_the_rest_loads(bench_root: Path) -> None:
    path = bench_root / "test_data" / "single_turn" / "Bram.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data[0]["dialogue"][0]["user"] = 42
    path.write_text(json.dumps(data), encoding="utf-8")
    (bench_root / "test_data" / "multi_turn" / "Ada.json").write_text("[{", encoding="utf-8")
    bench, problems = load_benchmark(bench_root)
    assert {(p.file, p.field) for p in problems} == {
        (str(path), "[0].dialogue[0].user"),
        (str(bench_root / "test_data" / "multi_turn" / "Ada.json"), ""),
    }
    keys = {s.key for s in bench.samples}
    assert "single/Bram/0" not in keys and "single/Bram/1" in keys  # list positions are kept
    assert not bench.samples_of("Ada", Mode.MULTI) and bench.samples_of("Ada", Mode.SINGLE)


def test_missing_profile_is_recovered_from_system_prompt(bench_root: Path) -> None:
    (bench_root / "role_profiles" / "Bram_profile.txt").unlink()
    bench, problems = load_benchmark(bench_root)
    assert bench.roles["Bram"].name == "Bram Stoker"
    assert any("Bram_profile.txt" in p.file and p.severity == "warning" for p in problems)


def test_known_and_detected_defects(tmp_path: Path) -> None:
    root = make_benchmark(tmp_path / "b", audio=False)
    # A role whose profile names someone else (the Raylan Givens defect), under a role id of our own.
    shutil.copy(
        root / "role_profiles" / "Ada_profile.txt", root / "role_profiles" / "Charles Babbage_profile.txt"
    )
    for mode in ("single", "multi"):
        shutil.copy(
            root / "test_data" / f"{mode}_turn" / "Ada.json",
            root / "test_data" / f"{mode}_turn" / "Charles Babbage.json",
        )
    # An audio path numbered for another dialogue, as in the official multi-turn files.
    f = root / "test_data" / "multi_turn" / "Bram.json"
    data = json.loads(f.read_text(encoding="utf-8"))
    data[1]["dialogue"][2]["role_speech_path"] = "test_data/multi_turn_speech/Bram/1_Bram_0_2_role.wav"
    f.write_text(json.dumps(data), encoding="utf-8")
    bench, _ = load_official(root)
    assert any("persona mismatch" in d for d in bench.roles["Charles Babbage"].defects)
    assert any("multi/Bram/1 turn 2" in d for d in bench.roles["Bram"].defects)
    assert bench.roles["Ada"].defects == ()


def test_finds_root_below_and_refuses_ambiguity(tmp_path: Path) -> None:
    make_benchmark(tmp_path / "repo" / "benchmark", audio=False)
    assert find_benchmark_root(tmp_path / "repo") == tmp_path / "repo" / "benchmark"
    assert (
        find_benchmark_root(tmp_path / "repo" / "benchmark" / "test_data") == tmp_path / "repo" / "benchmark"
    )
    make_benchmark(tmp_path / "repo" / "HF", audio=False)
    with pytest.raises(DataError, match="several benchmark roots"):
        find_benchmark_root(tmp_path / "repo")
    with pytest.raises(DataError, match="no test_data"):
        find_benchmark_root(tmp_path / "repo" / "HF" / "role_profiles")


def test_unknown_benchmark_spec(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a benchmark directory"):
        load_benchmark(tmp_path / "nope")
