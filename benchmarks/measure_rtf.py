"""Real-time factor of the objective metrics on bundled-voice clips (2-core CPU target: the measure stage
with its default metrics at most 0.15), against the same libraries called directly doing the same work.

Equal work means, on both sides: the same clips decoded the same way (once, to 16 kHz mono, by
`decode_clip`; decoding is timed separately), every model loaded and warmed up on a clip outside the
timed set, the same settings (DNSMOS windows, whisper beam and options, YIN parameters) and the same
caching (the role's voice embedded once per role; nothing else reused). Per metric, "speechrole" is the
metric's `measure` and "library" is speechmos `dnsmos.run`, faster-whisper `transcribe`, librosa `yin`,
resemblyzer `preprocess_wav` + `embed_utterance`. For all metrics together, the `speechrole measure`
stage (decoding, hashing and writing included) runs against a loop that decodes each clip once and
calls each library in turn, with the stage set to the loop's DNSMOS windowing (`dnsmos:stride=1`).
Threads are each library's own: whisper and torch use two, speechmos's ONNX sessions every core, and
speechrole's DNSMOS sessions one (the stage runs two metrics side by side instead).

What speechrole's default choices save is reported apart, as what it is: different work (fewer DNSMOS
windows, greedy decoding, YIN instead of pYIN, the voice embedded once, decoding shared). RTF =
processing seconds / audio seconds.

    python benchmarks/measure_rtf.py [--clips 24]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechrole.agents.tts import DEFAULT_BANK, synthesize_with  # noqa: E402
from speechrole.audio import write_wav  # noqa: E402
from speechrole.bench import load_benchmark  # noqa: E402
from speechrole.bench.profile import SCRIPT_INTRO, render_profile  # noqa: E402
from speechrole.measure import DEFAULT_METRICS, Measurement, _items, create_metrics  # noqa: E402
from speechrole.metrics.base import Clip, Metric, decode_clip  # noqa: E402
from speechrole.schema import Language  # noqa: E402

SENTENCES = (
    "Aye, the sea is a harsh mistress.",
    "I have been thinking about what you said yesterday, and I believe you were right about the ship.",
    "Elementary, my dear Watson. The mud on your boots tells me you walked from the station in the rain.",
    "We sail at dawn. Nobody will stop us, not the navy, not the storm, and certainly not the governor, "
    "whatever his letters may say about the matter of the missing gold.",
)
VOICES = (
    "flite:slt",
    "flite:awb",
    "festival:cmu_us_slt_arctic_hts",
    "espeak:en-us+m3",
    "flite:rms",
    "espeak:en-us+f2",
)


def build(root: Path, n: int) -> tuple[Path, Path, list[tuple[Path, Path, str]]]:
    """A benchmark and run whose reference and agent clips are bundled-voice renderings of `SENTENCES`."""
    bench, run = root / "bench", root / "run"
    clips: list[tuple[Path, Path, str]] = []  # (agent clip, role reference clip, text)
    (bench / "role_voices").mkdir(parents=True)
    (bench / "role_profiles").mkdir()
    per_role: dict[str, list] = {}
    for i in range(n):
        # The agent never speaks in its role's reference voice: an agent clip with the same voice and text
        # as its reference clip would be the same bytes, which the stage measures once and reuses.
        role, voice = f"role{i % 4}", VOICES[(i % 4 + 1 + i % 5) % len(VOICES)]
        text = f"Line {i + 1}. {SENTENCES[i % len(SENTENCES)]}"  # every clip distinct: nothing is reused
        bank = next(v for v in DEFAULT_BANK if v.id == voice)
        ref_voice = next(v for v in DEFAULT_BANK if v.id == VOICES[(i % 4) % len(VOICES)])
        ref_clip = bench / "role_voices" / f"{role}.wav"
        if not ref_clip.exists():
            write_wav(ref_clip, *synthesize_with(ref_voice, SENTENCES[1]))
            (bench / "role_profiles" / f"{role}_profile.txt").write_text(
                render_profile(role, "Bench", "x"), encoding="utf-8"
            )
        index = len(per_role.setdefault(role, []))
        ref_rel = f"test_data/single_turn_speech/{role}/{index}_ref.wav"
        out_rel = f"model_output/single_result/audio/{role}/{role}_{index}_0.wav"
        write_wav(bench / ref_rel, *synthesize_with(ref_voice, text))
        write_wav(run / out_rel, *synthesize_with(bank, text))
        per_role[role].append((text, ref_rel, out_rel))
        clips.append((run / out_rel, ref_clip, text))
    for role, samples in per_role.items():
        data = [
            {
                "dialogue": [{"user": "Speak.", "role": t, "role_speech_path": r}],
                "system_prompt": render_profile(role, "Bench", "x") + SCRIPT_INTRO,
            }
            for t, r, _ in samples
        ]
        out = {
            "role": role,
            **{
                f"dialogue_{k}": [
                    {
                        "turn": 0,
                        "user_input": {"text": "Speak."},
                        "model_output": {"text": t, "audio_path": o},
                    }
                ]
                for k, (t, _, o) in enumerate(samples)
            },
        }
        for base, rel, payload in (
            (bench, f"test_data/single_turn/{role}.json", data),
            (run, f"model_output/single_result/json/{role}.json", out),
        ):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_text(json.dumps(payload), encoding="utf-8")
    return bench, run, clips


SAME_WHISPER = {  # speechrole's ASR settings (agents/asr.py), given to faster-whisper directly
    "beam_size": 1,
    "without_timestamps": True,
    "condition_on_previous_text": False,
    "temperature": 0.0,
}
HOP = 320  # the prosody metric's 20 ms frames at 16 kHz


def decoded(clips: list[tuple[Path, Path, str]]) -> tuple[list[Clip], Clip]:
    """The agent clips decoded once, each with its role's voice clip (one object per role), and a
    warm-up clip that is not among them (so no cache entry of the warm-up is reused while timing)."""
    voices: dict[Path, Clip] = {}
    out = []
    for agent, voice, text in clips:
        if voice not in voices:
            voices[voice] = decode_clip(voice, f"voice:{voice}", Language.EN)
        clip = decode_clip(agent, f"agent:{agent}", Language.EN, text)
        clip.reference = voices[voice]
        out.append(clip)
    first = clips[0]
    warm = decode_clip(first[0], "warm-up", Language.EN, first[2])
    warm.reference = decode_clip(first[1], "warm-up voice", Language.EN)
    return out, warm


class Library:
    """Each library called directly, with speechrole's settings and caching (the equal-work side)."""

    def __init__(self) -> None:
        import librosa
        import speechmos.dnsmos as dnsmos
        from faster_whisper import WhisperModel
        from resemblyzer import VoiceEncoder, preprocess_wav

        from speechrole.models import WHISPER_TINY_EN

        self.librosa, self.dnsmos, self.preprocess_wav = librosa, dnsmos, preprocess_wav
        self.whisper = WhisperModel(
            str(WHISPER_TINY_EN.path().parent), device="cpu", compute_type="int8", cpu_threads=2
        )
        self.encoder = VoiceEncoder("cpu", verbose=False)
        self.voices: dict[int, Any] = {}  # the role voice's embedding, once per role (as speechrole does)

    def _embed(self, audio: Any) -> Any:
        return self.encoder.embed_utterance(self.preprocess_wav(audio))

    def speaker(self, clip: Clip, *, voice_once: bool = True) -> float:
        voice = clip.reference
        assert voice is not None
        if not voice_once:
            return float(self._embed(clip.audio) @ self._embed(voice.audio))
        if id(voice) not in self.voices:
            self.voices[id(voice)] = self._embed(voice.audio)
        return float(self._embed(clip.audio) @ self.voices[id(voice)])

    def dnsmos_mos(self, clip: Clip) -> dict[str, float]:
        return self.dnsmos.run(clip.audio.clip(-1.0, 1.0), 16000)  # 9.01 s windows every second

    def intelligibility(self, clip: Clip, *, defaults: bool = False) -> float:
        import jiwer

        options = {} if defaults else SAME_WHISPER
        heard = "".join(s.text for s in self.whisper.transcribe(clip.audio, language="en", **options)[0])
        return float(jiwer.wer(clip.text.lower(), heard.strip().lower() or "-"))

    def prosody(self, clip: Clip, *, pyin: bool = False) -> Any:
        lr, y = self.librosa, clip.audio
        lr.feature.rms(y=y, frame_length=2 * HOP, hop_length=HOP)
        lr.feature.zero_crossing_rate(y, frame_length=2 * HOP, hop_length=HOP)
        pitch = lr.pyin if pyin else lr.yin
        return pitch(y, fmin=60, fmax=500, sr=16000, frame_length=4 * HOP, hop_length=HOP)

    def all_four(self, clip: Clip) -> None:
        self.speaker(clip)
        self.dnsmos_mos(clip)
        self.intelligibility(clip)
        self.prosody(clip)

    def decode_per_metric(self, raw: list[tuple[Path, Path, str]]) -> None:
        """What the libraries do when each is handed the file: each decodes it itself."""
        from faster_whisper.audio import decode_audio

        lr = self.librosa
        for agent, voice, _ in raw:
            lr.load(str(agent), sr=16000)  # speechmos
            lr.load(str(agent), sr=16000)  # the pitch tracker's script
            for path in (agent, voice):  # resemblyzer's preprocess_wav(path)
                y, sr = lr.load(str(path), sr=None)
                lr.resample(y, orig_sr=sr, target_sr=16000)
            decode_audio(str(agent), sampling_rate=16000)  # faster-whisper


