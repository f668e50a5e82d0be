"""A synthetic "episode" to try the data pipeline on, offline: three bank voices taking turns, with
silences, a noisy take, a corrupt media file and enrolment clips per voice — with the ground truth of
who speaks when (the tests check the pipeline against it), and a commented pipeline file for it.

    speechrole data example DIR && speechrole data run DIR/pipeline.yaml
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

RATE = 24000

#: voice id -> role id, persona
CAST = {
    "flite:awb": ("Angus", "a gruff Scottish lighthouse keeper who distrusts the sea and loves his lamp"),
    "festival:cmu_us_slt_arctic_hts": ("Beatrice", "a cheerful village schoolteacher who collects old maps"),
    "flite:rms": ("Rupert", "a nervous young clerk who keeps the harbour ledgers and fears the storms"),
}

LINES = [
    (
        "flite:awb",
        "The lamp must burn all night, whatever the weather does to this rock and to my old bones.",
    ),
    (
        "festival:cmu_us_slt_arctic_hts",
        "Good morning, I brought the children to see the lighthouse and the great brass lens.",
    ),
    (
        "flite:rms",
        "I counted every boat in the harbour twice this morning, and two of them are still missing.",
    ),
    (
        "flite:awb",
        "Missing boats come home when the wind turns. I have watched this sea for thirty long years.",
    ),
    (
        "festival:cmu_us_slt_arctic_hts",
        "My maps show an old channel behind the reef, where a small boat could shelter from the storm.",
    ),
    (
        "flite:rms",
        "If the ledger is wrong the harbour master will blame me, and I will lose my little desk by the window.",
    ),
    (
        "flite:awb",
        "Nobody blames a clerk for the sea. Light the second lamp and keep your eyes on the water, lad.",
    ),
    (
        "festival:cmu_us_slt_arctic_hts",
        "The children want to climb the stairs, but I told them the keeper decides who goes up.",
    ),
    ("flite:rms", "The storm bell rang at dawn, and I wrote it down in the book with the time and the wind."),
]
NOISY = (
    "festival:cmu_us_slt_arctic_hts",
    "This last take is recorded next to the engine room, and nobody can hear a single word of it.",
)

ENROL = {
    "flite:awb": "I keep the light, I trim the wick, and I polish the glass before the sun goes down.",
    "festival:cmu_us_slt_arctic_hts": "Every map in my classroom has a story, and the children love to hear them all.",
    "flite:rms": "The ledger has a column for every ship, and I fill it in with the greatest care.",
}


@dataclass(frozen=True)
class Span:
    voice: str
    start: float
    end: float
    noisy: bool = False


def _speak(voice: str, text: str) -> np.ndarray:
    from speechrole.agents.tts import DEFAULT_BANK, synthesize_with
    from speechrole.audio import resample

    bank = next(v for v in DEFAULT_BANK if v.id == voice)
    audio, rate = synthesize_with(bank, text)
    audio = resample(audio.reshape(-1, 1), rate, RATE)[:, 0]
    return (audio / (np.abs(audio).max() + 1e-9) * 0.5).astype(np.float32)


def render_episode(folder: Path, *, gap_s: float = 1.0) -> list[Span]:
    """Write `episode.wav` (stereo 44.1 kHz, so that extraction has work to do), enrolment clips,
    a corrupt media file, and return who speaks when."""
    from speechrole.audio import resample

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    parts, spans, t = [], [], 0.5
    parts.append(np.zeros(int(0.5 * RATE), np.float32))
    for voice, text in [*LINES, NOISY]:
        audio = _speak(voice, text)
        noisy = (voice, text) == NOISY
        if noisy:  # loud broadband noise over the whole take
            audio = np.clip(audio + rng.normal(0, 0.06, audio.size).astype(np.float32), -1, 1)
        parts += [audio, np.zeros(int(gap_s * RATE), np.float32)]
        spans.append(Span(voice, t, t + audio.size / RATE, noisy))
        t += audio.size / RATE + gap_s
    episode = np.concatenate(parts) + rng.normal(0, 0.001, sum(p.size for p in parts)).astype(np.float32)
    stereo = resample(np.stack([episode, episode], axis=1), RATE, 44100)
    sf.write(folder / "episode.wav", stereo, 44100)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    for voice, text in ENROL.items():
        sf.write(folder / f"enrol-{CAST[voice][0]}.wav", _speak(voice, text), RATE)
    return spans


def pipeline_yaml(
    folder: Path, *, llm: str = "smollm2", formats: str = "[speechrole, chat, lhotse, hf]"
) -> Path:
    roles = "\n".join(
        f'    - {{id: {name}, name: {name}, work: The-Lighthouse, persona: "You are {name}, {persona}.", '
        f"enrol: [enrol-{name}.wav]}}"
        for name, persona in CAST.values()
    )
    text = f"""# A SpeechRole-Data pipeline (speechrole data run pipeline.yaml). Paths are relative to this file.
name: synthetic-episode
work_dir: work                      # manifests, clips and the export go here
# speaker_encoder: models/campplus.onnx   # CAM++ / WeSpeaker ONNX instead of the bundled resemblyzer
sources:                            # media files or globs (any format ffmpeg reads), with their language
  - {{path: episode.wav, language: en}}
  - {{path: broken.mp4, language: en}}  # corrupt on purpose: reported and skipped
roles:
  mode: enrol                       # enrol (clips per role) | cluster | manual, with map: {{"episode.wav:S0": Angus}}
  threshold: 0.7                    # least cosine similarity of a speaker to a role's enrolment centroid
  list:
{roles}
stages:
  - extract                         # ffmpeg -> 24 kHz mono
  - vad                             # silero-vad: {{min_silence_ms: 300}}
  - diarize: {{threshold: 0.3}}       # or {{backend: pyannote, model: /path/to/config.yaml}}
  - segment: {{min_s: 3, max_s: 30}}  # merge_gap_s: 1.0
  - quality: {{min_ovrl: 2.3}}        # the paper keeps DNSMOS OVRL > 3; synthetic voices score lower
  - asr                             # {{asr: "whisper:/path/to/faster-whisper-model"}} for other languages; chars_per_s: [4, 30]
  - embed
  - assign_roles
  - select_reference: {{duration_s: [3, 12]}}  # top_k: 3, single_speaker_min: 0.7
  - generate_dialogues: {{llm: {llm}, single: 1, multi: 1, multi_turns: 2}}  # llm: "openai:MODEL@URL", style: json
  - dedup: {{threshold: 0.9}}         # sentence-embedding cosine, within each role
  - synthesize                      # {{tts: {{name: f5-tts, ckpt: ..., vocab: ...}}}} clones each role's reference
  - verify: {{min_ovrl: 2.0, max_wer: 0.6, min_similarity: 0.6, retries: 1}}
  - export: {{formats: {formats}}}  # speechrole (eval --bench), chat, lhotse, hf
"""
    path = folder / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def synthetic_roles(count: int) -> list[dict[str, Any]]:
    """Rows as `select_reference` hands them to `generate_dialogues`: `count` lighthouse keepers, for
    exercising dialogue writing without audio (tests and `benchmarks/generation_throughput.py`)."""
    return [
        {
            "id": f"role-{i}",
            "role": f"Keeper{i}",
            "profile": {
                "id": f"Keeper{i}",
                "name": f"Keeper{i}",
                "work": "The-Lighthouse",
                "persona": "gruff",
            },
            "excerpts": ["The lamp must burn all night.", "I have watched this sea for thirty years."],
            "language": "en",
            "ref_audio_path": "ref.wav",
            "ref_text": "I keep the light.",
        }
        for i in range(count)
    ]
