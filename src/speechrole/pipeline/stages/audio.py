"""From media to annotated speech segments: extract -> vad -> diarize -> segment -> asr -> quality -> embed.

Storage is 24 kHz mono WAV (Emilia's convention and the rate of the cloning TTS models); analysis
(VAD, ASR, DNSMOS, speaker embeddings) resamples to 16 kHz on the fly.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from speechrole.audio import load_audio, resample, write_wav
from speechrole.models import ModelMissingError, needs_module
from speechrole.pipeline.stage import Context, Resources, Row, Stage, drop, parallel_map, register, row_id

STORE_RATE = 16000 * 3 // 2  # 24 kHz
ANALYSIS_RATE = 16000


def mono_at(path: Path, rate: int) -> np.ndarray:
    data, source_rate = load_audio(path)
    return resample(data.mean(axis=1, keepdims=True), source_rate, rate)[:, 0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


@register
class Extract(Stage):
    """Decode any media with ffmpeg to 24 kHz mono WAV, gain toward -20 dBFS (at most +-3 dB), peak-safe."""

    name = "extract"
    reads = frozenset({"media_path"})
    writes = frozenset({"audio_path", "duration"})
    batch_size = 4  # decoded side by side, one ffmpeg per core

    def setup(self, ctx: Context) -> None:
        if shutil.which("ffmpeg") is None:
            raise ModelMissingError("ffmpeg is not installed (Debian: apt-get install ffmpeg)")
        self.ctx = ctx

    def process_batch(self, rows: list[Row]) -> list[Row]:
        return parallel_map(self._one, rows, self.ctx.cpus)

    def _one(self, row: Row) -> Row:
        target = self.ctx.path("audio", f"{row['id']}.wav")
        command = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", row["media_path"], "-vn", "-ac", "1"]
        result = subprocess.run(
            [*command, "-ar", str(STORE_RATE), "-f", "f32le", "-"],
            capture_output=True,
            timeout=3600,
            check=False,
        )
        audio = np.frombuffer(result.stdout, dtype=np.float32)
        if result.returncode != 0 or audio.size < STORE_RATE // 2:
            why = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no audio stream"]
            said = why[0].removeprefix(f"{row['media_path']}: ")[:200]  # ffmpeg names the file too
            return drop(row, f"corrupt media: {row['media_path']}: {said}")
        rms = float(np.sqrt(np.mean(np.square(audio)))) or 1e-9
        gain = float(np.clip(-20.0 - 20 * np.log10(rms), -3.0, 3.0))
        audio = audio * np.float32(10 ** (gain / 20))
        peak = float(np.abs(audio).max())
        if peak > 0.99:
            audio = audio * np.float32(0.99 / peak)
        write_wav(target, audio, STORE_RATE)
        return {**row, "audio_path": str(target), "duration": round(audio.size / STORE_RATE, 3)}


@register
class VAD(Stage):
    """Speech regions with silero-vad (bundled ONNX model)."""

    name = "vad"
    known = frozenset({"min_silence_ms"})
    reads = frozenset({"audio_path"})
    writes = frozenset({"speech"})
    batch_size = 4  # side by side, one silero model per core (a model keeps its stream's state)

    def setup(self, ctx: Context) -> None:
        import threading

        try:
            from silero_vad import load_silero_vad
        except ImportError:
            raise ModelMissingError("silero-vad is not installed (pip install 'speechrole[data]')") from None
        self.load, self.cpus = load_silero_vad, ctx.cpus
        self.models = threading.local()
        self.models.model = load_silero_vad(onnx=True)  # this thread's; proves the model loads

    def process_batch(self, rows: list[Row]) -> list[Row]:
        return parallel_map(self._one, rows, self.cpus)

    def _one(self, row: Row) -> Row:
        import torch
        from silero_vad import get_speech_timestamps

        if not hasattr(self.models, "model"):
            self.models.model = self.load(onnx=True)
        audio = mono_at(Path(row["audio_path"]), ANALYSIS_RATE)
        stamps = get_speech_timestamps(
            torch.from_numpy(audio),
            self.models.model,
            sampling_rate=ANALYSIS_RATE,
            min_silence_duration_ms=int(self.options.get("min_silence_ms", 300)),
            return_seconds=True,
        )
        speech = [[round(s["start"], 3), round(s["end"], 3)] for s in stamps]
        return {**row, "speech": speech} if speech else drop(row, "no speech found")


SPEAKER_ENCODER = "speaker_encoder"  # pipeline key: a CAM++ / WeSpeaker ONNX model for every stage


def speaker_encoder_problem(config: dict[str, Any]) -> str | None:
    """Why the pipeline's `speaker_encoder` cannot be used (asked when the pipeline is built)."""
    model = config.get(SPEAKER_ENCODER)
    if not model:
        return None
    path = Path(config.get("base_dir", ".")) / str(model)
    if not path.is_file():
        return f"{SPEAKER_ENCODER}: {path} not found (a CAM++ or WeSpeaker model exported to ONNX)"
    return needs_module("kaldi_native_fbank", "pip install kaldi-native-fbank")


