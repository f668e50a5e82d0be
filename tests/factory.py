"""Build small benchmarks, outputs and judge results in the official layout, for tests.

Everything here is generated: no file is copied from the official release.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from speechrole.bench.profile import SCRIPT_INTRO, render_profile
from speechrole.schema import METRICS

ROLES: dict[str, dict[str, Any]] = {
    "Ada": {
        "name": "Ada Lovelace",
        "work": "Notes-on-the-Engine",
        "lang": "en",
        "persona": "You are a mathematician who writes about the analytical engine.",
    },
    "Bram": {
        "name": "Bram Stoker",
        "work": "Lyceum-Letters",
        "lang": "en",
        "persona": "You manage a London theatre and write gothic stories at night.",
    },
    "libai": {
        "name": "李白",
        "work": "唐诗",
        "lang": "zh",
        "persona": "你是唐代诗人，喜欢饮酒赋诗，性格豪放不羁。",
    },
}

QUESTIONS = {
    "en": ["What drives your work?", "Why does that matter to you?", "What comes next?"],
    "zh": ["你为什么喜欢写诗？", "月亮对你意味着什么？", "你下一步想去哪里？"],
}
ANSWERS = {
    "en": ["Curiosity, mostly, and a stubborn streak.", "Because ideas outlive us.", "A longer journey."],
    "zh": ["诗是我心中的酒。", "明月是故乡的影子。", "我想去看长江。"],
}


def speak(path: Path, text: str, voice: str) -> None:
    """Real speech from a bank voice (needs the TTS engines), for tests of speech components."""
    from speechrole.agents.tts import DEFAULT_BANK, synthesize_with
    from speechrole.audio import write_wav

    chosen = next(v for v in DEFAULT_BANK if v.id == voice)
    audio, rate = synthesize_with(chosen, text)
    write_wav(path, audio, rate)


#: Voices of the speech variant of the test benchmark: one user voice, one voice per role.
SPEECH_VOICES = {
    "user": "espeak:en-us+m3",
    "Ada": "flite:slt",
    "Bram": "flite:awb",
    "libai": "espeak:cmn-latn-pinyin+f2",
}


def tone(path: Path, seconds: float = 0.5, sr: int = 16000, freq: float = 220.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


def make_benchmark(
    root: Path, *, audio: bool = True, hf_sets: bool = False, turns_multi=(2, 3), speech: bool = False
) -> Path:
    """A 3-role benchmark: 2 single-turn and 2 multi-turn samples per role, with profiles and voices.

    Audio is tones by default; `speech=True` renders real speech with the bundled voices instead."""
    (root / "role_profiles").mkdir(parents=True, exist_ok=True)
    voices = root / "role_voices"
    voices.mkdir(parents=True, exist_ok=True)
    transcripts = {}
    for role, info in ROLES.items():
        profile = render_profile(info["name"], info["work"], info["persona"])
        (root / "role_profiles" / f"{role}_profile.txt").write_text(profile, encoding="utf-8")
        transcripts[role] = ANSWERS[info["lang"]][0]
        if speech:
            speak(voices / f"{role}.wav", transcripts[role], SPEECH_VOICES[role])
        elif audio:
            tone(voices / f"{role}.wav", 1.0)
        for mode, counts in (("single", (1, 1)), ("multi", turns_multi)):
            samples = []
            for i, n in enumerate(counts):
                dialogue = []
                for j in range(n):
                    base = f"test_data/{mode}_turn_speech/{role}/{i + 1}_{role}_0_{j}"
                    turn = {
                        "user": QUESTIONS[info["lang"]][j],
                        "role": ANSWERS[info["lang"]][j],
                        "user_speech_path": f"{base}_user.wav",
                        "role_speech_path": f"{base}_role.wav",
                    }
                    if hf_sets:
                        for k in (1, 2, 3):
                            turn[f"role_speech_path{k}"] = f"{base}_role{k}.wav"
                    dialogue.append(turn)
                    if speech:
                        speak(root / turn["user_speech_path"], turn["user"], SPEECH_VOICES["user"])
                        for key, value in turn.items():
                            if key.startswith("role_speech_path"):
                                speak(root / value, turn["role"], SPEECH_VOICES[role])
                    elif audio:
                        for key, value in turn.items():
                            if key.endswith("_path") or key[-1].isdigit():
                                tone(root / value, 0.4, freq=200.0 + 5 * (i * 5 + j) + 2 * len(role))
                samples.append(
                    {
                        "dialogue": dialogue,
                        "context": f"{info['name']} speaks.",
                        "system_prompt": profile + SCRIPT_INTRO + f"{info['name']} speaks.",
                        "category": ["Opinion and Emotion Inquiry", "Reasoning and Motivation"][i],
                    }
                )
            path = root / "test_data" / f"{mode}_turn" / f"{role}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(samples, ensure_ascii=False, indent=2), encoding="utf-8")
    (voices / "audios_text.json").write_text(
        json.dumps(transcripts, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return root


def make_outputs(run_dir: Path, bench_root: Path, *, audio: bool = True) -> Path:
    """Outputs for every sample of a `make_benchmark` tree, in a run directory's layout."""
    for mode in ("single", "multi"):
        for file in sorted((bench_root / "test_data" / f"{mode}_turn").glob("*.json")):
            role = file.stem
            data = json.loads(file.read_text(encoding="utf-8"))
            payload: dict[str, Any] = {"role": role}
            for i, sample in enumerate(data):
                turns = []
                for j, turn in enumerate(sample["dialogue"]):
                    rel = f"model_output/{mode}_result/audio/{role}/{role}_{i}_{j}.wav"
                    if audio:  # a different clip per turn, so that judges and caches can tell them apart
                        tone(run_dir / rel, 0.6, sr=24000, freq=300.0 + 7 * (i * 5 + j) + 3 * len(role))
                    turns.append(
                        {
                            "turn": j,
                            "user_input": {"text": turn["user"]},
                            "model_output": {"text": f"answer {i}.{j}", "audio_path": rel},
                        }
                    )
                payload[f"dialogue_{i}"] = turns
            out = run_dir / "model_output" / f"{mode}_result" / "json" / f"{role}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")
    return run_dir


def result_entry(
    idx: int,
    scores: dict[str, tuple[Any, Any]] | tuple[Any, Any],
    *,
    free_text: bool = False,
    with_score: bool = True,
) -> dict[str, Any]:
    """One sample's judge result, JSON style (v2) or free-text style (v1)."""
    entry: dict[str, Any] = {"idx": idx}
    for metric in METRICS:
        pair = scores[metric] if isinstance(scores, dict) else scores
        if pair is None:
            continue
        reason = f"Model A and Model B on {metric}."
        if free_text:
            reason += f"\n\n[Scores]: ({pair[0]}, {pair[1]})"
        value: dict[str, Any] = {"reason": reason}
        if with_score:
            value["score"] = list(pair)
        entry[f"{metric}_results"] = value
    return entry


def write_results(base: Path, mode: str, role: str, entries: list[Any]) -> Path:
    path = base / mode / f"{role}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, ensure_ascii=False, indent=4), encoding="utf-8")
    return path
