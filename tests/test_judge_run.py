"""The judge end to end: a benchmark, a run's outputs, a local judge server, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechrole.bench import load_benchmark
from speechrole.judge.log import read_judgments
from speechrole.judge.runner import JudgeConfig, JudgeTarget, judge
from speechrole.results import read_system
from speechrole.schema import METRICS
from speechrole.score import load_systems, score_systems
from tests.factory import make_benchmark, make_outputs
from tests.judge_server import FAULTS, JudgeServer, share_faulty

KEY = "sk-do-not-leak-4242"


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    bench_root = make_benchmark(tmp_path / "bench")
    run = make_outputs(tmp_path / "run", bench_root)
    bench, _ = load_benchmark(bench_root)
    return bench, run, tmp_path


def config(server: JudgeServer, tmp_path: Path, **kw) -> JudgeConfig:  # type: ignore[no-untyped-def]
    return JudgeConfig(
        model="judge-x", base_url=server.base_url, cache_path=tmp_path / "cache.sqlite", timeout_s=1.0, **kw
    )


def test_official_protocol_end_to_end(setup) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    with JudgeServer() as server:
        outcome = judge(bench, JudgeTarget.for_run(run), config(server, tmp))
    assert (outcome.planned, outcome.scored, outcome.unscored, outcome.requests) == (12, 12, 0, 12)
    judgments, problems = read_judgments(run / "judgments.jsonl")
    assert problems == [] and len(judgments) == 12
    j = judgments[0]
    assert j.protocol == "official" and j.order == "AB" and j.judge_model == "judge-x"
    assert j.resolved_model == "judge-x-test-001" and j.usage["prompt_tokens"] > 1000
    assert len(j.audio) == 2 * len(bench.sample(j.sample).turns)  # type: ignore[union-attr]
    assert all(len(c.sha256) == 64 for c in j.audio) and j.cache_key and j.prompt_sha256
    # The exported official layout scores exactly like the log.
    exported = score_systems([read_system(run / "test_results", "export")]).systems[0].summary()
    from_log = score_systems(load_systems([run])).systems[0].summary()
    assert exported.overall.value == pytest.approx(from_log.overall.value)  # type: ignore[union-attr]
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["calls"] == {"planned": 12, "scored": 12, "unscored": 0, "stale": 0, "not_judged": 0}
    assert summary["scores"]["splits"][0]["overall"]["value"] == pytest.approx(from_log.overall.value)  # type: ignore[union-attr]
    run_json = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert (
        run_json["judge"]["protocol"] == "official"
        and run_json["benchmark"]["content_hash"] == bench.content_hash
    )


def test_rerun_makes_no_request_and_a_changed_clip_is_rejudged(setup) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    with JudgeServer() as server:
        judge(bench, JudgeTarget.for_run(run), config(server, tmp))
        again = judge(bench, JudgeTarget.for_run(run), config(server, tmp))
        assert (again.requests, again.from_log, server.state.requests) == (0, 12, 12)
        # Same clips, fresh run directory: answered from the shared cache.
        other = make_outputs(tmp / "run2", tmp / "bench")
        cached = judge(bench, JudgeTarget.for_run(other), config(server, tmp))
        assert (cached.requests, cached.from_cache) == (0, 12)
        clip = run / "model_output/multi_result/audio/Ada/Ada_1_2.wav"
        sf.write(clip, np.zeros(8000, dtype=np.float32) + 0.1, 16000)
        changed = judge(bench, JudgeTarget.for_run(run), config(server, tmp))
        assert (changed.requests, changed.from_log, server.state.requests) == (1, 11, 13)


def test_swap_protocol_averages_both_orders_and_measures_consistency(setup) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    with JudgeServer() as server:
        outcome = judge(bench, JudgeTarget.for_run(run), config(server, tmp, protocol="swap"))
    assert (outcome.planned, outcome.requests) == (24, 24)
    judgments, _ = read_judgments(run / "judgments.jsonl")
    ab = next(j for j in judgments if j.order == "AB")
    ba = next(j for j in judgments if j.order == "BA" and j.sample == ab.sample)
    # The server scores clips by content, so both orders agree once mapped back to (test, reference).
    assert ab.scores["Speech_Fluency"] == ba.scores["Speech_Fluency"].model_copy(
        update={"reason": ab.scores["Speech_Fluency"].reason}
    )
    report = score_systems(load_systems([run])).systems[0]
    assert report.order_consistency is not None and report.order_consistency.rate == 1.0
    assert report.order_consistency.n_samples == 12


def test_a_judge_biased_towards_model_a_is_caught(setup) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    with JudgeServer(bias_a=4) as server:
        judge(bench, JudgeTarget.for_run(run), config(server, tmp, protocol="swap"))
    consistency = score_systems(load_systems([run])).systems[0].order_consistency
    assert consistency is not None and consistency.rate < 1.0 and consistency.inconsistent_samples


def test_per_metric_protocol_makes_eight_calls_per_sample(setup) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    with JudgeServer() as server:
        outcome = judge(bench, JudgeTarget.for_run(run), config(server, tmp, protocol="per-metric", limit=2))
    assert (outcome.planned, outcome.requests) == (16, 16)
    summary = score_systems(load_systems([run])).systems[0].summary()
    assert summary is not None and summary.n_samples == 2
    assert all(summary.metrics[m].n == 2 for m in METRICS)


def test_faults_never_become_scores_and_the_key_is_never_written(setup) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    os.environ["TEST_JUDGE_KEY"] = KEY
    faults = tuple(f for f in FAULTS if f != "ok")
    try:
        with JudgeServer(plan=share_faulty(0.5, faults), timeout_sleep_s=1.5) as server:
            cfg = config(server, tmp, protocol="swap", api_key_env="TEST_JUDGE_KEY", concurrency=4)
            outcome = judge(bench, JudgeTarget.for_run(run), cfg)
    finally:
        del os.environ["TEST_JUDGE_KEY"]
    assert server.state.auth == {f"Bearer {KEY}"}
    assert sum(server.state.faults[f] for f in faults) >= 5
    judgments, _ = read_judgments(run / "judgments.jsonl")
    assert len(judgments) == outcome.planned == 24  # every call ended scored or explicitly unscored
    unscored = [j for j in judgments if j.status == "unscored"]
    assert unscored and all(j.error and j.error_kind and not j.scores for j in unscored)
    assert {j.error_kind for j in unscored} <= {
        "rejected",
        "unusable_answer",
    }  # transient faults were retried
    assert any(j.reasks for j in judgments if j.status == "scored")  # prose and bad scores were re-asked
    for file in (run / "test_results").rglob("*.json"):
        for entry in json.loads(file.read_text(encoding="utf-8")):
            for key, value in entry.items():
                if key.endswith("_results"):
                    assert all(1 <= s <= 10 for s in value["score"])
    for path in [*run.rglob("*"), tmp / "cache.sqlite"]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_samples_without_usable_output_are_unscored_without_a_request(setup) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    (run / "model_output/single_result/json/Bram.json").unlink()
    (run / "model_output/multi_result/audio/libai/libai_0_1.wav").write_bytes(b"not audio")
    with JudgeServer() as server:
        outcome = judge(bench, JudgeTarget.for_run(run), config(server, tmp))
    assert (outcome.unscored, outcome.requests) == (3, 9)
    judgments, _ = read_judgments(run / "judgments.jsonl")
    kinds = sorted((j.sample, j.error_kind) for j in judgments if j.status == "unscored")
    assert kinds == [
        ("multi/libai/0", "agent_audio"),
        ("single/Bram/0", "no_output"),
        ("single/Bram/1", "no_output"),
    ]
    again = judge(bench, JudgeTarget.for_run(run), config(server, tmp))
    assert again.requests == 0 and len(read_judgments(run / "judgments.jsonl")[0]) == 12  # not re-logged


def test_max_cost_stops_cleanly_and_a_rerun_continues(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "models:\n  judge-x:\n    input_per_mtok: 1000.0\n    output_per_mtok: 1000.0\n", encoding="utf-8"
    )
    with JudgeServer() as server:
        first = judge(
            bench,
            JudgeTarget.for_run(run),
            config(server, tmp, prices_path=prices, max_cost_usd=10.0, concurrency=1),
        )
        assert first.stopped and "cost limit" in first.stopped
        assert 0 < first.scored < 12 and first.spent_usd <= 10.0
        assert first.estimate_usd is not None and first.estimate_usd > 10.0
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        assert summary["calls"]["not_judged"] == 12 - first.scored
        second = judge(
            bench, JudgeTarget.for_run(run), config(server, tmp, prices_path=prices, concurrency=1)
        )
    assert second.stopped is None and second.from_log == first.scored and second.requests == 12 - first.scored


def test_roles_and_limit_select_samples(setup) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    with JudgeServer() as server:
        outcome = judge(bench, JudgeTarget.for_run(run), config(server, tmp, roles=("libai",), limit=3))
    assert outcome.planned == 3
    assert {j.sample.split("/")[1] for j in read_judgments(run / "judgments.jsonl")[0]} == {"libai"}


def _cli_judge(run: Path, bench: Path, server: JudgeServer, cache_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "SPEECHROLE_CACHE_DIR": str(cache_dir), "TEST_JUDGE_KEY": KEY}
    cmd = [
        sys.executable,
        "-m",
        "speechrole.cli",
        "judge",
        str(run),
        "--judge",
        "judge-x",
        "--base-url",
        server.base_url,
        "--api-key-env",
        "TEST_JUDGE_KEY",
        "--bench",
        str(bench),
        "--protocol",
        "swap",
        "--concurrency",
        "2",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_run_resumes_to_the_same_summary_without_repeating_requests(tmp_path: Path) -> None:
    bench = make_benchmark(tmp_path / "bench")
    killed, whole = make_outputs(tmp_path / "a" / "run", bench), make_outputs(tmp_path / "b" / "run", bench)
    with JudgeServer(latency_s=0.15) as server:
        proc = _cli_judge(killed, bench, server, tmp_path / "cache-a")
        log = killed / "judgments.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not log.is_file() or log.read_text().count("\n") < 6):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_at_kill = {j.prompt_sha256 for j in read_judgments(log)[0]}
        assert 6 <= len(done_at_kill) < 24
        resumed = _cli_judge(killed, bench, server, tmp_path / "cache-a")
        assert resumed.wait(timeout=120) == 0, resumed.stderr.read()  # type: ignore[union-attr]
        assert all(server.state.by_prompt[p] == 1 for p in done_at_kill)  # nothing finished was asked again
        uninterrupted = _cli_judge(whole, bench, server, tmp_path / "cache-b")
        assert uninterrupted.wait(timeout=120) == 0
    a = json.loads((killed / "summary.json").read_text(encoding="utf-8"))
    b = json.loads((whole / "summary.json").read_text(encoding="utf-8"))
    assert a["scores"].pop("source") != b["scores"].pop("source")  # the only difference: where they are
    assert a == b


def test_samples_without_usable_output_are_agent_failures_scored_zero(setup) -> None:  # type: ignore[no-untyped-def]
    """A deleted output file used to leave its samples out of every mean, like a judge error."""
    bench, run, tmp = setup
    (run / "model_output/single_result/json/Bram.json").unlink()
    (run / "model_output/multi_result/audio/libai/libai_0_1.wav").write_bytes(b"not audio")
    with JudgeServer() as server:
        judge(bench, JudgeTarget.for_run(run), config(server, tmp))
    (system,) = load_systems([run])
    assert sorted(system.failures) == ["multi/libai/0", "single/Bram/0", "single/Bram/1"]
    whole = score_systems([system], bench=bench).systems[0].summary()
    assert whole.n_samples == 12 and whole.n_agent_failures == 3 and whole.n_unscored_samples == 0  # type: ignore[union-attr]
    excluded = score_systems([system], bench=bench, failures="exclude").systems[0].summary()
    assert excluded.n_samples == 9 and excluded.overall.value > whole.overall.value  # type: ignore[union-attr,operator]
