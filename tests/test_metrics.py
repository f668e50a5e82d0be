"""Objective metrics: sanity probes on real bundled voices, robustness to bad clips, the measure stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechrole.audio import write_wav
from speechrole.bench import load_benchmark
from speechrole.cli import app
from speechrole.measure import Measurement, create_metrics, read_measures
from speechrole.measure import parse_metric_specs as split_metric_specs
from speechrole.metrics.base import RATE, MetricError, decode_clip
from speechrole.metrics.intelligibility import error_rate, normalise_chars, normalise_words
from speechrole.metrics.prosody import syllables
from speechrole.schema import Language, Mode
from tests.test_agents import _bundled_missing

needs_models = pytest.mark.skipif(bool(_bundled_missing()), reason="bundled models missing")
TEXT = "I have been thinking about what you said yesterday, and I believe you were right about the ship."


def voice_clip(tmp_path: Path, voice: str, text: str = TEXT, name: str = "") -> Path:
    from speechrole.agents.tts import DEFAULT_BANK, synthesize_with

    audio, rate = synthesize_with(next(v for v in DEFAULT_BANK if v.id == voice), text)
    path = tmp_path / (name or f"{voice.replace(':', '_')}.wav")
    write_wav(path, audio, rate)
    return path


def clip_of(path: Path, text: str = TEXT, language: Language = Language.EN):  # type: ignore[no-untyped-def]
    return decode_clip(path, path.name, language, text)


@needs_models
def test_speaker_similarity_probes(tmp_path: Path) -> None:
    import librosa

    (metric,) = create_metrics(("speaker",))
    slt, awb = clip_of(voice_clip(tmp_path, "flite:slt")), clip_of(voice_clip(tmp_path, "flite:awb"))
    other_text = clip_of(
        voice_clip(tmp_path, "flite:slt", "The birch canoe slid on the smooth planks.", "slt2.wav")
    )
    stretched = clip_of(slt.path)
    stretched.audio = librosa.effects.time_stretch(slt.audio, rate=0.8).astype(np.float32)
    stretched.sha256 = "stretched"
    for clip in (slt, awb, other_text, stretched):
        clip.reference = slt
    same, different, same_voice, slower = (
        v["similarity"] for v in metric.measure([slt, awb, other_text, stretched])
    )  # type: ignore[index]
    assert same > 0.99  # the same clip
    assert same_voice > 0.8  # the same voice saying something else
    assert different < same_voice - 0.15  # another bank voice is clearly lower
    # 20% slower (a phase vocoder, which adds its own artefacts) stays far nearer than another voice.
    assert slower > 0.7 and slower > different + 0.1


@needs_models
def test_dnsmos_drops_with_noise(tmp_path: Path) -> None:
    (metric,) = create_metrics(("dnsmos",))
    clean = clip_of(voice_clip(tmp_path, "festival:cmu_us_slt_arctic_hts"))
    noisy = clip_of(clean.path)
    rng = np.random.default_rng(0)
    noisy.audio = (clean.audio + 0.05 * rng.standard_normal(len(clean.audio))).astype(np.float32)
    a, b = metric.measure([clean, noisy])
    assert a["ovrl"] > b["ovrl"] + 0.5 and a["bak"] > b["bak"] + 0.5  # type: ignore[index]
    reference = create_metrics(("dnsmos:stride=1",))[0].measure([clean])[0]
    assert abs(reference["ovrl"] - a["ovrl"]) < 0.15  # type: ignore[index]  # the cheaper windowing stays close


@needs_models
def test_time_stretch_changes_rate_not_pitch(tmp_path: Path) -> None:
    import librosa

    (metric,) = create_metrics(("prosody",))
    normal = clip_of(voice_clip(tmp_path, "flite:rms"))
    slow = clip_of(normal.path)
    slow.audio = librosa.effects.time_stretch(normal.audio, rate=0.7).astype(np.float32)
    a, b = metric.measure([normal, slow])
    assert b["rate_syl_per_s"] < a["rate_syl_per_s"] * 0.8  # type: ignore[index,operator]
    assert abs(np.log2(b["f0_median_hz"] / a["f0_median_hz"])) < 0.1  # type: ignore[index,operator]
    assert 80 < a["f0_median_hz"] < 300 and a["f0_range_st"] > 0  # type: ignore[index,operator]


@needs_models
def test_intelligibility_hears_clear_speech(tmp_path: Path) -> None:
    (metric,) = create_metrics(("intelligibility",))
    good = clip_of(voice_clip(tmp_path, "festival:cmu_us_slt_arctic_hts"))
    wrong_text = clip_of(good.path, "Completely different words were expected here today.")
    chinese = clip_of(good.path, "你好", Language.ZH)
    a, b, c = metric.measure([good, wrong_text, chinese])
    assert a["error_rate"] < 0.2 and b["error_rate"] > 0.8  # type: ignore[index,operator]
    assert isinstance(c, MetricError) and "English-only" in c.reason


def test_text_normalisation_and_syllables() -> None:
    assert normalise_words("Hello, World! It's me.") == "hello world it's me"
    assert normalise_chars("你好，世界！ OK") == "你好世界ok"
    assert error_rate("Hello, world!", "hello world", Language.EN) == 0.0
    assert error_rate("你好世界", "你好世", Language.ZH) == pytest.approx(0.25)
    assert syllables("I believe you were right") == 6 and syllables("孙悟空来了") == 5


@needs_models
@pytest.mark.parametrize("kind", ["corrupt", "silent", "clipped", "tiny"])
def test_bad_clips_are_errors_or_flags_never_nan(tmp_path: Path, kind: str) -> None:
    from tests.factory import make_benchmark, make_outputs

    bench_root = make_benchmark(tmp_path / "bench")
    run = make_outputs(tmp_path / "run", bench_root)
    bad = run / "model_output/single_result/audio/Ada/Ada_0_0.wav"
    if kind == "corrupt":
        bad.write_bytes(b"RIFF\x00\x00garbage")
    elif kind == "silent":
        sf.write(bad, np.zeros(RATE * 2, np.float32), RATE)
    elif kind == "clipped":
        sf.write(bad, np.clip(3 * np.sin(np.arange(RATE * 2) / 5), -1, 1).astype(np.float32), RATE)
    else:
        sf.write(bad, 0.3 * np.sin(np.arange(RATE // 10) / 5).astype(np.float32), RATE)
    bench = load_benchmark(bench_root)[0]
    outcome = Measurement(
        bench,
        run,
        create_metrics(("speaker", "dnsmos", "prosody", "duration")),
        roles=("Ada",),
        modes=(Mode.SINGLE,),
    ).run()
    lines = [
        x
        for x in read_measures(run / "measures.jsonl")[0]
        if x["clip"].endswith("single_result/audio/Ada/Ada_0_0.wav")
    ]
    assert len(lines) == 4 and outcome.clips > 0
    for line in lines:
        assert (line["error"] is None) != (line["values"] is None)
        for value in (line["values"] or {}).values():
            assert not (isinstance(value, float) and np.isnan(value))
    if kind == "corrupt":
        assert all("unreadable audio" in x["error"] for x in lines)
    else:
        flag = {"silent": "silent", "clipped": "clipped", "tiny": "too_short"}[kind]
        assert all(flag in x["flags"] for x in lines)


@needs_models
def test_measure_stage_is_resumable_and_cached_by_content(tmp_path: Path) -> None:
    from tests.factory import make_benchmark, make_outputs

    bench_root = make_benchmark(tmp_path / "bench")
    run = make_outputs(tmp_path / "run", bench_root)
    bench = load_benchmark(bench_root)[0]
    same = run / "model_output/single_result/audio/Ada"
    (same / "Ada_1_0.wav").write_bytes((same / "Ada_0_0.wav").read_bytes())  # one clip in two samples
    metrics = create_metrics(("dnsmos", "duration"))
    first = Measurement(bench, run, metrics, roles=("Ada", "Bram"), modes=(Mode.SINGLE,)).run()
    # The copy's values come from the first measurement of the same bytes.
    assert (first.measured, first.reused) == (14, 2)
    again = Measurement(bench, run, metrics, roles=("Ada", "Bram"), modes=(Mode.SINGLE,)).run()
    assert again.measured == 0 and again.reused == first.measured + first.reused


def write_stand_in_speaker_onnx(path: Path) -> Path:
    """A stand-in export: mean over frames, then a fixed projection, like the tail of a speaker net."""
    import onnx
    from onnx import TensorProto, helper

    proj = helper.make_tensor(
        "w", TensorProto.FLOAT, [80, 16], np.random.default_rng(0).standard_normal(80 * 16).astype(np.float32)
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["feats"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["emb"]),
        ],
        "spk",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, None, 80])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [1, 16])],
        [proj],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_onnx_speaker_encoder_plumbing(tmp_path: Path) -> None:
    pytest.importorskip("kaldi_native_fbank")
    write_stand_in_speaker_onnx(tmp_path / "spk.onnx")
    (metric,) = create_metrics((f"speaker:model={tmp_path / 'spk.onnx'}",))
    t = np.arange(RATE * 2) / RATE
    a = tmp_path / "a.wav"
    sf.write(a, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), RATE)
    clip = clip_of(a)
    clip.reference = clip
    (value,) = metric.measure([clip])
    assert value["similarity"] == pytest.approx(1.0, abs=1e-5)  # type: ignore[index]
    assert metric.version.startswith("1-onnx")


def test_metric_spec_splitting() -> None:
    assert split_metric_specs(
        "speaker,dnsmos:stride=1,intelligibility:asr=whisper:/m,beam_size=5,prosody"
    ) == ("speaker", "dnsmos:stride=1", "intelligibility:asr=whisper:/m,beam_size=5", "prosody")


@needs_models
def test_score_shows_objective_metrics_and_correlations(tmp_path: Path) -> None:
    from speechrole.judge.runner import JudgeConfig, JudgeTarget, judge
    from tests.factory import make_benchmark, make_outputs
    from tests.judge_server import JudgeServer

    bench_root = make_benchmark(tmp_path / "bench")
    run = make_outputs(tmp_path / "run", bench_root)
    bench = load_benchmark(bench_root)[0]
    Measurement(bench, run, create_metrics(("speaker", "prosody", "duration"))).run()
    only_measured = CliRunner().invoke(app, ["score", str(run), "--bench", str(bench_root), "--format", "md"])
    assert only_measured.exit_code == 0 and "judge metrics need a judge" in only_measured.stderr
    assert "Objective metrics" in only_measured.stdout and "speaker.similarity" in only_measured.stdout
    with JudgeServer() as server:
        judge(
            bench,
            JudgeTarget.for_run(run),
            JudgeConfig(model="j", base_url=server.base_url, cache_path=tmp_path / "c.db"),
        )
    result = CliRunner().invoke(app, ["score", str(run), "--format", "json"])
    system = json.loads(result.stdout)["systems"][0]
    correlations = system["objective"]["correlations"]
    assert {c["judge_metric"] for c in correlations} >= {"Prosodic_Consistency", "Emotion_Appropriateness"}
    assert all(c["n"] == 12 for c in correlations)
    table = CliRunner().invoke(app, ["score", str(run)])
    assert "Spearman" in table.stdout
