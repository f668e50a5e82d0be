"""Regressions for defects found in review: each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from speechrole.bench import load_benchmark
from speechrole.chat import MAX_RETRY_AFTER_S, CallError, _content_text, _Policy
from speechrole.judge.cache import JudgeCache
from speechrole.judge.log import read_judgments
from speechrole.judge.runner import JudgeConfig, JudgeTarget, judge
from speechrole.outputs import read_predictions
from speechrole.problems import DataError
from speechrole.results import read_result_file, read_system
from speechrole.schema import METRICS, Mode
from speechrole.score import load_systems, score_systems
from tests.factory import make_benchmark, make_outputs, result_entry, write_results
from tests.judge_server import JudgeServer


@pytest.fixture
def judged(tmp_path: Path):  # type: ignore[no-untyped-def]
    bench_root = make_benchmark(tmp_path / "bench")
    run = make_outputs(tmp_path / "run", bench_root)
    return load_benchmark(bench_root)[0], run, tmp_path


def cfg(server: JudgeServer, tmp: Path, **kw) -> JudgeConfig:  # type: ignore[no-untyped-def]
    return JudgeConfig(
        model=kw.pop("model", "judge-x"), base_url=server.base_url, cache_path=tmp / "c.sqlite", **kw
    )


def test_a_bare_number_score_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    entry = result_entry(0, (7, 8), free_text=True)
    entry["Speech_Fluency_results"]["score"] = 7
    file = write_results(tmp_path, "single", "Ada", [entry])
    (j,), problems = read_result_file(file, Mode.SINGLE, "Ada")
    assert (
        problems and "Speech_Fluency" not in j.scores and j.problems["Speech_Fluency"].startswith("malformed")
    )


def test_halves_are_scores_only_in_averaged_exports(tmp_path: Path) -> None:
    plain = result_entry(0, (7.5, 9))
    averaged = {**result_entry(1, (7.5, 9)), "speechrole_average_of": ["AB", "BA"]}
    file = write_results(tmp_path, "single", "Ada", [plain, averaged])
    judgments, _ = read_result_file(file, Mode.SINGLE, "Ada")
    assert not judgments[0].scores and judgments[1].scores["Speech_Fluency"].test == 7.5


def test_content_parts_without_text_and_key_scrubbing() -> None:
    assert (
        _content_text({"content": [{"type": "text", "text": None}, {"type": "text", "text": "ok"}]}) == "ok"
    )
    policy = _Policy("sk-SECRET-0123456789abcdef", 5.0, 0, 0.01, 1.0)
    body = "x" * 290 + "Incorrect API key provided: sk-SECRET-0123456789abcdef"
    with pytest.raises(CallError) as info:
        policy.check(401, httpx.Headers(), body)
    assert "sk-SECRET" not in str(info.value)
    with pytest.raises(CallError) as info:
        policy.check(429, httpx.Headers({"retry-after": str(int(MAX_RETRY_AFTER_S) + 60)}), "")
    assert info.value.kind == "rate_limit" and not info.value.retryable  # never retried sooner than asked


def test_a_log_line_torn_inside_a_character_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "judgments.jsonl"
    line = json.dumps({"sample": "single/x/0", "status": "unscored", "error": "原因"}, ensure_ascii=False)
    log.write_bytes(line.encode() + b"\n" + line.encode()[:-5])
    judgments, problems = read_judgments(log)
    assert len(judgments) == 1 and problems[0].severity == "warning"


def test_a_smoke_rerun_does_not_shrink_the_results(judged) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = judged
    with JudgeServer() as server:
        judge(bench, JudgeTarget.for_run(run), cfg(server, tmp))
        smoke = judge(bench, JudgeTarget.for_run(run), cfg(server, tmp, roles=("Ada",), limit=3))
    assert smoke.requests == 0
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["calls"]["scored"] == 12 and summary["scores"]["splits"][0]["n_samples"] == 12
    entries = json.loads((run / "test_results/multi/Ada.json").read_text(encoding="utf-8"))
    assert all("speechrole_unscored" not in e for e in entries)


def test_stale_judgments_never_count_for_a_new_judge_or_changed_clips(judged, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = judged
    prices = tmp_path / "p.yaml"
    prices.write_text(
        "models:\n  judge-y:\n    input_per_mtok: 1000.0\n    output_per_mtok: 1000.0\n", encoding="utf-8"
    )
    with JudgeServer() as server:
        judge(bench, JudgeTarget.for_run(run), cfg(server, tmp))
        sf.write(
            run / "model_output/single_result/audio/Ada/Ada_0_0.wav", np.full(8000, 0.1, np.float32), 16000
        )
        rerun = judge(
            bench,
            JudgeTarget.for_run(run),
            cfg(server, tmp, max_cost_usd=0.0001, prices_path=prices, model="judge-y"),
        )
    assert rerun.stopped and rerun.requests == 0
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["judge"]["model"] == "judge-y" and summary["calls"]["scored"] == 0
    assert summary["calls"]["not_judged"] == 12


def test_runs_judged_twice_are_scored_per_configuration(judged) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = judged
    with JudgeServer() as server:
        judge(bench, JudgeTarget.for_run(run), cfg(server, tmp, protocol="official"))
        judge(bench, JudgeTarget.for_run(run), cfg(server, tmp, protocol="swap"))
    systems = load_systems([run])
    assert len(systems) == 2 and {s.protocol for s in systems} == {"official", "swap"}
    assert {len(s.judgments) for s in systems} == {12, 24}


@pytest.mark.parametrize("usage", [True, False])
def test_max_cost_holds_with_low_estimates_and_without_usage(judged, tmp_path: Path, usage: bool) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = judged
    prices = tmp_path / "p.yaml"  # audio billed far above what the estimate assumes
    prices.write_text(
        "models:\n  judge-x:\n    input_per_mtok: 2.5\n    audio_input_per_mtok: 40\n    output_per_mtok: 10\n    audio_tokens_per_second: 10\n",
        encoding="utf-8",
    )
    with JudgeServer() as server:
        if not usage:
            import tests.judge_server as js

            original = js._Handler._send

            def no_usage(self, status, payload, headers=None):  # type: ignore[no-untyped-def]
                payload.pop("usage", None)
                return original(self, status, payload, headers)

            js._Handler._send = no_usage  # type: ignore[method-assign]
        try:
            outcome = judge(
                bench,
                JudgeTarget.for_run(run),
                cfg(server, tmp, prices_path=prices, max_cost_usd=0.05, concurrency=8),
            )
        finally:
            if not usage:
                js._Handler._send = original  # type: ignore[method-assign]
    assert outcome.stopped and outcome.requests >= 1
    assert outcome.spent_usd <= 0.05
    recorded = [j.cost_usd for j in read_judgments(run / "judgments.jsonl")[0]]
    assert all(c is None for c in recorded) if not usage else all(c and c > 0 for c in recorded)


def test_no_zero_width_interval_from_a_single_scored_role(tmp_path: Path) -> None:
    write_results(tmp_path / "s", "single", "Ada", [result_entry(i, (6 + i % 4, 9)) for i in range(6)])
    write_results(tmp_path / "s", "single", "Bram", [{"idx": 0}])  # a role with nothing scored
    summary = score_systems([read_system(tmp_path / "s", "s")]).systems[0].summary()
    assert summary is not None and summary.ci_cluster == "sample"
    ci = summary.metrics["Speech_Fluency"].score
    assert ci.low is not None and ci.low < ci.value < ci.high  # type: ignore[operator]


def test_unreadable_predictions_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        list(read_predictions(tmp_path / "nope.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="cannot read"):
        list(read_predictions(bad))


def test_a_cached_answer_that_no_longer_parses_is_a_miss(judged) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = judged
    with JudgeServer() as server:
        judge(bench, JudgeTarget.for_run(run), cfg(server, tmp, limit=1))
        cache = JudgeCache(tmp / "c.sqlite")
        key = read_judgments(run / "judgments.jsonl")[0][0].cache_key
        cache.put(key, "judge-x", "official", {"text": "not json any more"})
        cache.close()
        other = make_outputs(tmp / "run2", tmp / "bench")
        outcome = judge(bench, JudgeTarget.for_run(other), cfg(server, tmp, limit=1))
    assert outcome.requests == 1 and outcome.scored == 1


def test_one_order_samples_are_flagged(tmp_path: Path) -> None:
    from speechrole.results import SystemResults
    from speechrole.schema import Judgment, MetricScore

    def j(sample: str, order: str) -> Judgment:
        scores = {m: MetricScore(test=8, ref=9) for m in METRICS}
        return Judgment(sample=sample, status="scored", scores=scores, order=order, protocol="swap")  # type: ignore[arg-type]

    system = SystemResults(
        "s", tmp_path, [j("single/a/0", "AB"), j("single/a/0", "BA"), j("single/b/0", "AB")]
    )
    assert score_systems([system]).systems[0].flags.one_order_samples == ["single/b/0"]
