"""Probes against stand-in judges with planted habits: each habit is caught by the probe meant for it,
a fair judge passes every invariance probe, and a judge that ignores the audio is flagged insensitive."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechrole.bench import load_benchmark
from speechrole.judge.config import JudgeConfig
from speechrole.judge.probe import probe_verdicts, run_probes, verdict
from tests.factory import make_benchmark, make_outputs
from tests.judge_server import JudgeServer

INVARIANCE = ["reference-self", "gain+6db", "gain-6db", "lead-silence", "swap-positions"]


def _decode(clips: Sequence[bytes]) -> list[tuple[np.ndarray, int]]:
    out = []
    for c in clips:
        data, rate = sf.read(io.BytesIO(c), dtype="float32", always_2d=True)
        out.append((data.mean(axis=1), rate))
    return out


def _pitch(audio: np.ndarray, rate: int) -> float:
    """The tone's frequency: the spectral peak, refined by a parabola through its neighbours."""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / len(audio)


def fair(clips: Sequence[bytes]) -> int:
    """Scores what is said (here: which tone), not how loud, how long or where it came."""
    pitches = [round(_pitch(a[np.abs(a) > 1e-4], r)) % 10 for a, r in _decode(clips)]
    return 1 + round(float(np.mean(pitches)))


def louder(clips: Sequence[bytes]) -> int:
    rms = float(np.sqrt(np.mean(np.concatenate([a for a, _ in _decode(clips)]) ** 2)))
    return int(np.clip(round(6 + 2 * np.log2(rms / 0.2)), 1, 10))


def longer(clips: Sequence[bytes]) -> int:
    seconds = sum(len(a) / r for a, r in _decode(clips))
    return int(np.clip(3 + round(2 * seconds), 1, 10))


def constant(clips: Sequence[bytes]) -> int:
    return 7


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    bench_root = make_benchmark(tmp_path / "bench")
    run = make_outputs(tmp_path / "run", bench_root)
    bench, _ = load_benchmark(bench_root)
    return bench, run, tmp_path


def _probe(setup, probes: list[str], **server):  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    with JudgeServer(**server) as srv:
        config = JudgeConfig(
            model="judge-x", base_url=srv.base_url, cache_path=tmp / "cache.sqlite", timeout_s=5.0
        )
        report = run_probes(run, bench, config, probes, n_samples=12, seed=0)
        requests = srv.state.requests
    return report, probe_verdicts(report.shifts), requests


def test_a_fair_judge_passes_every_invariance_probe(setup) -> None:  # type: ignore[no-untyped-def]
    report, verdicts, _ = _probe(setup, INVARIANCE, side_score=fair)
    assert verdicts == dict.fromkeys(INVARIANCE, "invariant")
    assert all(s.n == 12 for s in report.shifts)


def test_a_judge_adding_two_points_to_model_a_is_caught(setup) -> None:  # type: ignore[no-untyped-def]
    report, verdicts, _ = _probe(setup, ["reference-self", "swap-positions"], side_score=fair, bias_a=2)
    assert verdicts == {"reference-self": "biased", "swap-positions": "biased"}
    overall = {s.probe: s for s in report.shifts if s.metric == "overall"}
    assert overall["reference-self"].low > 0  # type: ignore[operator]  # A (the reference copy) wins its tie
    assert overall["swap-positions"].high < 0  # type: ignore[operator]  # the agent, heard second, loses


def test_a_judge_preferring_louder_audio_is_caught_by_gain(setup) -> None:  # type: ignore[no-untyped-def]
    report, verdicts, _ = _probe(setup, ["gain+6db", "gain-6db"], side_score=louder)
    assert verdicts == {"gain+6db": "biased", "gain-6db": "biased"}
    overall = {s.probe: s for s in report.shifts if s.metric == "overall"}
    assert overall["gain+6db"].shift > 0 > overall["gain-6db"].shift  # type: ignore[operator]


