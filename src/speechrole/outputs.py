"""Model outputs in the official layout: find, read, write, and convert per-turn predictions into it.

Layout: `{base}/{single,multi}_result/json/{role}.json`, each file
`{"role": R, "dialogue_0": [{"turn", "user_input": {"text"}, "model_output": {"text", "audio_path"}}], ...}`.
`base` is `model_output/{model}` in an official tree and `model_output` in a run directory; audio paths
resolve against the folder that holds `model_output/` (the official judge's working directory).
A legacy file with a single `"dialogue"` key holds dialogue 0.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechrole.fileio import read_json, write_json_atomic
from speechrole.problems import DataError, Problem
from speechrole.schema import Benchmark, Mode

_DIALOGUE_KEY = re.compile(r"^dialogue_(\d+)$")


@dataclass(frozen=True)
class OutputTurn:
    user_text: str
    text: str | None  # None: the `text` key is missing (the official validator requires it)
    audio_path: str | None


@dataclass
class RoleOutput:
    role: str
    dialogues: dict[int, list[OutputTurn]] = field(default_factory=dict)
    legacy: bool = False  # read from a single `"dialogue"` key


@dataclass(frozen=True)
class OutputTree:
    """Where a system's outputs live: `base` holds `{mode}_result/`; audio paths resolve in `root`."""

    base: Path
    root: Path

    def json_file(self, mode: Mode, role: str) -> Path:
        return self.base / f"{mode.value}_result" / "json" / f"{role}.json"

    def audio_file(self, mode: Mode, role: str, dialogue: int, turn: int) -> Path:
        return self.base / f"{mode.value}_result" / "audio" / role / f"{role}_{dialogue}_{turn}.wav"

    def roles(self, mode: Mode) -> list[str]:
        folder = self.base / f"{mode.value}_result" / "json"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _has_results(folder: Path) -> bool:
    return any((folder / f"{m.value}_result").is_dir() for m in Mode)


def find_output_tree(path: Path, model: str | None = None) -> OutputTree:
    """Accept a run directory, a `model_output` folder, `model_output/{model}`, or a tree holding `model_output/`."""
    path = Path(path).absolute()
    if _has_results(path):
        if path.name == "model_output":
            return OutputTree(path, path.parent)
        if path.parent.name == "model_output":
            return OutputTree(path, path.parent.parent)
        return OutputTree(path, path)
    outputs = path / "model_output"
    if _has_results(outputs):
        return OutputTree(outputs, path)
    models = (
        sorted(p.name for p in outputs.iterdir() if p.is_dir() and _has_results(p))
        if outputs.is_dir()
        else []
    )
    if model is not None:
        if model not in models:
            raise DataError(
                path, "model_output", f"no outputs for model {model!r} (found: {models or 'none'})"
            )
        return OutputTree(outputs / model, path)
    if len(models) == 1:
        return OutputTree(outputs / models[0], path)
    if models:
        raise DataError(
            path, "model_output", f"several models found ({', '.join(models)}); pick one with --model"
        )
    raise DataError(path, "", "no model outputs found ({single,multi}_result/json/ or model_output/...)")


