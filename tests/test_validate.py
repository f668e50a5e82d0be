from __future__ import annotations

import json
from pathlib import Path

from speechrole.bench import load_benchmark
from speechrole.outputs import find_output_tree
from speechrole.schema import Mode
from speechrole.validate import validate_outputs
from tests.factory import make_outputs


def _edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def test_valid_outputs(tmp_path: Path, bench_root: Path) -> None:
    run = make_outputs(tmp_path / "run", bench_root)
    bench, _ = load_benchmark(bench_root)
    report = validate_outputs(bench, find_output_tree(run))
    assert report.ok, report.problems
    assert report.samples_checked == 12 and report.roles_checked == 6
    outputs = [c for c in report.clips if c.side == "output"]
    refs = [c for c in report.clips if c.side == "reference"]
    assert (
        len(outputs) == len(refs) == 3 * (1 + 1 + 2 + 3)
    )  # per role: two 1-turn and a 2- and a 3-turn sample
    assert {c.info.sample_rate for c in outputs} == {24000}  # type: ignore[union-attr]
    assert {round(c.info.duration_s, 2) for c in outputs} == {0.6}  # type: ignore[union-attr]


def test_every_defect_is_named_with_file_and_field(tmp_path: Path, bench_root: Path) -> None:
    run = make_outputs(tmp_path / "run", bench_root)
    bench, _ = load_benchmark(bench_root)
    json_dir = run / "model_output" / "multi_result" / "json"
    _edit(json_dir / "Ada.json", lambda d: d["dialogue_1"].pop())  # turn count
    _edit(json_dir / "Bram.json", lambda d: d.pop("dialogue_0"))  # missing dialogue
    _edit(
        json_dir / "libai.json",
        lambda d: d["dialogue_0"][0]["model_output"].update(audio_path="../../etc/passwd"),
    )
    _edit(json_dir / "libai.json", lambda d: d["dialogue_0"][1]["model_output"].pop("text"))
    (run / "model_output/multi_result/audio/libai/libai_1_0.wav").write_bytes(b"RIFF not really a wav")
    (run / "model_output/multi_result/audio/libai/libai_1_1.wav").unlink()
    (run / "model_output/single_result/json/Ada.json").unlink()
    (bench_root / "test_data/multi_turn_speech/Bram/2_Bram_0_1_role.wav").unlink()
    report = validate_outputs(bench, find_output_tree(run))
    found = {(Path(p.file).name, p.field, p.reason.split(":")[-1].strip()) for p in report.errors}
    assert found == {
        ("Ada.json", "dialogue_1", "2 turns, the benchmark has 3"),
        ("Bram.json", "dialogue_0", "missing dialogue"),
        (
            "libai.json",
            "dialogue_0[0].model_output.audio_path",
            f"path '../../etc/passwd' escapes the dataset root {run}",
        ),
        ("libai.json", "dialogue_0[1].model_output.text", "missing"),
        ("libai.json", "dialogue_1[0].model_output.audio_path", found_reason(report, "libai_1_0.wav")),
        ("libai.json", "dialogue_1[1].model_output.audio_path", "audio file not found"),
        ("Ada.json", "", "missing output file (2 samples expected)"),
        ("Bram.json", "[1].dialogue[1].role_speech_path", "audio file not found"),
    }
    assert not report.ok


def found_reason(report, name: str) -> str:  # type: ignore[no-untyped-def]
    (p,) = [p for p in report.errors if name in p.reason]
    assert "does not decode" in p.reason
    return p.reason.split(":")[-1].strip()


def test_subset_and_no_reference(tmp_path: Path, bench_root: Path) -> None:
    run = make_outputs(tmp_path / "run", bench_root)
    bench, _ = load_benchmark(bench_root)
    report = validate_outputs(
        bench, find_output_tree(run), roles=["Ada"], modes=[Mode.SINGLE], check_reference=False
    )
    assert report.ok and report.samples_checked == 2
    assert {c.side for c in report.clips} == {"output"}
    report = validate_outputs(bench, find_output_tree(run), roles=["Zed"])
    assert [p.reason for p in report.errors] == ["role 'Zed' is not in the benchmark"]


def test_extra_outputs_are_warnings(tmp_path: Path, bench_root: Path) -> None:
    run = make_outputs(tmp_path / "run", bench_root)
    bench, _ = load_benchmark(bench_root)
    json_dir = run / "model_output" / "single_result" / "json"
    _edit(json_dir / "Ada.json", lambda d: d.update(dialogue_5=d["dialogue_0"]))
    (json_dir / "Stranger.json").write_text(json.dumps({"role": "Stranger"}), encoding="utf-8")
    report = validate_outputs(bench, find_output_tree(run))
    assert report.ok
    assert sorted((Path(p.file).name, p.severity) for p in report.problems) == [
        ("Ada.json", "warning"),
        ("Stranger.json", "warning"),
    ]
