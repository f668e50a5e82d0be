"""Which side is which, end to end: the tested agent's clips must reach the judge as Model A in order AB
(as Model B in order BA), and the judge's (score_a, score_b) must come back as (test, reference).

The stand-in judge here hears the clips: it decodes each side's audio and gives 9 to a side made of the
agent's clips (tones near 1 kHz) and 3 to a side made of reference clips (tones near 450 Hz), wherever
the request placed them. An inverted request builder, an inverted parser, or both at once (a request
that puts the reference first under the name "AB" and a parser that undoes it) all fail here: the
first two turn the scores around, the third shows in what the judge was asked (`raw_text`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechrole.bench import load_benchmark
from speechrole.judge.log import read_judgments
from speechrole.judge.protocol import get_protocol
from speechrole.judge.runner import JudgeConfig, JudgeTarget, judge
from speechrole.results import read_system
from speechrole.schema import METRICS
from speechrole.score import load_systems, score_systems
from tests.factory import make_benchmark, make_outputs, tone
from tests.judge_server import JudgeServer, sides

AGENT_HZ, REFERENCE_HZ = (900.0, 1100.0), (400.0, 500.0)  # user clips of the factory are near 200 Hz
AGENT_SCORE, REFERENCE_SCORE, MIXED_SCORE = 9, 3, 1


def dominant_hz(wav: bytes) -> float:
    """The strongest frequency of a clip as the judge received it (resampled, loudness-normalised)."""
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / rate)[int(np.argmax(spectrum))])


def kind(wav: bytes) -> str:
    hz = dominant_hz(wav)
    if AGENT_HZ[0] <= hz <= AGENT_HZ[1]:
        return "agent"
    return "reference" if REFERENCE_HZ[0] <= hz <= REFERENCE_HZ[1] else f"unknown ({hz:.0f} Hz)"


def score_side(clips: Sequence[bytes]) -> int:
    """9 for a side of agent clips only, 3 for reference clips only, 1 for anything else."""
    kinds = {kind(c) for c in clips}
    if kinds == {"agent"}:
        return AGENT_SCORE
    return REFERENCE_SCORE if kinds == {"reference"} else MIXED_SCORE


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_benchmark(tmp_path_factory.mktemp("order") / "bench")
    for n, clip in enumerate(sorted((root / "test_data").rglob("*_role*.wav"))):
        tone(clip, 0.6, freq=REFERENCE_HZ[0] + 10 + 15 * (n % 5))  # the reference answers
    return root


def agent_run(path: Path, bench_root: Path) -> Path:
    run = make_outputs(path, bench_root)
    for n, clip in enumerate(sorted((run / "model_output").rglob("*.wav"))):
        tone(clip, 0.6, sr=24000, freq=AGENT_HZ[0] + 10 + 15 * (n % 5))  # the tested agent's answers
    return run


def test_the_stand_in_tells_the_sides_apart() -> None:
    agent, reference = io.BytesIO(), io.BytesIO()
    t = np.arange(9600) / 16000
    sf.write(agent, 0.3 * np.sin(2 * np.pi * 1000 * t), 16000, format="WAV")
    sf.write(reference, 0.3 * np.sin(2 * np.pi * 450 * t), 16000, format="WAV")
    assert (kind(agent.getvalue()), kind(reference.getvalue())) == ("agent", "reference")
    assert score_side([agent.getvalue(), reference.getvalue()]) == MIXED_SCORE

    def audio(data: str) -> dict[str, object]:
        return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}

    # Clips belong to the model named last before them, whatever order the names come in.
    parts = [
        {"type": "text", "text": "question"},
        {"type": "text", "text": "## Answer of Model B"},
        audio("b1"),
        audio("b2"),
        {"type": "text", "text": "## End of Model B's answer\n## Answer of Model A"},
        audio("a1"),
        audio("a2"),
    ]
    assert sides(parts) == (["a1", "a2"], ["b1", "b2"])


@pytest.mark.parametrize("protocol", ["official", "swap", "per-metric"])
def test_agent_and_reference_scores_land_on_their_own_side(
    bench_root: Path, tmp_path: Path, protocol: str
) -> None:
    bench, _ = load_benchmark(bench_root)
    run = agent_run(tmp_path / "run", bench_root)
    limit = 2 if protocol == "per-metric" else None  # 8 calls a sample: two samples are enough
    with JudgeServer(side_score=score_side) as server:
        config = JudgeConfig(
            model="judge-x",
            base_url=server.base_url,
            protocol=protocol,
            cache_path=tmp_path / "cache.sqlite",
            timeout_s=5.0,
            limit=limit,
        )
        outcome = judge(bench, JudgeTarget.for_run(run), config)
    samples = limit or len(bench.samples)
    orders = get_protocol(protocol).orders
    assert outcome.scored == outcome.planned == samples * get_protocol(protocol).calls_per_sample()
    assert outcome.unscored == 0

    judgments, problems = read_judgments(run / "judgments.jsonl")
    assert problems == [] and len(judgments) == outcome.planned
    assert {(j.sample, j.order) for j in judgments} == {
        (s.key, o) for s in bench.samples[:samples] for o in orders
    }
    for j in judgments:
        assert j.status == "scored", j.error
        assert j.order in orders and set(j.scores) == set(j.metrics)
        # What the judge was asked: the agent is Model A in order AB and Model B in order BA.
        asked = json.loads(j.raw_text or "")
        heard_first, heard_second = (
            (AGENT_SCORE, REFERENCE_SCORE) if j.order == "AB" else (REFERENCE_SCORE, AGENT_SCORE)
        )
        for metric in j.metrics:
            assert (asked[metric]["score_a"], asked[metric]["score_b"]) == (heard_first, heard_second), (
                j.sample,
                j.order,
                metric,
            )
            # What was recorded: mapped back to (tested agent, reference) in either order.
            assert (j.scores[metric].test, j.scores[metric].ref) == (AGENT_SCORE, REFERENCE_SCORE), (
                j.sample,
                j.order,
                metric,
            )
    judged = {s.key for s in bench.samples[:samples]}
    assert {j.sample for j in judgments} == judged

    # The official layout says [test, reference] for every scored metric of every judged sample.
    entries = [
        e
        for file in sorted((run / "test_results").rglob("*.json"))
        for e in json.loads(file.read_text(encoding="utf-8"))
    ]
    scored = [e for e in entries if any(k.endswith("_results") for k in e)]
    assert len(scored) == samples
    for entry in scored:
        assert {m: entry[f"{m}_results"]["score"] for m in METRICS} == {
            m: [AGENT_SCORE, REFERENCE_SCORE] for m in METRICS
        }, entry

    # Every reader scores it the same way: test / reference = 3 on every metric.
    ratio = AGENT_SCORE / REFERENCE_SCORE
    from_log = score_systems(load_systems([run])).systems[0].summary()
    exported = score_systems([read_system(run / "test_results", "export")]).systems[0].summary()
    for summary in (from_log, exported):
        assert summary is not None and summary.n_samples == samples
        assert all(summary.metrics[m].score.value == pytest.approx(ratio) for m in METRICS)
        assert summary.overall.value == pytest.approx(ratio)  # type: ignore[union-attr]
