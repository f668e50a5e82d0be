"""`speechrole judge` and `speechrole cache` as a user runs them, against a local server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechrole.cli import app
from tests.factory import make_benchmark, make_outputs
from tests.judge_server import JudgeServer

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SPEECHROLE_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("GEMINI_API_KEY", "OPENAI_API_KEY", "SPEECHROLE_JUDGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    bench = make_benchmark(tmp_path / "bench")
    return bench, make_outputs(tmp_path / "run", bench), tmp_path


def test_a_remote_judge_needs_its_key_from_the_environment(env) -> None:  # type: ignore[no-untyped-def]
    bench, run, _ = env
    result = runner.invoke(app, ["judge", str(run), "--judge", "gemini-2.5-pro", "--bench", str(bench)])
    assert result.exit_code == 2 and "GEMINI_API_KEY" in result.output
    result = runner.invoke(app, ["judge", str(run), "--judge", "my-judge", "--bench", str(bench)])
    assert result.exit_code == 2 and "--base-url is needed" in result.output
    assert not (run / "judgments.jsonl").exists()


def test_estimate_only(env) -> None:  # type: ignore[no-untyped-def]
    bench, run, _ = env
    result = runner.invoke(
        app, ["judge", str(run), "--judge", "gemini-2.5-pro", "--bench", str(bench), "--estimate-only"]
    )
    assert result.exit_code == 0, result.output
    cost = float(result.stdout.split("$")[1])
    assert 0.01 < cost < 0.5  # 12 short samples at gemini-2.5-pro prices; mostly the reasons written
    assert not (run / "judgments.jsonl").exists()


def test_judge_then_score_then_cache(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bench, run, _ = env
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "models:\n  judge-x:\n    input_per_mtok: 1000.0\n    output_per_mtok: 1000.0\n", encoding="utf-8"
    )
    with JudgeServer() as server:
        args = [
            "judge",
            str(run),
            "--judge",
            "judge-x",
            "--base-url",
            server.base_url,
            "--bench",
            str(bench),
            "--protocol",
            "swap",
            "--prices",
            str(prices),
            "--concurrency",
            "1",
        ]
        stopped = runner.invoke(app, [*args, "--max-cost", "10"])
        assert stopped.exit_code == 3, stopped.output
        assert "stopped: cost limit" in stopped.stdout and "rerun to continue" in stopped.stdout
        finished = runner.invoke(app, args)
        assert finished.exit_code == 0, finished.output
        assert "24 planned · 24 scored" in finished.stdout
    scored = runner.invoke(app, ["score", str(run), "--format", "json"])
    assert scored.exit_code == 0, scored.output
    assert "benchmark from run.json" in scored.stderr
    system = json.loads(scored.stdout)["systems"][0]
    assert system["protocol"] == "swap" and system["judge_model"] == "judge-x"
    assert system["order_consistency"]["rate"] == 1.0
    assert {s["language"] for s in system["splits"]} == {"all", "en", "zh"}  # languages from the benchmark
    info = runner.invoke(app, ["cache", "info"])
    assert info.exit_code == 0 and "24 answers" in info.stdout and "judge-x / swap: 24" in info.stdout
    cleared = runner.invoke(app, ["cache", "clear", "--judge", "judge-x"])
    assert "deleted 24 cached answers" in cleared.stdout


def test_judging_a_model_in_an_official_tree(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bench, run, _ = env
    tree = tmp_path / "SpeechRole-Eval"
    shutil.copytree(run / "model_output", tree / "model_output" / "my_model")
    for file in (tree / "model_output" / "my_model").rglob("*.json"):  # official paths include the model
        file.write_text(
            file.read_text(encoding="utf-8").replace("model_output/", "model_output/my_model/"),
            encoding="utf-8",
        )
    with JudgeServer() as server:
        result = runner.invoke(
            app,
            [
                "judge",
                str(tree),
                "--model",
                "my_model",
                "--judge",
                "judge-x",
                "--base-url",
                server.base_url,
                "--bench",
                str(bench),
                "--limit",
                "2",
            ],
        )
    assert result.exit_code == 0, result.output
    assert (tree / "speechrole_judge" / "my_model" / "judgments.jsonl").is_file()
    assert (tree / "test_results" / "my_model" / "single" / "Ada.json").is_file()
    scored = runner.invoke(app, ["score", str(tree), "--format", "json"])
    assert [s["system"] for s in json.loads(scored.stdout)["systems"]] == ["my_model"]
