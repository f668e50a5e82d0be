"""The bundled `mini` benchmark and `speechrole eval` end to end, with the bundled offline models."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from speechrole.bench import load_benchmark
from speechrole.bench.profile import parse_profile
from speechrole.cli import app
from speechrole.schema import Language, Mode
from tests.judge_server import JudgeServer
from tests.test_agents import _bundled_missing

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
#: A short answer keeps the tests quick; the option also checks that stage options reach the LLM.
AGENT = "offline:llm.max_new_tokens=24"

needs_models = pytest.mark.skipif(
    bool(_bundled_missing()), reason=f"bundled models missing: {_bundled_missing()}"
)


@pytest.fixture(scope="session")
def mini_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mini` rendered once for the session, into a cache of its own."""
    root = tmp_path_factory.mktemp("mini-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEECHROLE_CACHE_DIR", str(root))
        try:
            load_benchmark("mini")
        except Exception as exc:  # no voice engines here: the mini tests cannot run
            pytest.skip(f"mini cannot be rendered here: {exc}")
    return root / "benchmarks"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mini_cache: Path) -> Path:
    """A fresh cache per test that shares the rendered `mini`."""
    root = tmp_path / "cache"
    root.mkdir()
    (root / "benchmarks").symlink_to(mini_cache)
    monkeypatch.setenv("SPEECHROLE_CACHE_DIR", str(root))
    for name in ("GEMINI_API_KEY", "OPENAI_API_KEY", "SPEECHROLE_JUDGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return root


def test_mini_is_a_complete_benchmark_rendered_as_recorded(cache: Path) -> None:
    bench, problems = load_benchmark("mini")
    assert problems == []  # every clip rendered, and byte-identical to the packaged hashes
    languages = [r.language for r in bench.roles.values()]
    assert languages.count(Language.EN) >= 4 and languages.count(Language.ZH) >= 2
    for role in bench.roles.values():
        parsed = parse_profile(role.profile)
        assert parsed is not None and (parsed.name, parsed.work) == (role.name, role.work)
        assert role.reference_transcript and role.reference_audio and Path(role.reference_audio).is_file()
        single, multi = bench.samples_of(role.id, Mode.SINGLE), bench.samples_of(role.id, Mode.MULTI)
        assert len(single) == 2 and len(multi) == 2 and all(len(s.turns) >= 2 for s in multi)
        for sample in single + multi:
            assert sample.category and sample.system_prompt.startswith(role.profile)
            for turn in sample.turns:
                assert turn.user_text and turn.reference_text
                for rel in (turn.user_audio, turn.reference_audio):
                    assert rel and (bench.root / rel).stat().st_size > 10_000
    again, _ = load_benchmark("mini")
    assert again.content_hash == bench.content_hash  # a second load reuses the rendering
    shown = runner.invoke(app, ["bench", "mini"])
    assert shown.exit_code == 0 and "孙悟空" in shown.stdout and "6 roles, 24 samples" in shown.stdout


def test_a_hugging_face_benchmark_is_read_from_the_hub_cache_and_fails_clearly_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.factory import make_benchmark

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = runner.invoke(app, ["bench", "hf:someone/SpeechRole-Eval"])
    assert missing.exit_code == 2
    assert "not in the local Hugging Face cache" in missing.output and "--bench DIR" in missing.output
    # a snapshot as the hub client leaves it: refs/main names the commit whose folder holds the files
    repo = hub / "datasets--someone--SpeechRole-Eval"
    commit = "0" * 40
    make_benchmark(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    bench, _ = load_benchmark("hf:someone/SpeechRole-Eval")
    assert bench.name == "someone/SpeechRole-Eval" and len(bench.roles) >= 2


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, mini_cache: Path) -> Iterator[tuple[Path, str]]:
    """One eval of mini's single-turn samples of an English and a Chinese role."""
    if _bundled_missing():
        pytest.skip("bundled models missing")
    root = tmp_path_factory.mktemp("eval")
    (root / "cache").mkdir()
    (root / "cache" / "benchmarks").symlink_to(mini_cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEECHROLE_CACHE_DIR", str(root / "cache"))
        args = [
            "eval",
            "--bench",
            "mini",
            "--agent",
            AGENT,
            "--run-dir",
            str(root / "run"),
            "--mode",
            "single",
        ]
        result = runner.invoke(app, [*args, "--roles", "Hamlet,wukong"])
        yield root / "run", result.output


@needs_models
def test_eval_runs_every_stage_and_writes_a_valid_scored_run(
    evaluated: tuple[Path, str], cache: Path
) -> None:
    run, output = evaluated
    assert "Objective metrics by role" in output and "need an audio-LLM judge" in output, output
    assert re.search(r"report: .*report\.html", output)
    checked = runner.invoke(
        app, ["validate", str(run), "--bench", "mini", "--mode", "single", "--roles", "Hamlet,wukong"]
    )
    assert checked.exit_code == 0, checked.output
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    stages = info["eval"]["stages"]
    assert list(stages) == ["generate", "measure", "score", "report"]
    assert stages["generate"]["generated"] == 4 and stages["generate"]["failed_samples"] == 0
    assert info["agent"]["llm"]["max_new_tokens"] == 24  # the stage option reached the model
    assert info["agent"]["asr_zh"]["backend"] == "gold"  # no offline Chinese ASR: recorded as an oracle
    score = json.loads((run / "score.json").read_text(encoding="utf-8"))
    by_role = {s["role"]: s for s in score["systems"][0]["objective"]["splits"] if s.get("role")}
    assert set(by_role) == {"Hamlet", "wukong"}
    for split in by_role.values():
        measures = {m["measure"]: m for m in split["measures"]}
        assert 0.5 < measures["speaker.similarity"]["agent"]["value"] <= 1.0
        assert 1.0 < measures["dnsmos.ovrl"]["agent"]["value"] < 5.0
    # the report links every clip it plays, relative to itself
    html = (run / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'<audio controls preload="none" src="([^"]+)"', html)
    assert len(sources) == 4 * 3  # user, agent and reference clip of 4 turns
    assert all((run / unquote(src)).resolve().is_file() for src in sources)


@needs_models
def test_eval_rerun_is_near_instant_and_a_judge_adds_the_eight_metrics(
    evaluated: tuple[Path, str], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import speechrole.agents.base

    run, _ = evaluated

    def no_agent(spec: str) -> None:
        raise AssertionError("nothing is missing: the agent must not be loaded")

    monkeypatch.setattr(speechrole.agents.base, "create_agent", no_agent)
    args = ["eval", "--bench", "mini", "--agent", AGENT, "--run-dir", str(run), "--mode", "single"]
    args += ["--roles", "Hamlet,wukong"]
    started = time.perf_counter()
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert time.perf_counter() - started < 30  # metrics load, nothing is measured again
    stages = json.loads((run / "run.json").read_text(encoding="utf-8"))["eval"]["stages"]
    assert stages["generate"]["generated"] == 0 and stages["measure"]["measured"] == 0
    with JudgeServer() as server:
        judged = runner.invoke(app, [*args, "--judge", "judge-x", "--base-url", server.base_url])
    assert judged.exit_code == 0, judged.output
    assert "Leaderboard" in judged.output and "need an audio-LLM judge" not in judged.output
    stages = json.loads((run / "run.json").read_text(encoding="utf-8"))["eval"]["stages"]
    assert stages["judge"]["scored"] == 4 and stages["judge"]["unscored"] == 0
    system = json.loads((run / "score.json").read_text(encoding="utf-8"))["systems"][0]
    assert system["judge_model"] == "judge-x" and system["n_judgments"] == 4
    overall = system["splits"][0]["metrics"]
    assert len(overall) == 8 and all(m["score"]["value"] is not None for m in overall.values())
    assert "order AB" in (run / "report.html").read_text(encoding="utf-8")


@needs_models
def test_a_killed_eval_resumes_where_it_stopped(cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "speechrole.cli", "eval", "--bench", "mini", "--agent", AGENT]
    cmd += ["--run-dir", str(run), "--roles", "Sherlock Holmes", "--mode", "multi"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = run / "generations.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not log.is_file() or log.read_text().count("\n") < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = log.read_text().count("\n")
    assert 2 <= done_before < 5  # killed in the middle of the 5 turns
    finished = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    stages = json.loads((run / "run.json").read_text(encoding="utf-8"))["eval"]["stages"]
    assert stages["generate"]["skipped"] >= done_before - 1  # at most the turn in flight is redone
    assert stages["generate"]["generated"] + stages["generate"]["skipped"] == 5
    assert (run / "report.html").is_file() and (run / "score.json").is_file()
