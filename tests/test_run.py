"""The Run: one reader of a run directory, so every command gives the same numbers from current data.

Each test is named after the defect it pins (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechrole.bench import load_benchmark
from speechrole.judge.runner import JudgeConfig, JudgeTarget, judge
from speechrole.results import read_result_file
from speechrole.run import Run
from speechrole.schema import METRICS, Judgment, MetricScore, Mode
from speechrole.score import load_systems, score_systems
from speechrole.score.sample import sample_score
from tests.factory import make_benchmark, make_outputs, result_entry, write_results
from tests.judge_server import JudgeServer


@pytest.fixture
def judged(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A run of the test benchmark, judged (official protocol) by the local stand-in judge."""
    bench_root = make_benchmark(tmp_path / "bench")
    run = make_outputs(tmp_path / "run", bench_root)
    bench, _ = load_benchmark(bench_root)
    server = JudgeServer().__enter__()
    config = JudgeConfig(
        model="judge-x", base_url=server.base_url, cache_path=tmp_path / "cache.sqlite", timeout_s=2.0
    )
    judge(bench, JudgeTarget.for_run(run), config)
    yield bench, run, config
    server.__exit__(None, None, None)


def _score_json(run: Path, **options: object) -> dict:
    from typer.testing import CliRunner

    from speechrole.cli import app

    args = ["score", str(run), "--format", "json", "--replicates", "200"]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_stale_judgment_of_a_replaced_clip_is_skipped_by_score_summary_report_and_viewer(judged) -> None:  # type: ignore[no-untyped-def]
    from speechrole.report import build_report
    from speechrole.view import load_library

    bench, run, config = judged
    clip = run / "model_output/single_result/audio/Ada/Ada_0_0.wav"
    sf.write(clip, np.full(9000, 0.05, dtype=np.float32), 16000)  # the agent's answer changes afterwards
    judge(bench, JudgeTarget.for_run(run), JudgeConfig(**{**config.__dict__, "roles": ("Bram",)}))

    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    scored = _score_json(run)["systems"][0]
    assert summary["calls"]["stale"] == 1
    for view in (summary["scores"], scored):
        whole = view["splits"][0]
        assert whole["n_samples"] == 11 and whole["n_unscored_samples"] == 0
        assert view["flags"]["stale_judgments"] == {"the agent's audio changed": 1}
        assert view["flags"]["stale_samples"] == ["single/Ada/0"]
    assert summary["scores"]["splits"][0]["overall"] == scored["splits"][0]["overall"] or (
        summary["scores"]["splits"][0]["overall"]["value"]
        == pytest.approx(scored["splits"][0]["overall"]["value"])
    )

    html = build_report([run], run / "report.html").read_text(encoding="utf-8")
    assert "stale judgment(s) skipped: the agent&#39;s audio changed" in html

    library = load_library(run.parent)
    ((_, report),) = library.scores
    viewed = report.systems[0]
    assert viewed.summary().n_samples == 11  # type: ignore[union-attr]
    assert viewed.summary().overall.value == pytest.approx(scored["splits"][0]["overall"]["value"])  # type: ignore[union-attr]
    assert viewed.flags.stale_judgments == {"the agent's audio changed": 1}
    (only,) = library.runs.values()
    assert only.stale == {"the agent's audio changed": 1}
    sample = only.sample("single/Ada/0")
    assert sample is not None and sample.score.ratio == {} and any("stale" in f for f in sample.flags)


