"""Training examples from chat JSONL exports or official-layout datasets, exclusions and the held-out split.

Two readers, picked by what the path is:
- chat JSONL (`speechrole data run`'s `chat` export, LLaMA-Factory/ms-swift style): one dialogue per line,
  `{"id", "role", "messages": [...], "audios": [...]}`, one `<audio>` placeholder per clip; relative clip
  paths are resolved inside the file's folder;
- the official SpeechRole layout (what `speechrole eval --bench` reads, and the `speechrole` export): each
  sample becomes the role's system prompt, the user turns as audio and the reference answers as text.

A bad line or a missing clip is a problem naming the file, line and field; the example is skipped and
the rest is read. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from speechrole.fileio import resolve_inside
from speechrole.problems import DataError, Problem
from speechrole.train.encode import AUDIO_PLACEHOLDER

SplitBy = Literal["dialogue", "role"]


@dataclass(frozen=True)
class Example:
    """One dialogue to train on. `group` is its dialogue: the unit the held-out split never divides."""

    id: str
    role: str
    group: str
    messages: tuple[dict[str, str], ...]
    audios: tuple[Path, ...]
    source: str  # file (and line) it came from, for messages

    def answers(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "assistant"]


def _chat_example(raw: Any, file: Path, line: int) -> Example:
    where = f"{file}:{line}"
    if not isinstance(raw, dict):
        raise DataError(file, f"line {line}", "expected a JSON object")
    messages = raw.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(file, f"line {line}.messages", "expected a non-empty list of messages")
    clean: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or m.get("role") not in {"system", "user", "assistant"}
            or not isinstance(m.get("content"), str)
        ):
            raise DataError(
                file, f"line {line}.messages[{i}]", "expected {role: system|user|assistant, content: text}"
            )
        clean.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" for m in clean):
        raise DataError(file, f"line {line}.messages", "no assistant message to learn from")
    audios = raw.get("audios", [])
    if not isinstance(audios, list) or not all(isinstance(a, str) for a in audios):
        raise DataError(file, f"line {line}.audios", "expected a list of clip paths")
    placeholders = sum(m["content"].count(AUDIO_PLACEHOLDER) for m in clean)
    if placeholders != len(audios):
        raise DataError(
            file, f"line {line}.audios", f"{len(audios)} clips for {placeholders} <audio> placeholders"
        )
    paths = []
    for j, a in enumerate(audios):
        path = (
            Path(a)
            if Path(a).is_absolute()
            else resolve_inside(file.parent, a, file=file, field=f"line {line}.audios[{j}]")
        )
        if not path.is_file():
            raise DataError(file, f"line {line}.audios[{j}]", f"audio file not found: {path}")
        paths.append(path)
    ident = str(raw.get("id") or f"{file.name}:{line}")
    return Example(
        id=ident,
        role=str(raw.get("role") or ""),
        group=str(raw.get("dialogue_id") or ident),
        messages=tuple(clean),
        audios=tuple(paths),
        source=where,
    )


def read_chat(file: Path) -> tuple[list[Example], list[Problem]]:
    """Examples of a chat JSONL file; bad lines become problems."""
    examples, problems = [], []
    for line, text in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            examples.append(_chat_example(json.loads(text), file, line))
        except json.JSONDecodeError as exc:
            problems.append(Problem(str(file), f"line {line}", f"not JSON: {exc.msg}"))
        except DataError as exc:
            problems.append(exc.problem)
    return examples, problems


def read_official(folder: Path) -> tuple[list[Example], list[Problem]]:
    """Examples of an official-layout dataset: per sample, its system prompt, user turns as audio (text
    where a turn has no clip), reference answers as text."""
    from speechrole.bench import load_benchmark

    bench, problems = load_benchmark(folder)
    examples = []
    for sample in bench.samples:
        role = bench.roles[sample.role]
        messages = [{"role": "system", "content": sample.system_prompt or role.profile}]
        audios: list[Path] = []
        try:
            for t, turn in enumerate(sample.turns):
                if turn.user_audio:
                    where = f"{sample.source or sample.key}"
                    path = resolve_inside(
                        bench.root, turn.user_audio, file=where, field=f"turns[{t}].user_speech_path"
                    )
                    if not path.is_file():
                        raise DataError(
                            Path(where), f"turns[{t}].user_speech_path", f"audio file not found: {path}"
                        )
                    audios.append(path)
                    messages.append({"role": "user", "content": AUDIO_PLACEHOLDER})
                else:
                    messages.append({"role": "user", "content": turn.user_text})
                messages.append({"role": "assistant", "content": turn.reference_text})
        except DataError as exc:
            problems.append(exc.problem)
            continue
        examples.append(
            Example(
                id=f"{bench.name}:{sample.key}",
                role=sample.role,
                group=f"{bench.name}:{sample.key}",
                messages=tuple(messages),
                audios=tuple(audios),
                source=sample.source or str(folder),
            )
        )
    return examples, problems


def read_source(path: Path) -> tuple[list[Example], list[Problem]]:
    """A chat JSONL file, a folder holding `chat.jsonl`, or an official-layout folder."""
    if path.is_file():
        return read_chat(path)
    if (path / "chat.jsonl").is_file():
        return read_chat(path / "chat.jsonl")
    if path.is_dir():
        return read_official(path)
    raise DataError(path, "data", "not found (a chat JSONL file or an official-layout dataset folder)")


def data_digest(paths: Iterable[Path], examples: Sequence[Example]) -> str:
    """sha256 over the source files' bytes (JSONL/JSON) and every clip's path and size: what a resumed run
    must find unchanged."""
    digest = hashlib.sha256()
    for path in paths:
        files = (
            [path]
            if path.is_file()
            else sorted(p for p in path.rglob("*") if p.suffix in {".json", ".jsonl", ".txt"})
        )
        for f in files:
            digest.update(str(f.relative_to(path.parent if path.is_file() else path)).encode())
            digest.update(hashlib.sha256(f.read_bytes()).digest())
    for ex in examples:
        for clip in ex.audios:
            digest.update(f"{clip}:{clip.stat().st_size}".encode())
    return digest.hexdigest()


def official_role_ids() -> set[str]:
    """The 98 SpeechRole-Eval role ids (bundled list)."""
    from importlib import resources

    import yaml

    data = yaml.safe_load(
        resources.files("speechrole.data").joinpath("official_roles.yaml").read_text("utf-8")
    )
    return {role for roles in data["languages"].values() for role in roles}


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def exclude(
    examples: Sequence[Example], roles: set[str], answers_of: Sequence[str] = ()
) -> tuple[list[Example], dict[str, int]]:
    """Drop examples of `roles`, and examples sharing an answer text with `answers_of` (a benchmark's
    reference answers: its dialogues never reach training). Returns the kept examples and counts."""
    banned = {_norm(a) for a in answers_of}
    kept, counts = [], {"role": 0, "benchmark dialogue": 0}
    for ex in examples:
        if ex.role in roles:
            counts["role"] += 1
        elif banned and any(_norm(a) in banned for a in ex.answers()):
            counts["benchmark dialogue"] += 1
        else:
            kept.append(ex)
    return kept, counts


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def split(
    examples: Sequence[Example], *, by: SplitBy, fraction: float, seed: int, eval_roles: Sequence[str] = ()
) -> tuple[list[Example], list[Example]]:
    """(train, held out): whole dialogues (`by: dialogue`) or whole roles (`by: role`, or the roles named
    in `eval_roles`) go to one side only; which ones is fixed by the seed."""
    if by == "role" or eval_roles:
        if any(not ex.role for ex in examples):
            raise ValueError("a split by role needs every example's role (chat lines without a 'role' field)")
        roles = sorted({ex.role for ex in examples}, key=lambda r: _rank(seed, r))
        held = set(eval_roles) if eval_roles else set(roles[: _count(len(roles), fraction)])
        key = lambda ex: ex.role in held  # noqa: E731
    else:
        groups = sorted({ex.group for ex in examples}, key=lambda g: _rank(seed, g))
        held = set(groups[: _count(len(groups), fraction)])
        key = lambda ex: ex.group in held  # noqa: E731
    train = [ex for ex in examples if not key(ex)]
    held_out = [ex for ex in examples if key(ex)]
    return train, held_out


def _count(n: int, fraction: float) -> int:
    """How many of n units to hold out: at least one when a fraction is asked for, never all."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, math.floor(n * fraction + 0.5)))
