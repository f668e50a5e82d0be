"""Real-time factor of the objective metrics on a fixed set of bundled-voice clips (2-cores CPU target:
all metrics together at most 0.15), against running each metric's library naively, clip by clip.

"Ours" is `speechrole measure` (each clip decoded once, models loaded once, two metrics at a time,
DNSMOS with non-overlapping windows). "Naive" is what a script would do with each library on each
clip: speechmos `dnsmos.run(path)`, resemblyzer `preprocess_wav(path)` for the clip and the reference,
faster-whisper `transcribe(path)` with its defaults, librosa `pyin` for the pitch. RTF = processing
seconds / audio seconds.

    python benchmarks/measure_rtf.py [--clips 24]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechrole.agents.tts import DEFAULT_BANK, synthesize_with  # noqa: E402
from speechrole.audio import write_wav  # noqa: E402
from speechrole.bench import load_benchmark  # noqa: E402
from speechrole.bench.profile import SCRIPT_INTRO, render_profile  # noqa: E402
from speechrole.measure import DEFAULT_METRICS, Measurement, create_metrics  # noqa: E402
from speechrole.metrics.base import decode_clip  # noqa: E402
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
        role, voice = f"role{i % 4}", VOICES[i % len(VOICES)]
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


def naive(clips: list[tuple[Path, Path, str]]) -> dict[str, float]:
    """Each library the plain way, one clip at a time (models loaded once, as any script would)."""
    import librosa
    import speechmos.dnsmos as dnsmos
    from faster_whisper import WhisperModel
    from resemblyzer import VoiceEncoder, preprocess_wav

    from speechrole.models import WHISPER_TINY_EN

    whisper = WhisperModel(str(WHISPER_TINY_EN.path().parent), device="cpu", compute_type="int8")
    encoder = VoiceEncoder("cpu", verbose=False)
    first = clips[0][0]  # warm every library up before timing, as for ours
    dnsmos.run(librosa.load(str(first), sr=16000)[0], 16000)
    encoder.embed_utterance(preprocess_wav(first))
    list(whisper.transcribe(str(first), language="en")[0])
    librosa.pyin(librosa.load(str(first), sr=16000)[0], fmin=60, fmax=500, sr=16000)
    times = {"speaker": 0.0, "dnsmos": 0.0, "intelligibility": 0.0, "prosody": 0.0}
    for agent, reference, _ in clips:
        t = time.perf_counter()
        encoder.embed_utterance(preprocess_wav(agent)) @ encoder.embed_utterance(preprocess_wav(reference))
        times["speaker"] += time.perf_counter() - t
        t = time.perf_counter()
        dnsmos.run(str(agent), 16000)
        times["dnsmos"] += time.perf_counter() - t
        t = time.perf_counter()
        "".join(s.text for s in whisper.transcribe(str(agent), language="en")[0])
        times["intelligibility"] += time.perf_counter() - t
        t = time.perf_counter()
        y, sr = librosa.load(str(agent), sr=16000)
        librosa.pyin(y, fmin=60, fmax=500, sr=sr)
        times["prosody"] += time.perf_counter() - t
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_root, run, clips = build(Path(tmp), args.clips)
        bench = load_benchmark(bench_root)[0]
        audio_s = sum(decode_clip(a, a.name, Language.EN).duration_s for a, _, _ in clips)
        metrics = create_metrics(DEFAULT_METRICS)
        for metric in metrics:
            metric.load()
        alone: dict[str, float] = {}
        for metric in metrics:  # each metric alone, over the decoded clips (decoding not counted)
            decoded = []
            for agent, reference, text in clips:
                clip = decode_clip(agent, agent.name, Language.EN, text)
                clip.reference = decode_clip(reference, reference.name, Language.EN)
                decoded.append(clip)
            metric.measure(decoded[:1])  # warm-up (first-call initialisation is not throughput)
            t = time.perf_counter()
            metric.measure(decoded)
            alone[metric.name] = time.perf_counter() - t
        # All together: the measure stage over the run's agent clips (decoding and writing included).
        t = time.perf_counter()
        outcome = Measurement(bench, run, create_metrics(DEFAULT_METRICS)).run()
        together = time.perf_counter() - t
        stage_audio = outcome.audio_seconds
        plain = naive(clips)
    print(
        f"{len(clips)} agent clips, {audio_s:.1f} s of audio (the stage also measures the {len(clips)} reference clips)\n"
    )
    print(f"{'metric':16s} {'ours RTF':>9s} {'naive RTF':>10s} {'speed-up':>9s}")
    for name, seconds in alone.items():
        base = plain.get(name)
        naive_rtf = f"{base / audio_s:10.3f}" if base is not None else f"{'–':>10s}"
        speedup = f"{base / seconds:8.1f}x" if base is not None and seconds else f"{'–':>9s}"
        print(f"{name:16s} {seconds / audio_s:9.3f} {naive_rtf} {speedup}")
    naive_total = sum(plain.values())
    print(
        f"\nall together (the measure stage, {stage_audio:.1f} s of agent + reference audio): RTF {together / stage_audio:.3f} (target <= 0.15)"
    )
    print(
        f"naive, clip by clip, the four library metrics on the agent clips: RTF {naive_total / audio_s:.3f}"
    )
    print(
        f"speed-up of the stage over the naive loop (per audio second): {(naive_total / audio_s) / (together / stage_audio):.1f}x"
    )


if __name__ == "__main__":
    main()
