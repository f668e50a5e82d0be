"""Read a benchmark in the official SpeechRole-Eval layout (GitHub release or Hugging Face variant).

Layout (see DESIGN.md section 4): `test_data/{single,multi}_turn/{role}.json`, profiles
`**/role_profiles/{role}_profile.txt`, reference voices `**/role_voices/{role}.wav` with transcripts in
`**/role_voices/audios_text.json`. The released trees put these in different sub-folders from one
commit to the next, so the loader searches for them under the given directory.

Audio paths in test data are opaque strings, resolved against the directory that holds `test_data/`
(the benchmark root); they are never rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from speechrole.bench.language import detect_language
from speechrole.bench.profile import parse_profile, profile_from_system_prompt
from speechrole.fileio import read_json
from speechrole.problems import DataError, Problem
from speechrole.schema import Benchmark, Language, Mode, Role, Sample, Turn

MAX_SEARCH_DEPTH = 4
_SKIP_DIRS = {"model_output", "test_results", "node_modules", "__pycache__"}
REFERENCE_FIELD = "role_speech_path"
_SAMPLE_INDEX = re.compile(r"^(\d+)_")


@cache
def known_defects() -> dict[str, str]:
    text = resources.files("speechrole.data").joinpath("known_defects.yaml").read_text(encoding="utf-8")
    return {role: " ".join(reason.split()) for role, reason in (yaml.safe_load(text) or {}).items()}


def _walk(top: Path, depth: int = MAX_SEARCH_DEPTH) -> Iterator[Path]:
    """Directories under `top` (inclusive), breadth-first, skipping hidden and output folders."""
    level = [top]
    for _ in range(depth + 1):
        nxt: list[Path] = []
        for folder in level:
            yield folder
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            nxt.extend(c for c in children if not c.name.startswith(".") and c.name not in _SKIP_DIRS)
        level = nxt


def find_benchmark_root(path: Path) -> Path:
    """The directory holding `test_data/{single,multi}_turn` at or below `path`; one clear error if none or many."""
    if not path.is_dir():
        raise DataError(path, "", "benchmark directory not found")
    if path.name == "test_data":
        path = path.parent
    roots = [
        d.parent
        for d in _walk(path)
        if d.name == "test_data" and any((d / f"{m.value}_turn").is_dir() for m in Mode)
    ]
    if not roots:
        raise DataError(path, "", "no test_data/single_turn or test_data/multi_turn folder found below it")
    if len(roots) > 1:
        listed = ", ".join(str(r) for r in roots)
        raise DataError(path, "", f"several benchmark roots found ({listed}); pass one of them")
    return roots[0]


def _read_profiles(search_root: Path, hasher: Any) -> tuple[dict[str, str], list[Problem]]:
    profiles: dict[str, str] = {}
    problems: list[Problem] = []
    for folder in (d for d in _walk(search_root) if d.name == "role_profiles"):
        for file in sorted(folder.glob("*_profile.txt")):
            role = file.name[: -len("_profile.txt")]
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(str(file), "", f"cannot read profile: {exc}"))
                continue
            if role in profiles:
                if profiles[role] != text:
                    problems.append(
                        Problem(
                            str(file),
                            "",
                            f"differs from another profile of {role!r}; the first one found is used",
                            "warning",
                        )
                    )
                continue
            profiles[role] = text
            hasher.update(f"profile:{role}\n".encode() + text.encode())
    return profiles, problems


def _read_voices(search_root: Path) -> tuple[dict[str, str], dict[str, Path], list[Problem]]:
    transcripts: dict[str, str] = {}
    clips: dict[str, Path] = {}
    problems: list[Problem] = []
    for folder in (d for d in _walk(search_root) if d.name == "role_voices"):
        for clip in sorted(folder.glob("*.wav")):
            clips.setdefault(clip.stem, clip)
        text_file = folder / "audios_text.json"
        if text_file.is_file() and not transcripts:
            try:
                data = read_json(text_file)
            except DataError as exc:
                problems.append(exc.problem)
                continue
            if not isinstance(data, dict):
                problems.append(Problem(str(text_file), "", "expected an object {role: transcript}"))
                continue
            transcripts = {str(k): v for k, v in data.items() if isinstance(v, str)}
    return transcripts, clips, problems


def _str_field(obj: dict[str, Any], key: str, file: Path, where: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise DataError(file, f"{where}.{key}", f"expected a string, got {got}")
    return value


def _parse_turn(raw: Any, file: Path, where: str, reference_set: str) -> Turn:
    if not isinstance(raw, dict):
        raise DataError(file, where, "expected an object with user, role and speech paths")
    refs = {k: v for k, v in raw.items() if k.startswith(REFERENCE_FIELD) and isinstance(v, str) and v}
    user_audio = raw.get("user_speech_path")
    if user_audio is not None and not isinstance(user_audio, str):
        raise DataError(file, f"{where}.user_speech_path", "expected a string")
    return Turn(
        user_text=_str_field(raw, "user", file, where),
        reference_text=_str_field(raw, "role", file, where),
        user_audio=user_audio or None,
        # The official judge falls back to `role_speech_path` when the chosen set is absent.
        reference_audio=refs.get(reference_set) or refs.get(REFERENCE_FIELD),
        reference_audios=refs,
    )


def _parse_sample(raw: Any, role: str, mode: Mode, index: int, file: Path, reference_set: str) -> Sample:
    where = f"[{index}]"
    if not isinstance(raw, dict):
        raise DataError(file, where, "expected a sample object")
    dialogue = raw.get("dialogue")
    if not isinstance(dialogue, list) or not dialogue:
        raise DataError(file, f"{where}.dialogue", "expected a non-empty list of turns")
    turns = tuple(
        _parse_turn(t, file, f"{where}.dialogue[{j}]", reference_set) for j, t in enumerate(dialogue)
    )
    return Sample(
        role=role,
        mode=mode,
        index=index,
        turns=turns,
        system_prompt=_str_field(raw, "system_prompt", file, where, required=False),
        context=_str_field(raw, "context", file, where, required=False),
        category=_str_field(raw, "category", file, where, required=False),
        source=str(file),
    )


def _read_test_files(
    root: Path, reference_set: str, hasher: Any
) -> tuple[dict[str, list[Sample]], list[Problem]]:
    by_role: dict[str, list[Sample]] = {}
    problems: list[Problem] = []
    for mode in Mode:
        folder = root / "test_data" / f"{mode.value}_turn"
        for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            role = file.stem
            by_role.setdefault(role, [])
            try:
                data = read_json(file)
                hasher.update(f"test:{mode.value}/{role}\n".encode() + file.read_bytes())
                if not isinstance(data, list):
                    raise DataError(file, "", "expected a list of samples")
            except DataError as exc:
                problems.append(exc.problem)
                continue
            for index, raw in enumerate(data):
                try:
                    by_role[role].append(_parse_sample(raw, role, mode, index, file, reference_set))
                except DataError as exc:
                    problems.append(exc.problem)
    return by_role, problems


def _path_quirks(samples: list[Sample]) -> list[str]:
    """Audio paths that name another dialogue or repeat another turn's clip (a known official quirk)."""
    notes: list[str] = []
    seen: dict[str, str] = {}
    for s in samples:
        indices = {}
        for j, t in enumerate(s.turns):
            for path in (t.user_audio, t.reference_audio):
                if not path:
                    continue
                where = f"{s.key} turn {j}"
                if path in seen and seen[path] != where:
                    notes.append(f"{where} reuses the audio path of {seen[path]}: {path}")
                seen.setdefault(path, where)
                m = _SAMPLE_INDEX.match(Path(path).name)
                if m:
                    indices[j] = m.group(1)
        if len(set(indices.values())) > 1:
            common = max(set(indices.values()), key=list(indices.values()).count)
            for j, idx in indices.items():
                if idx != common:
                    notes.append(
                        f"{s.key} turn {j}: audio files numbered '{idx}_' among '{common}_' turns "
                        "(may be another dialogue's clip)"
                    )
    return notes


