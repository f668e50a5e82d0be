"""The bundled `mini` benchmark: text shipped in `mini.yaml`, rendered at first use into the official
SpeechRole-Eval layout (profiles, reference voices and transcripts, test data, audio) in the cache.

The audio comes from the bundled voices (espeak-ng, flite, festival), which are deterministic; every
rendered clip is checked against `audio.sha256.json`. A mismatch (another version of a speech engine)
is reported, and the benchmark's content hash then differs, so runs never silently mix renderings.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from speechrole.bench.profile import SCRIPT_INTRO, render_profile
from speechrole.fileio import cache_dir
from speechrole.problems import Problem
from speechrole.schema import Benchmark, Language

PACKAGE = "speechrole.bench.mini"


def _text() -> str:
    return resources.files(PACKAGE).joinpath("mini.yaml").read_text(encoding="utf-8")


def expected_hashes() -> dict[str, str]:
    try:
        return json.loads(resources.files(PACKAGE).joinpath("audio.sha256.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _language(role: dict[str, Any]) -> Language:
    return Language.ZH if str(role["voice"]).startswith("espeak:cmn") else Language.EN


def _speak(path: Path, text: str, voice: str) -> None:
    from speechrole.agents.tts import DEFAULT_BANK, synthesize_with
    from speechrole.audio import write_wav

    bank = next(v for v in DEFAULT_BANK if v.id == voice)
    write_wav(path, *synthesize_with(bank, text))


def render(root: Path, data: dict[str, Any]) -> dict[str, str]:
    """Write the official layout under `root`; returns {relative audio path: sha256}."""
    profiles, voices = root / "role_profiles", root / "role_voices"
    profiles.mkdir(parents=True)
    voices.mkdir()
    transcripts: dict[str, str] = {}
    audio: list[tuple[str, str, str]] = []  # (relative path, text, voice)
    for role in data["roles"]:
        rid, lang = role["id"], _language(role).value
        profile = render_profile(role["name"], role["work"], role["persona"])
        (profiles / f"{rid}_profile.txt").write_text(profile, encoding="utf-8")
        transcripts[rid] = role["transcript"]
        audio.append((f"role_voices/{rid}.wav", role["transcript"], role["voice"]))
        for mode in ("single", "multi"):
            samples = []
            for i, sample in enumerate(role[mode]):
                dialogue = []
                for j, turn in enumerate(sample["dialogue"]):
                    base = f"test_data/{mode}_turn_speech/{rid}/{i + 1}_{rid}_0_{j}"
                    user, reference = f"{base}_user.wav", f"{base}_role.wav"
                    audio += [
                        (user, turn["user"], data["user_voice"][lang]),
                        (reference, turn["role"], role["voice"]),
                    ]
                    dialogue.append({"user": turn["user"], "role": turn["role"], "user_speech_path": user, "role_speech_path": reference})  # fmt: skip
                samples.append({"dialogue": dialogue, "context": sample["context"],
                                "system_prompt": profile + SCRIPT_INTRO + sample["context"], "category": sample["category"]})  # fmt: skip
            path = root / "test_data" / f"{mode}_turn" / f"{rid}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(samples, ensure_ascii=False, indent=2), encoding="utf-8")
    (voices / "audios_text.json").write_text(
        json.dumps(transcripts, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    hashes = {}
    for rel, text, voice in audio:
        _speak(root / rel, text, voice)
        hashes[rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    return hashes


def materialise() -> tuple[Path, dict[str, str], list[Problem]]:
    """The rendered benchmark folder (rendered on first use, atomically), its audio hashes, problems."""
    text = _text()
    data = yaml.safe_load(text)
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    folder = cache_dir("benchmarks") / f"mini-{data['version']}-{key}"
    manifest = folder / "audio.sha256.json"
    if not manifest.is_file():
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".render-"))
        try:
            hashes = render(tmp, data)
            (tmp / "audio.sha256.json").write_text(
                json.dumps(hashes, indent=1, sort_keys=True), encoding="utf-8"
            )
            try:
                tmp.replace(folder)
            except OSError:  # rendered meanwhile by another process
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    hashes = json.loads(manifest.read_text(encoding="utf-8"))
    problems = []
    expected = expected_hashes()
    for rel, sha in sorted(hashes.items()):
        if not (folder / rel).is_file():
            problems.append(
                Problem(str(folder / rel), "", "rendered clip is missing; delete the folder to render again")
            )
        elif expected and expected.get(rel) != sha:
            problems.append(Problem(str(folder / rel), "", "differs from the reference rendering (another espeak-ng, flite or festival version?)", "warning"))  # fmt: skip
    return folder, hashes, problems


def load_mini(**options: Any) -> tuple[Benchmark, list[Problem]]:
    from speechrole.bench.official import load_official

    folder, hashes, problems = materialise()
    bench, more = load_official(folder, name="mini", **options)
    audio = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
    content = hashlib.sha256(f"{bench.content_hash}\n{audio}".encode()).hexdigest()
    return bench.model_copy(update={"content_hash": content}), problems + more