def test_a_judge_preferring_longer_audio_is_caught_by_leading_silence(setup) -> None:  # type: ignore[no-untyped-def]
    _, verdicts, _ = _probe(setup, ["lead-silence", "gain+6db"], side_score=longer)
    assert verdicts == {"lead-silence": "biased", "gain+6db": "invariant"}


def test_a_judge_that_ignores_the_audio_is_insensitive(setup) -> None:  # type: ignore[no-untyped-def]
    _, verdicts, _ = _probe(setup, ["first-half", "other-role", "other-voice"], side_score=constant)
    assert verdicts == {
        "first-half": "insensitive",
        "other-role": "insensitive",
        "other-voice": "insensitive",
    }
    assert (setup[1] / "probes" / "other-voice" / "model_output").is_dir()


def test_probes_resume_from_the_log_and_write_their_records(setup) -> None:  # type: ignore[no-untyped-def]
    bench, run, tmp = setup
    with JudgeServer(side_score=louder) as srv:  # one endpoint: the cache key includes it
        config = JudgeConfig(
            model="judge-x", base_url=srv.base_url, cache_path=tmp / "c.sqlite", timeout_s=5.0
        )
        first = probe_verdicts(run_probes(run, bench, config, ["gain+6db"], n_samples=12).shifts)
        requests = srv.state.requests
        again = probe_verdicts(run_probes(run, bench, config, ["gain+6db"], n_samples=12).shifts)
        assert first == again == {"gain+6db": "biased"}
        assert requests == 24 and srv.state.requests == requests  # the rerun asks nothing
    lines = [json.loads(x) for x in (run / "probes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 * 9  # two runs x (8 metrics + overall)
    assert {(x["judge"]["model"], x["judge"]["protocol"]) for x in lines} == {("judge-x", "official")}
    assert all(x["judge"]["version"].startswith("1/rubric-") for x in lines)


def test_verdict_rules() -> None:
    assert verdict("invariance", True, 0.05, 0.2) == "biased"
    assert verdict("invariance", True, -0.01, 0.01) == "invariant"
    assert verdict("invariance", True, -0.01, 0.3) == "inconclusive"
    assert verdict("sensitivity", True, -0.4, -0.1) == "sensitive"
    assert verdict("sensitivity", True, 0.0, 0.0) == "insensitive"
    assert verdict("sensitivity", False, -0.4, -0.1) == "—"


def test_probe_command_prints_the_table(setup) -> None:  # type: ignore[no-untyped-def]
    from speechrole.cli import app

    bench, run, tmp = setup
    (run / "run.json").write_text(json.dumps({"benchmark": {"spec": str(bench.root)}}), encoding="utf-8")
    with JudgeServer(side_score=louder) as srv:
        result = CliRunner().invoke(
            app,
            [
                "probe", str(run), "--judge", "judge-x", "--base-url", srv.base_url, "--probe", "gain+6db",
                "--samples", "6", "--cache", str(tmp / "c.sqlite"),
            ],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "gain+6db: biased" in result.output and "Probes of judge judge-x" in result.output


def test_probe_results_reach_score_json_and_the_report(setup) -> None:  # type: ignore[no-untyped-def]
    from speechrole.report import build_report
    from speechrole.score import load_systems, score_systems
    from speechrole.score.render import all_tables

    bench, run, tmp = setup
    _probe(setup, ["gain+6db"], side_score=louder)
    (system,) = score_systems(load_systems([run], bench)).systems
    checks = system.to_dict()["judge_checks"]
    overall = next(p for p in checks["probes"] if p["metric"] == "overall")  # type: ignore[index]
    assert overall["verdict"] == "biased" and overall["judge"]["model"] == "judge-x"
    report = score_systems(load_systems([run], bench))
    assert any(t.title.startswith("Judge checks") for t in all_tables(report))
    html = build_report([run], tmp / "report.html", bench=bench).read_text(encoding="utf-8")
    assert "Judge checks" in html and "gain+6db" in html
