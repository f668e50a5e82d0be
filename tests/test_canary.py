"""Drift canaries: recorded the first time, asked again live, and a moved judge stops the run first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from typer.testing import CliRunner

from speechrole.bench import load_benchmark
from speechrole.judge.canary import canary_samples
from speechrole.judge.config import JudgeConfig, JudgeTarget
from speechrole.judge.runner import judge
from tests.factory import make_benchmark, make_outputs
from tests.judge_server import JudgeServer
from tests.test_probes import fair


def steady(clips: Sequence[bytes]) -> int:
    return 1 + (fair(clips) - 1) % 8  # 1..8, so a one-point shift never hits the ceiling


def shifted(clips: Sequence[bytes]) -> int:
    return steady(clips) + 1


def test_a_judge_shifted_by_one_point_stops_before_judging_the_rest(tmp_path: Path) -> None:
    bench_root = make_benchmark(tmp_path / "bench")
    bench, _ = load_benchmark(bench_root)
    first = make_outputs(tmp_path / "first", bench_root)
    second = make_outputs(tmp_path / "second", bench_root)
    canaries = len(canary_samples(bench))
    assert canaries == 4 and canary_samples(bench) == canary_samples(bench)  # chosen once, the same

    def config(server: JudgeServer) -> JudgeConfig:
        return JudgeConfig(
            model="judge-x", base_url=server.base_url, cache_path=tmp_path / "cache.sqlite", timeout_s=5.0,
            canary=True,
        )  # fmt: skip

    with JudgeServer(port=0, side_score=steady) as server:
        outcome = judge(bench, JudgeTarget.for_run(first), config(server))
        port = server.port
    assert outcome.canary.recorded and not outcome.stopped and outcome.scored == 12
    assert server.state.requests == canaries + 12
    # The same endpoint, now answering one point higher on both sides.
    with JudgeServer(port=port, side_score=shifted) as server:
        outcome = judge(bench, JudgeTarget.for_run(second), config(server))
        assert server.state.requests == canaries  # only the canaries were asked
    assert outcome.stopped and "canaries moved" in outcome.stopped and outcome.scored == 0
    drift = {d.metric: d for d in outcome.canary.drift}
    assert (
        all(d.drifted and d.shift_test == 1 and d.shift_ref == 1 for d in drift.values()) and len(drift) == 8
    )
    assert not (second / "judgments.jsonl").exists()
    line = json.loads((second / "canary.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert (
        line["drifted"] and line["judge"]["model"] == "judge-x" and line["judge"]["version"].startswith("1/")
    )
    # Back to the judge that was recorded: the canaries are asked again (never from the cache) and pass,
    # and the run is judged (its clips equal the first run's, so from the answer cache).
    with JudgeServer(port=port, side_score=steady) as server:
        outcome = judge(bench, JudgeTarget.for_run(second), config(server))
        assert server.state.requests == canaries
    assert not outcome.stopped and not outcome.canary.drifted
    assert (outcome.scored, outcome.from_cache) == (12, 12)


def test_canary_cli_prints_the_drift_table(tmp_path: Path) -> None:
    from speechrole.cli import app

    bench_root = make_benchmark(tmp_path / "bench")
    run = make_outputs(tmp_path / "run", bench_root)
    args = ["judge", str(run), "--bench", str(bench_root), "--judge", "judge-x", "--canary", "--limit", "1"]
    with JudgeServer(side_score=steady) as server:
        base = ["--base-url", server.base_url, "--cache", str(tmp_path / "c.sqlite")]
        first = CliRunner().invoke(app, [*args, *base])
        port = server.port
    assert first.exit_code == 0 and "recorded" in first.output, first.output
    with JudgeServer(port=port, side_score=shifted) as server:
        second = CliRunner().invoke(app, [*args, *base, "--no-cache-answers"])
    assert second.exit_code == 3, second.output
    assert "Drift canaries" in second.output and "canaries moved" in second.output