def ready(specs: tuple[str, ...], warm: Clip) -> list[Metric]:
    """Fresh metrics (empty caches), models loaded and warmed up on a clip outside the timed set."""
    metrics = create_metrics(specs)
    for metric in metrics:
        metric.load()
        metric.measure([warm])  # first-call initialisation is not throughput
    return metrics


def measure_with(spec: str, clips: list[Clip], warm: Clip) -> Callable[[], Any]:
    (metric,) = ready((spec,), warm)
    return lambda: metric.measure(clips)


def library_loop(lib: Library, bench: Any, run: Path) -> Callable[[], Any]:
    """The stage's work done by hand: every agent and reference clip of the run decoded once, then each
    library in turn, one clip at a time (the role's voice decoded and embedded once per role)."""
    items, _ = _items(bench, bench.samples, run)
    lib.voices.clear()

    def loop() -> None:
        voices: dict[str, Clip] = {}
        for item in items:
            role = bench.roles[item.role]
            if item.role not in voices:
                path = Path(role.reference_audio)
                voices[item.role] = decode_clip(path, f"voice:{path}", role.language)
            clip = decode_clip(item.path, str(item.path), role.language, item.text)
            clip.reference = voices[item.role]
            lib.all_four(clip)

    return loop


def stage(bench: Any, run: Path, specs: tuple[str, ...], warm: Clip) -> Callable[[], Any]:
    """The measure stage on a fresh log, with fresh, loaded and warmed-up metrics."""
    (run / "measures.jsonl").unlink(missing_ok=True)
    metrics = ready(specs, warm)
    return lambda: Measurement(bench, run, metrics).run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds over every case, each case's best round reported"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        # A private numba cache: librosa compiles its kernels into it, so another process compiling
        # them at the same time cannot hand this one a half-written cache entry.
        os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tmp) / "numba"))
        bench_root, run, raw = build(Path(tmp), args.clips)
        bench = load_benchmark(bench_root)[0]
        clips, warm = decoded(raw)
        audio_s = sum(c.duration_s for c in clips)
        lib = Library()
        lib.all_four(warm)
        lib.intelligibility(warm, defaults=True)
        lib.prosody(warm, pyin=True)
        same = tuple("dnsmos:stride=1" if m == "dnsmos" else m for m in DEFAULT_METRICS)

        def fresh(fn: Callable[[Clip], Any]) -> Callable[[], Any]:
            lib.voices.clear()
            return lambda: [fn(c) for c in clips]

        # Each case builds its state outside the timing (fresh caches, loaded models) and returns what
        # to time. Every round runs every case once, in this order; the best round of each is reported.
        cases: dict[str, Callable[[], Callable[[], Any]]] = {
            "ours speaker": lambda: measure_with("speaker", clips, warm),
            "library speaker": lambda: fresh(lib.speaker),
            "ours dnsmos stride 1": lambda: measure_with("dnsmos:stride=1", clips, warm),
            "library dnsmos": lambda: fresh(lib.dnsmos_mos),
            "ours intelligibility": lambda: measure_with("intelligibility", clips, warm),
            "library intelligibility": lambda: fresh(lib.intelligibility),
            "ours prosody": lambda: measure_with("prosody", clips, warm),
            "library prosody": lambda: fresh(lib.prosody),
            "ours dnsmos default": lambda: measure_with("dnsmos", clips, warm),
            "library asr defaults": lambda: fresh(lambda c: lib.intelligibility(c, defaults=True)),
            "library pyin": lambda: fresh(lambda c: lib.prosody(c, pyin=True)),
            "library speaker per clip": lambda: fresh(lambda c: lib.speaker(c, voice_once=False)),
            "decode shared": lambda: lambda: [decode_clip(a, a.name, Language.EN) for a, _, _ in raw],
            "decode per metric": lambda: lambda: lib.decode_per_metric(raw),
            "stage same": lambda: stage(bench, run, same, warm),
            "library loop": lambda: library_loop(lib, bench, run),
            "stage default": lambda: stage(bench, run, DEFAULT_METRICS, warm),
        }
        best: dict[str, float] = {}
        for _ in range(max(1, args.repeats)):
            for name, setup in cases.items():
                fn = setup()
                t = time.perf_counter()
                fn()
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
        (run / "measures.jsonl").unlink(missing_ok=True)
        run_audio_s = Measurement(bench, run, create_metrics(("duration",))).run().audio_seconds

    def rtf(name: str, seconds_of_audio: float = audio_s) -> float:
        return best[name] / seconds_of_audio

    print(
        f"{len(clips)} agent clips, {audio_s:.1f} s of audio, decoded once to 16 kHz for both sides; "
        f"best of {args.repeats} rounds; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n"
    )
    print("Equal work, one metric at a time (same clips, settings, warm-up and caching):")
    print(f"{'metric':26s} {'speechrole RTF':>14s} {'library RTF':>12s} {'speechrole/library':>19s}")
    for label, ours, theirs in (
        ("speaker", "ours speaker", "library speaker"),
        ("dnsmos (windows every 1 s)", "ours dnsmos stride 1", "library dnsmos"),
        ("intelligibility", "ours intelligibility", "library intelligibility"),
        ("prosody", "ours prosody", "library prosody"),
    ):
        print(f"{label:26s} {rtf(ours):14.4f} {rtf(theirs):12.4f} {best[ours] / best[theirs]:18.2f}x")
    print(
        f"\nEqual work, all four metrics on the run's {run_audio_s:.1f} s of agent and reference audio "
        "(decoding included; DNSMOS windows every 1 s on both sides):"
    )
    stage_rtf, loop_rtf = rtf("stage same", run_audio_s), rtf("library loop", run_audio_s)
    print(f"  speechrole measure stage (two metrics at a time)  RTF {stage_rtf:.4f}")
    print(f"  library loop (one clip, one metric at a time)     RTF {loop_rtf:.4f}")
    print(f"  speechrole/library                                {stage_rtf / loop_rtf:.2f}x")
    print("\nDifferent work: what speechrole's default choices save (default | alternative):")
    print(f"{'choice':72s} {'default RTF':>11s} {'alt. RTF':>9s} {'default/alt.':>13s}")
    for label, ours, theirs in (
        (
            "DNSMOS: non-overlapping 9.01 s windows | windows every 1 s (speechmos)",
            "ours dnsmos default",
            "ours dnsmos stride 1",
        ),
        (
            "ASR: beam 1, no timestamps | faster-whisper defaults (beam 5, fallback)",
            "library intelligibility",
            "library asr defaults",
        ),
        ("pitch: YIN | pYIN (same frames)", "library prosody", "library pyin"),
        (
            "speaker: role voice embedded once per role | once per clip",
            "library speaker",
            "library speaker per clip",
        ),
        ("decoding: once per clip, shared | per metric from the file", "decode shared", "decode per metric"),
    ):
        print(f"{label:72s} {rtf(ours):11.4f} {rtf(theirs):9.4f} {best[ours] / best[theirs]:12.2f}x")
    print(
        f"\nThe measure stage with its default metrics ({', '.join(DEFAULT_METRICS)}; DNSMOS windows "
        f"not overlapping), {run_audio_s:.1f} s of audio: RTF {rtf('stage default', run_audio_s):.4f} "
        "(target <= 0.15)"
    )


if __name__ == "__main__":
    main()
