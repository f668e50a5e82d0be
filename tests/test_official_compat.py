"""Compatibility with the real released files in ../shared/speechrole-official (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechrole.bench import load_benchmark
from speechrole.outputs import find_output_tree, read_role_output
from speechrole.results import PROTOCOL_V2, SystemResults, read_result_file
from speechrole.schema import METRICS, Mode
from speechrole.score import Split, load_systems, score_systems
from speechrole.validate import validate_outputs

pytestmark = pytest.mark.official


@pytest.fixture
def results_dir(official_dir: Path) -> Path:
    return official_dir / "fork" / "SpeechRole-Eval" / "test_results"


def test_every_result_file_parses_cleanly(results_dir: Path) -> None:
    systems = load_systems([results_dir])
    assert {s.name for s in systems} == {
        "Alibaba Cloud API",
        "GPT-4o Audio",
        "Llama-3.1-8B",
        "Mistral-7B",
        "Qwen2.5-Omni",
        "Qwen3-8B",
        "SpeechRole-Agent",
    }
    files = sorted(results_dir.glob("*/*/*.json"))
    assert len(files) == 173
    for s in systems:
        assert s.problems == [], s.problems[:3]
        assert s.protocol == PROTOCOL_V2
        assert all(j.status == "scored" and len(j.scores) == 8 for j in s.judgments)
    assert sum(len(s.judgments) for s in systems) == 2 * len(files)


def _independent_scores(system_dir: Path) -> dict[str, float]:
    """The paper's score computed directly from the JSON, without any speechrole code."""
    ratios: dict[str, list[float]] = {m: [] for m in METRICS}
    for file in sorted(system_dir.glob("*/*.json")):
        for entry in json.loads(file.read_text(encoding="utf-8")):
            for m in METRICS:
                a, b = entry[f"{m}_results"]["score"]
                ratios[m].append(a / b)
    return {m: sum(v) / len(v) for m, v in ratios.items()}


@pytest.mark.parametrize("system", ["GPT-4o Audio", "Qwen2.5-Omni", "Qwen3-8B"])
def test_scores_equal_an_independent_computation(results_dir: Path, system: str) -> None:
    expected = _independent_scores(results_dir / system)
    report = score_systems(load_systems([results_dir / system]))
    summary = report.systems[0].summary()
    assert summary is not None
    for m in METRICS:
        assert summary.metrics[m].score.value == pytest.approx(expected[m], abs=1e-12)
    assert summary.overall.value == pytest.approx(sum(expected.values()) / 8, abs=1e-12)


@pytest.mark.parametrize(
    ("system", "mode", "role", "overall"),
    [
        ("GPT-4o Audio", "single", "Thor", 0.865),
        ("Qwen2.5-Omni", "multi", "Thor", 0.705),
        ("SpeechRole-Agent", "single", "hutao", 0.808),
        ("Alibaba Cloud API", "multi", "Thor", 0.828),
    ],
)
def test_worked_examples_of_the_research_notes(
    results_dir: Path, system: str, mode: str, role: str, overall: float
) -> None:
    """Per-file 8-metric means worked out by hand in shared/research/speechrole-reference.md section 3."""
    judgments, problems = read_result_file(results_dir / system / mode / f"{role}.json", Mode(mode), role)
    assert problems == []
    report = score_systems([SystemResults(name=system, source=results_dir, judgments=judgments)])
    assert report.systems[0].summary().overall.value == pytest.approx(overall, abs=5e-4)  # type: ignore[union-attr]


def test_language_split_uses_the_official_role_list(results_dir: Path) -> None:
    report = score_systems(load_systems([results_dir / "GPT-4o Audio"]))
    zh = report.systems[0].summary(Split(language="zh"))
    en = report.systems[0].summary(Split(language="en"))
    assert zh is not None and en is not None
    assert (zh.n_roles, en.n_roles) == (4, 9) and zh.n_samples + en.n_samples == 52
    assert "Raylan Givens" in report.systems[0].flags.defect_roles


def test_benchmark_subset_loads(official_dir: Path) -> None:
    bench, problems = load_benchmark(official_dir / "official")
    assert len(bench.roles) == 12 and len(bench.samples) == 46
    assert [p for p in problems if p.severity == "error"] == []
    assert bench.roles["zhongli"].name == "钟离" and bench.roles["zhongli"].language.value == "zh"
    assert bench.roles["Thor"].reference_transcript and bench.roles["Thor"].work == "Thor-Ragnarok"
    assert bench.roles["Gregory House"].work == "House-M.D."
    assert any("Blair Waldorf" in d for d in bench.roles["Raylan Givens"].defects)
    thor = bench.samples_of("Thor", Mode.MULTI)[1]
    assert (
        thor.turns[2].reference_audio == "test_data/multi_turn_speech/Thor/1_Thor_0_2_role.wav"
    )  # kept verbatim
    assert any("multi/Thor/1 turn 2" in d for d in bench.roles["Thor"].defects)
    assert {s.category for s in bench.samples} >= {"Opinion and Emotion Inquiry", "Reasoning and Motivation"}


def test_example_model_output_structure_matches_the_benchmark(official_dir: Path) -> None:
    bench, _ = load_benchmark(official_dir / "official")
    tree = find_output_tree(official_dir / "fork" / "SpeechRole-Eval")
    out, problems = read_role_output(tree.json_file(Mode.MULTI, "Coriolanus"))
    assert problems == [] and [len(v) for v in out.dialogues.values()] == [2, 3]
    report = validate_outputs(bench, tree, roles=["Coriolanus"], modes=[Mode.MULTI], check_reference=False)
    # The subset ships text only: every clip is reported missing, and nothing else is wrong.
    assert len(report.errors) == 5
    assert all(p.reason.endswith("audio file not found") for p in report.errors)