def test_score_of_a_mini_run_uses_the_mini_benchmark_not_the_official_role_list(tmp_path: Path) -> None:
    """`mini` was only reloaded when its spec was a path: score split it en 4 / zh 4 instead of 16 / 8."""
    import shutil

    from speechrole.bench.mini import load_mini
    from speechrole.outputs import OutputTree, OutputTurn, write_role_output

    bench, _ = load_mini()
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"name": "m", "benchmark": {"spec": "mini"}}), encoding="utf-8")
    tree = OutputTree(run / "model_output", run)
    for mode in Mode:
        for role in bench.roles:
            dialogues = {}
            for sample in bench.samples_of(role, mode):
                turns = []
                for j, turn in enumerate(sample.turns):
                    clip = tree.audio_file(mode, role, sample.index, j)
                    clip.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(
                        bench.root / (turn.reference_audio or ""), clip
                    )  # the reference as the answer
                    turns.append(
                        OutputTurn(turn.user_text, turn.reference_text, clip.relative_to(run).as_posix())
                    )
                dialogues[sample.index] = turns
            write_role_output(tree.json_file(mode, role), role, dialogues)
    opened = Run.open(run)
    lines = []
    for sample in bench.samples:
        scores = {m: MetricScore(test=5, ref=5) for m in METRICS}
        inputs = opened.judge_inputs(sample)
        assert inputs is not None
        judgment = Judgment(sample=sample.key, status="scored", scores=scores, judge_model="j", inputs=inputs)
        lines.append(judgment.model_dump_json())
    (run / "judgments.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits = {(s["mode"], s["language"]): s["n_samples"] for s in _score_json(run)["systems"][0]["splits"]}
    assert splits[("all", "en")] == 16 and splits[("all", "zh")] == 8


def test_deleting_an_agent_answer_scores_it_zero_and_failures_exclude_restores(judged) -> None:  # type: ignore[no-untyped-def]
    """An agent that failed on a sample used to be left out of every mean, like a judge error."""
    _, run, _ = judged
    before = _score_json(run)["systems"][0]
    (run / "model_output/multi_result/audio/Bram/Bram_1_2.wav").unlink()
    after = _score_json(run)["systems"][0]
    excluded = _score_json(run, failures="exclude")["systems"][0]
    whole = after["splits"][0]
    assert whole["n_agent_failures"] == 1 and whole["n_samples"] == 12
    assert after["flags"]["agent_failures"] == {"multi/Bram/1": "turn 3: audio file not found"}
    assert whole["overall"]["value"] < before["splits"][0]["overall"]["value"]
    assert excluded["splits"][0]["n_samples"] == 11 and excluded["flags"]["agent_failures"]
    remaining = [s for s in load_systems([run])[0].judgments if s.sample != "multi/Bram/1"]
    expected = np.mean(
        [np.mean(list(sample_score([j]).ratio.values())) for j in remaining]
    )  # every metric scored: the mean of per-sample overalls equals the mean of metric means
    assert excluded["splits"][0]["overall"]["value"] == pytest.approx(expected, abs=1e-6)


def test_swap_sample_score_is_the_mean_of_the_two_ratios_not_a_ratio_of_means() -> None:
    """The leaderboard averaged s_test and s_ref over judgments and then divided; the report averaged
    the per-judgment ratios. Now both are the mean of the ratios."""
    ab = Judgment(
        sample="single/A/0", status="scored", order="AB", scores={METRICS[0]: MetricScore(test=8, ref=2)}
    )
    ba = Judgment(
        sample="single/A/0", status="scored", order="BA", scores={METRICS[0]: MetricScore(test=2, ref=8)}
    )
    assert sample_score([ab, ba]).ratio[METRICS[0]] == pytest.approx((4 + 0.25) / 2)
    from speechrole.results import SystemResults

    report = score_systems([SystemResults(name="s", source=Path(), judgments=[ab, ba])])
    assert report.systems[0].summary().metrics[METRICS[0]].score.value == pytest.approx(2.125)  # type: ignore[union-attr]


def test_two_judge_configurations_of_one_run_are_never_pooled(judged, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bench, run, config = judged
    judge(bench, JudgeTarget.for_run(run), JudgeConfig(**{**config.__dict__, "model": "judge-y"}))
    systems = Run.open(run).systems()
    assert sorted(s.judge.model for s in systems) == ["judge-x", "judge-y"]  # type: ignore[union-attr]
    assert all(len({j.judge_model for j in s.judgments}) == 1 for s in systems)
    names = [s["system"] for s in _score_json(run)["systems"]]
    assert len(names) == 2 and all("judge-" in n for n in names)


def test_official_results_are_matched_by_unique_idx_not_shifted_by_a_shortened_file(tmp_path: Path) -> None:
    entries = [result_entry(0, (8, 4)), result_entry(2, (6, 3))]  # sample 1's entry is missing
    path = write_results(tmp_path / "sys", "single", "Ada", entries)
    judgments, problems = read_result_file(path, Mode.SINGLE, "Ada")
    assert [j.sample for j in judgments] == ["single/Ada/0", "single/Ada/2"]
    assert any(p.field == "idx" and "matched by idx" in p.reason for p in problems)


def test_official_results_with_repeated_idx_fall_back_to_position_and_are_flagged(tmp_path: Path) -> None:
    entries = [result_entry(0, (8, 4)), result_entry(0, (6, 3))]  # the earlier released judge's habit
    path = write_results(tmp_path / "sys", "single", "Ada", entries)
    judgments, problems = read_result_file(path, Mode.SINGLE, "Ada")
    assert [j.sample for j in judgments] == ["single/Ada/0", "single/Ada/1"]
    assert any(p.field == "idx" and "list position" in p.reason for p in problems)


def test_a_changed_answer_text_makes_text_measures_stale(tmp_path: Path) -> None:
    """measures.jsonl values were used whatever the text they were measured against."""
    bench_root = make_benchmark(tmp_path / "bench")
    run = make_outputs(tmp_path / "run", bench_root)
    (run / "run.json").write_text(json.dumps({"benchmark": {"spec": str(bench_root)}}), encoding="utf-8")
    from speechrole.audio import file_sha256
    from speechrole.run import text_sha256

    clip = run / "model_output/single_result/audio/Ada/Ada_0_0.wav"
    line = {
        "sample": "single/Ada/0",
        "turn": 0,
        "side": "agent",
        "role": "Ada",
        "clip": "x",
        "sha256": file_sha256(clip),
        "metric": "prosody",
        "version": "1",
        "cache_key": "k",
        "values": {"rate_syl_per_s": 3.0},
        "error": None,
        "flags": [],
        "text_sha256": text_sha256("answer 0.0"),
    }
    (run / "measures.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    assert len(Run.open(run).measures.lines) == 1
    file = run / "model_output/single_result/json/Ada.json"
    file.write_text(
        file.read_text(encoding="utf-8").replace("answer 0.0", "another answer"), encoding="utf-8"
    )
    measures = Run.open(run).measures
    assert measures.lines == [] and measures.stale == {"the answer text changed": 1}