class _Encoder:
    """Speaker embeddings of 16 kHz audio: resemblyzer (bundled), or the pipeline's `speaker_encoder`
    (CAM++ / WeSpeaker ONNX) — one space for diarization, roles, references and verification."""

    def __init__(self, config: dict[str, Any]) -> None:
        model = config.get(SPEAKER_ENCODER)
        if model:
            from speechrole.metrics.speaker import OnnxSpeakerEncoder

            self.encoder: Any = OnnxSpeakerEncoder(str(Path(config.get("base_dir", ".")) / str(model)))
            self.name = f"onnx:{Path(str(model)).name}"
        else:
            from speechrole.speakers import default_encoder

            self.encoder, self.name = default_encoder(), "resemblyzer"

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return self.encoder.embed(audio, ANALYSIS_RATE)

    def many(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Embeddings of many 16 kHz clips, batched when the encoder can."""
        batched = getattr(self.encoder, "embed_many", None)
        return batched(audios, ANALYSIS_RATE) if batched else [self(a) for a in audios]


def cluster(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Agglomerative clustering on cosine distance (average linkage); labels 0..k-1 by first appearance."""
    if len(vectors) == 1:
        return np.zeros(1, dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    raw = AgglomerativeClustering(
        n_clusters=None, distance_threshold=threshold, metric="cosine", linkage="average"
    ).fit_predict(vectors)
    order = {label: i for i, label in enumerate(dict.fromkeys(raw))}
    return np.array([order[x] for x in raw])


PYANNOTE_INSTALL = "pip install pyannote.audio"


def pyannote_model(options: dict[str, Any], config: dict[str, Any]) -> Path | None:
    """The diarize stage's `model` (a pipeline folder or its config.yaml), relative to the pipeline file."""
    model = options.get("model")
    return Path(config.get("base_dir", ".")) / str(model) if model else None


def load_pyannote(model: Path | None) -> Any:
    """A pyannote pipeline from local files only: its config (a folder's config.yaml, the file, or a
    cached download) is copied to a temporary folder with every model reference made absolute and
    loaded from there, so `Pipeline.from_pretrained` never asks the hub; `ModelMissingError` names a
    missing file."""
    import tempfile

    from speechrole.models import LIBRARY_MISSING, write_pyannote_config

    try:
        from pyannote.audio import Pipeline as PyannotePipeline
    except ImportError:
        raise ModelMissingError(f"{LIBRARY_MISSING}: {PYANNOTE_INSTALL} (needs pyannote.audio)") from None
    with tempfile.TemporaryDirectory(prefix="speechrole-pyannote-") as tmp:
        return PyannotePipeline.from_pretrained(str(write_pyannote_config(model, Path(tmp))))


@register
class Diarize(Stage):
    """Who speaks when: VAD regions cut into short pieces, embedded, clustered (pyannote when present)."""

    name = "diarize"
    version = "2"  # pieces embedded together (embed_many)
    uses = frozenset({SPEAKER_ENCODER})
    known = frozenset({"backend", "model", "piece_s", "threshold"})
    reads = frozenset({"audio_path", "speech"})
    writes = frozenset({"turns", "speakers"})
    batch_size = 1
    resources = Resources(cpus=1.0)

    def check(self, config: dict[str, Any]) -> str | None:
        backend = self.options.get("backend", "embed-cluster")
        if backend == "pyannote":
            from speechrole.models import pyannote_local_config, weights_problem

            return needs_module("pyannote.audio", PYANNOTE_INSTALL) or weights_problem(
                pyannote_local_config, pyannote_model(self.options, config)
            )
        if backend != "embed-cluster":
            return f"diarize backend {backend!r}: use embed-cluster (bundled) or pyannote"
        return speaker_encoder_problem(config)

    def setup(self, ctx: Context) -> None:
        backend = self.options.get("backend", "embed-cluster")
        if backend == "pyannote":
            self.pyannote = load_pyannote(pyannote_model(self.options, ctx.config))
        elif backend != "embed-cluster":
            raise ValueError(f"diarize backend {backend!r}: use embed-cluster (bundled) or pyannote")
        else:
            import sklearn.cluster  # noqa: F401 - its import (~1 s) belongs to setup, not to the first row

            self.encode = _Encoder(ctx.config)

    def process_batch(self, rows: list[Row]) -> list[Row]:
        return [self._one(row) for row in rows]

    def _one(self, row: Row) -> Row:
        if hasattr(self, "pyannote"):
            result = self.pyannote(row["audio_path"])
            annotation = getattr(result, "speaker_diarization", result)  # pyannote 4 wraps it
            tracks = list(annotation.itertracks(yield_label=True))
            names: dict[str, str] = {}  # pyannote's labels -> S0, S1 ... in order of appearance
            for _, _, label in tracks:
                names.setdefault(str(label), f"S{len(names)}")
            turns = [[round(t.start, 3), round(t.end, 3), names[str(label)]] for t, _, label in tracks]
            return {**row, "turns": turns, "speakers": len(names)}
        audio = mono_at(Path(row["audio_path"]), ANALYSIS_RATE)
        piece = float(self.options.get("piece_s", 3.0))
        pieces: list[tuple[float, float]] = []
        for start, end in row["speech"]:
            n = max(1, round((end - start) / piece))
            step = (end - start) / n
            pieces += [(start + k * step, start + (k + 1) * step) for k in range(n)]
        pieces = [(s, e) for s, e in pieces if e - s >= 0.5]
        if not pieces:
            return drop(row, "no speech piece long enough to tell the speaker (0.5 s)")
        vectors = np.stack(
            self.encode.many([audio[int(s * ANALYSIS_RATE) : int(e * ANALYSIS_RATE)] for s, e in pieces])
        )
        labels = cluster(vectors, float(self.options.get("threshold", 0.3)))
        turns: list[list[Any]] = []
        for (s, e), label in zip(pieces, labels, strict=True):
            if turns and turns[-1][2] == f"S{label}" and s - turns[-1][1] < 0.05:
                turns[-1][1] = round(e, 3)  # the next piece of the same region and speaker
            else:
                turns.append([round(s, 3), round(e, 3), f"S{label}"])
        return {**row, "turns": turns, "speakers": int(labels.max()) + 1}


@register
class Segment(Stage):
    """Speaker turns -> segments of 3-30 s: merge a speaker's turns across short gaps, cut long ones,
    drop short ones; each segment is written as its own 24 kHz clip."""

    name = "segment"
    known = frozenset({"min_s", "max_s", "merge_gap_s"})
    reads = frozenset({"audio_path", "media_path", "turns", "language"})
    writes = frozenset(
        {"id", "source_id", "media_path", "speaker", "start", "end", "duration", "audio_path", "language"}
    )
    keeps = False
    batch_size = 1

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx

    def process_batch(self, rows: list[Row]) -> list[Row]:
        lo, hi = float(self.options.get("min_s", 3.0)), float(self.options.get("max_s", 30.0))
        gap = float(self.options.get("merge_gap_s", 1.0))
        out: list[Row] = []
        for row in rows:
            merged: list[list[Any]] = []
            for start, end, speaker in row["turns"]:
                if (
                    merged
                    and merged[-1][2] == speaker
                    and start - merged[-1][1] <= gap
                    and end - merged[-1][0] <= hi
                ):
                    merged[-1][1] = end
                else:
                    merged.append([start, end, speaker])
            audio = mono_at(Path(row["audio_path"]), STORE_RATE)
            for start, end, speaker in merged:
                n = int(np.ceil((end - start) / hi))
                for k in range(n):
                    s = start + k * (end - start) / n
                    e = start + (k + 1) * (end - start) / n
                    seg_id = row_id(row["id"], speaker, round(s, 3), round(e, 3))
                    base = {"id": seg_id, "_src": row["id"]}
                    if e - s < lo:
                        out.append({**drop(base, f"shorter than {lo:g} s: {e - s:.1f} s"), "_src": row["id"]})
                        continue
                    path = self.ctx.path("segments", f"{seg_id}.wav")
                    write_wav(path, audio[int(s * STORE_RATE) : int(e * STORE_RATE)], STORE_RATE)
                    out.append(
                        {
                            **base,
                            "source_id": row["id"],
                            "media_path": row["media_path"],
                            "speaker": f"{row['id']}:{speaker}",
                            "start": round(s, 3),
                            "end": round(e, 3),
                            "duration": round(e - s, 3),
                            "audio_path": str(path),
                            "language": row["language"],
                        }
                    )
        return out


@register
class Quality(Stage):
    """Keep clean segments: DNSMOS OVRL at least `min_ovrl` (the paper keeps OVRL > 3). It runs before
    `asr`, so that what fails the gate is never transcribed."""

    name = "quality"
    version = "2"
    known = frozenset({"min_ovrl"})
    reads = frozenset({"audio_path", "language"})
    writes = frozenset({"dnsmos"})
    batch_size = 8

    def setup(self, ctx: Context) -> None:
        from speechrole.metrics.dnsmos import DNSMOS

        self.dnsmos = DNSMOS(threads=ctx.cpus)
        self.dnsmos.load()

    def process_batch(self, rows: list[Row]) -> list[Row]:
        from speechrole.metrics.base import MetricError, decode_clip
        from speechrole.schema import Language

        min_ovrl = float(self.options.get("min_ovrl", 3.0))
        clips = [decode_clip(Path(r["audio_path"]), r["id"], Language(r["language"]), "") for r in rows]
        out = []
        for row, values in zip(rows, self.dnsmos.measure(clips), strict=True):
            if isinstance(values, MetricError):
                out.append(drop(row, f"DNSMOS failed: {values.reason}"))
            elif float(values["ovrl"]) < min_ovrl:
                out.append(drop(row, f"DNSMOS OVRL below {min_ovrl:g}: {float(values['ovrl']):.2f}"))
            else:
                dnsmos = {k: round(float(v), 3) for k, v in values.items() if isinstance(v, int | float)}
                out.append({**row, "dnsmos": dnsmos})
        return out


@register
class ASR(Stage):
    """Transcribe each segment (bundled whisper tiny.en; any faster-whisper model with asr=whisper:PATH),
    and keep it only with some text at a plausible speaking rate (`chars_per_s`)."""

    name = "asr"
    version = "2"
    known = frozenset({"asr", "chars_per_s"})
    reads = frozenset({"audio_path", "language", "duration"})
    writes = frozenset({"text", "asr_model", "chars_per_s"})
    batch_size = 16

    def check(self, config: dict[str, Any]) -> str | None:
        from speechrole.agents.asr import ASRS
        from speechrole.agents.base import backend_problem

        return backend_problem(ASRS, self.options.get("asr", "whisper-tiny-en"))

    def setup(self, ctx: Context) -> None:
        from speechrole.agents import load_builtin
        from speechrole.agents.asr import ASRS, BATCHED
        from speechrole.agents.base import parse_backend

        load_builtin()
        name, options = parse_backend(self.options.get("asr", "whisper-tiny-en"))
        if name in BATCHED:  # a batch is spread over the worker's cores, one decoder per core
            options = {"workers": ctx.cpus, "threads": 1, **options}
        self.asr = ASRS.create(name, **options)
        self.model = self.asr.describe().get("model", name)

    def process_batch(self, rows: list[Row]) -> list[Row]:
        from speechrole.schema import Language

        verdict: dict[str, Row] = {}
        languages: dict[Language, list[Row]] = {}
        for row in rows:
            language = Language(row["language"])
            if getattr(self.asr, "english_only", False) and language is not Language.EN:
                why = f"no ASR for {language.value}: the model is English-only (asr=whisper:MODEL)"
                verdict[row["id"]] = drop(row, why)
            else:
                languages.setdefault(language, []).append(row)
        for language, group in languages.items():
            audios = [mono_at(Path(r["audio_path"]), ANALYSIS_RATE) for r in group]
            many = getattr(self.asr, "transcribe_many", None)
            texts = (
                many(audios, language) if many else [self.asr.transcribe_array(a, language) for a in audios]
            )
            for row, text in zip(group, texts, strict=True):
                verdict[row["id"]] = self._gate(row, text)
        return [verdict[r["id"]] for r in rows]

    def _gate(self, row: Row, text: str) -> Row:
        lo, hi = self.options.get("chars_per_s", (4.0, 30.0))
        text = text.strip()
        rate = len(text.replace(" ", "")) / max(row["duration"], 1e-6)
        if len(text) < 2:
            return drop(row, "no text: the ASR heard nothing")
        if not lo <= rate <= hi:
            return drop(row, f"speaking rate out of bounds: {rate:.1f} chars/s")
        return {**row, "text": text, "asr_model": self.model, "chars_per_s": round(rate, 2)}


@register
class Embed(Stage):
    """Speaker embedding of each segment (resemblyzer, bundled; 256 floats, L2-normalised)."""

    name = "embed"
    version = "2"  # segments embedded together (embed_many)
    uses = frozenset({SPEAKER_ENCODER})
    reads = frozenset({"audio_path"})
    writes = frozenset({"embedding", "embedder"})
    batch_size = 16

    def check(self, config: dict[str, Any]) -> str | None:
        return speaker_encoder_problem(config)

    def setup(self, ctx: Context) -> None:
        self.encode = _Encoder(ctx.config)

    def process_batch(self, rows: list[Row]) -> list[Row]:
        vectors = self.encode.many([mono_at(Path(r["audio_path"]), ANALYSIS_RATE) for r in rows])
        return [
            {**row, "embedding": [round(float(x), 5) for x in vector], "embedder": self.encode.name}
            for row, vector in zip(rows, vectors, strict=True)
        ]