def _name_mismatch(role_id: str, name: str) -> bool:
    words = {w.lower() for w in re.split(r"[^A-Za-z]+", role_id) if len(w) >= 3}
    found = {w.lower() for w in re.split(r"[^A-Za-z]+", name)}
    return bool(words) and not words & found


def load_official(
    path: Path,
    *,
    reference_set: str | None = None,
    languages: dict[str, Language] | None = None,
    name: str | None = None,
) -> tuple[Benchmark, list[Problem]]:
    """Load an official SpeechRole-Eval tree. Bad files or samples become problems; the rest loads.

    `reference_set` picks the reference rendering: a field name (`role_speech_path`,
    `role_speech_path1`, ...) or just its suffix (`1`, `2`, `3`). By default the HF variant's
    `role_speech_path1` is used when the data has it, else `role_speech_path`.
    """
    path = Path(path)
    root = find_benchmark_root(path)
    search_root = path if path.name != "test_data" else root
    hasher = hashlib.sha256()
    if reference_set and reference_set.isdigit():
        reference_set = f"{REFERENCE_FIELD}{reference_set}"
    by_role, problems = _read_test_files(root, reference_set or f"{REFERENCE_FIELD}1", hasher)
    if reference_set is None:
        has_sets = any(
            f"{REFERENCE_FIELD}1" in t.reference_audios
            for ss in by_role.values()
            for s in ss
            for t in s.turns
        )
        reference_set = f"{REFERENCE_FIELD}1" if has_sets else REFERENCE_FIELD
    profiles, more = _read_profiles(search_root, hasher)
    problems += more
    transcripts, clips, more = _read_voices(search_root)
    problems += more
    defects_known = known_defects()
    overrides = languages or {}

    roles: dict[str, Role] = {}
    for role_id in sorted(by_role):
        samples = by_role[role_id]
        profile_text = profiles.get(role_id)
        if profile_text is None:
            profile_text = next(
                (p for s in samples if (p := profile_from_system_prompt(s.system_prompt))), ""
            )
            expected = f"role_profiles/{role_id}_profile.txt"
            how = "recovered it from the system prompt" if profile_text else "and none in the system prompts"
            problems.append(Problem(expected, "", f"profile not found; {how}", "warning"))
        parsed = parse_profile(profile_text) if profile_text else None
        texts = [parsed.persona if parsed else profile_text]
        texts += [t for s in samples for turn in s.turns for t in (turn.user_text, turn.reference_text)]
        language = overrides.get(role_id) or detect_language(texts)
        defects = [defects_known[role_id]] if role_id in defects_known else []
        if parsed and language is Language.EN and not defects and _name_mismatch(role_id, parsed.name):
            defects.append(f"possible persona mismatch: the profile is for {parsed.judge_name!r}")
        defects += _path_quirks(samples)
        clip = clips.get(role_id)
        roles[role_id] = Role(
            id=role_id,
            name=parsed.name if parsed else role_id,
            work=parsed.work if parsed else "",
            language=language,
            profile=profile_text,
            reference_audio=str(clip) if clip else None,
            reference_transcript=transcripts.get(role_id),
            defects=tuple(defects),
        )
    samples_all = tuple(s for role_id in sorted(by_role) for s in by_role[role_id])
    for s in samples_all:
        for j, t in enumerate(s.turns):
            if t.reference_audio is None:
                problems.append(
                    Problem(s.source, f"[{s.index}].dialogue[{j}].{reference_set}", "no reference audio path")
                )
    bench = Benchmark(
        name=name or root.name,
        root=Path(os.path.normpath(root.absolute())),
        roles=roles,
        samples=samples_all,
        reference_set=reference_set,
        content_hash=hasher.hexdigest(),
    )
    return bench, problems