def _opt_str(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def read_role_output(file: Path) -> tuple[RoleOutput, list[Problem]]:
    """Read one role's output file; malformed turns become problems, well-formed ones are kept."""
    data = read_json(file)
    if not isinstance(data, dict):
        raise DataError(file, "", "expected an object with dialogue_N lists")
    out = RoleOutput(role=str(data.get("role") or file.stem))
    problems: list[Problem] = []
    keys: list[tuple[int, str]] = []
    for key in data:
        m = _DIALOGUE_KEY.match(key)
        if m:
            keys.append((int(m.group(1)), key))
    if "dialogue" in data and not keys:
        keys, out.legacy = [(0, "dialogue")], True
    for index, key in sorted(keys):
        turns = data[key]
        if not isinstance(turns, list):
            problems.append(Problem(str(file), key, "expected a list of turns"))
            continue
        parsed: list[OutputTurn] = []
        for j, raw in enumerate(turns):
            if not isinstance(raw, dict):
                problems.append(Problem(str(file), f"{key}[{j}]", "expected a turn object"))
                raw = {}
            model_output = raw.get("model_output") if isinstance(raw.get("model_output"), dict) else {}
            parsed.append(
                OutputTurn(
                    user_text=_opt_str(raw.get("user_input"), "text") or "",
                    text=_opt_str(model_output, "text"),
                    audio_path=_opt_str(model_output, "audio_path"),
                )
            )
        out.dialogues[index] = parsed
    return out, problems


def role_output_json(role: str, dialogues: dict[int, list[OutputTurn]]) -> dict[str, Any]:
    """The official JSON object for one role's outputs."""
    payload: dict[str, Any] = {"role": role}
    for index in sorted(dialogues):
        payload[f"dialogue_{index}"] = [
            {
                "turn": j,
                "user_input": {"text": t.user_text},
                "model_output": {"text": t.text or "", "audio_path": t.audio_path or ""},
            }
            for j, t in enumerate(dialogues[index])
        ]
    return payload


def write_role_output(file: Path, role: str, dialogues: dict[int, list[OutputTurn]]) -> None:
    write_json_atomic(file, role_output_json(role, dialogues), indent=2)


# --- predictions -> official layout -------------------------------------------------------------------

#: Field aliases, in order of preference, accepted by the official HF converter and by us.
ALIASES: dict[str, tuple[str, ...]] = {
    "dialogue_id": ("dialogue_id", "idx", "dialogue_index"),
    "turn": ("turn", "turn_id"),
    "text": ("text", "model_output_text", "model_output.text", "response"),
    "audio_path": ("audio_path", "model_output_audio_path", "model_output.audio_path"),
    "user": ("user", "user_text", "user_input.text"),
}


def _get(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _first(record: dict[str, Any], name: str) -> Any:
    for alias in ALIASES[name]:
        value = _get(record, alias)
        if value not in (None, ""):
            return value
    return None


def _records(data: Any, origin: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, record) from a list, {"predictions": [...]}, one role's output object, or {role: output}."""
    if isinstance(data, list):
        for i, rec in enumerate(data):
            yield f"{origin}[{i}]", rec
    elif isinstance(data, dict) and "predictions" in data:
        yield from _records(data["predictions"], f"{origin}.predictions")
    elif isinstance(data, dict) and "role" in data and any(_DIALOGUE_KEY.match(k) for k in data):
        for key, turns in data.items():
            m = _DIALOGUE_KEY.match(key)
            for j, turn in enumerate(turns if m and isinstance(turns, list) else []):
                rec = {
                    "role": data["role"],
                    "dialogue_id": int(m.group(1)),
                    "turn": j,
                    **(turn if isinstance(turn, dict) else {}),
                }
                yield f"{origin}.{key}[{j}]", rec
    elif isinstance(data, dict):
        for role, payload in data.items():
            if isinstance(payload, dict):
                yield from _records({"role": role, **payload}, f"{origin}.{role}")
    else:
        raise DataError(
            origin, "", "expected JSON lines, a list, {'predictions': [...]} or role-keyed outputs"
        )


def read_predictions(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Records of a predictions file (JSONL or JSON), each with where it came from for error messages."""
    if file.suffix == ".jsonl":
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(file, "", "file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(file, "", f"cannot read: {exc}") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield f"line {lineno}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(file, f"line {lineno}", f"malformed JSON: {exc.msg}") from None
    else:
        yield from _records(read_json(file), "")


@dataclass
class Conversion:
    written: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def convert_predictions(
    files: Iterable[Path], bench: Benchmark, out_base: Path, mode: Mode | None = None
) -> Conversion:
    """Build official output files under `out_base/{mode}_result/json/` from per-turn prediction records.

    Turn structure comes from the benchmark: every expected turn must be predicted (a missing one is an
    error naming role, dialogue and turn); user text falls back to the benchmark's question. Roles with
    problems are still written, so nothing is lost; `speechrole validate` then shows what is missing.
    """
    files = list(files)
    origin = ", ".join(str(f) for f in files)
    result = Conversion()
    grouped: dict[tuple[Mode, str], dict[tuple[int, int], OutputTurn]] = defaultdict(dict)
    for file in files:
        try:
            records = list(read_predictions(file))
        except DataError as exc:
            result.problems.append(exc.problem)
            continue
        for where, rec in records:
            try:
                if not isinstance(rec, dict):
                    raise ValueError("expected an object")
                raw_mode = rec.get("mode") or (mode.value if mode else None)
                if raw_mode not in {m.value for m in Mode}:
                    raise ValueError(f"mode {raw_mode!r}: add a mode field (single|multi) or pass --mode")
                rec_mode = Mode(raw_mode)
                role, dialogue, turn = rec.get("role"), _first(rec, "dialogue_id"), _first(rec, "turn")
                if role is None or dialogue is None or turn is None:
                    raise ValueError("needs role, dialogue_id (or idx) and turn")
                audio = _first(rec, "audio_path")
                if not audio:
                    raise ValueError("needs audio_path")
                text = _first(rec, "text")
                grouped[(rec_mode, str(role))][(int(dialogue), int(turn))] = OutputTurn(
                    user_text=str(_first(rec, "user") or ""), text=str(text or ""), audio_path=str(audio)
                )
            except (TypeError, ValueError) as exc:
                result.problems.append(Problem(str(file), where, str(exc)))
    for (rec_mode, role), turns in sorted(grouped.items()):
        samples = bench.samples_of(role, rec_mode)
        if not samples:
            result.problems.append(
                Problem(origin, role, f"role not in the benchmark's {rec_mode.value} data")
            )
            continue
        dialogues: dict[int, list[OutputTurn]] = {}
        for s in samples:
            built = []
            for j, gold in enumerate(s.turns):
                got = turns.get((s.index, j))
                if got is None:
                    where = f"{rec_mode.value}/{role} dialogue {s.index} turn {j}"
                    result.problems.append(Problem(origin, where, "missing prediction"))
                    break
                built.append(got if got.user_text else OutputTurn(gold.user_text, got.text, got.audio_path))
            dialogues[s.index] = built
        target = out_base / f"{rec_mode.value}_result" / "json" / f"{role}.json"
        write_role_output(target, role, dialogues)
        result.written.append(target)
    return result
