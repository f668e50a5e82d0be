"""Check a system's outputs against a benchmark before anyone pays for judging them.

Every sample and turn present, turn counts equal to the benchmark's, text present, every audio path
inside its root, every clip present and decodable; the reference clips the judge will compare with
likewise. Each problem names the file and the field. Durations and sample rates are collected for a
summary (and for the per-clip listing).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from speechrole.audio import AudioInfo, probe
from speechrole.fileio import resolve_inside
from speechrole.outputs import OutputTree, read_role_output
from speechrole.problems import DataError, Problem
from speechrole.schema import Benchmark, Mode, Sample


@dataclass(frozen=True)
class Clip:
    side: str  # "output" or "reference"
    sample: str
    turn: int
    path: str
    info: AudioInfo | None


@dataclass
class Validation:
    problems: list[Problem] = field(default_factory=list)
    clips: list[Clip] = field(default_factory=list)
    roles_checked: int = 0
    samples_checked: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors


def _check_clip(root: Path, path: str, *, file: str, field_: str, decode: bool) -> AudioInfo:
    resolved = resolve_inside(root, path, file=file, field=field_)
    try:
        return probe(resolved, field=field_, decode=decode)
    except DataError as exc:
        # Name the data file and field that point at the clip, then the clip and what is wrong with it.
        raise DataError(file, field_, f"{path}: {exc.problem.reason}") from None


def _check_sample_outputs(
    sample: Sample, turns: list | None, file: Path, tree: OutputTree, report: Validation, decode: bool
) -> None:
    key = f"dialogue_{sample.index}"
    if turns is None:
        report.problems.append(Problem(str(file), key, "missing dialogue"))
        return
    if len(turns) != len(sample.turns):
        report.problems.append(
            Problem(str(file), key, f"{len(turns)} turns, the benchmark has {len(sample.turns)}")
        )
    for j, turn in enumerate(turns[: len(sample.turns)]):
        where = f"{key}[{j}].model_output"
        if turn.text is None:
            report.problems.append(Problem(str(file), f"{where}.text", "missing"))
        if not turn.audio_path:
            report.problems.append(Problem(str(file), f"{where}.audio_path", "missing"))
            continue
        try:
            info = _check_clip(
                tree.root, turn.audio_path, file=str(file), field_=f"{where}.audio_path", decode=decode
            )
        except DataError as exc:
            report.problems.append(exc.problem)
            info = None
        report.clips.append(Clip("output", sample.key, j, turn.audio_path, info))


def _check_references(sample: Sample, bench: Benchmark, report: Validation, decode: bool) -> None:
    for j, turn in enumerate(sample.turns):
        where = f"[{sample.index}].dialogue[{j}].{bench.reference_set}"
        if not turn.reference_audio:
            report.problems.append(Problem(sample.source, where, "missing reference audio path"))
            continue
        try:
            info = _check_clip(
                bench.root, turn.reference_audio, file=sample.source, field_=where, decode=decode
            )
        except DataError as exc:
            report.problems.append(exc.problem)
            info = None
        report.clips.append(Clip("reference", sample.key, j, turn.reference_audio, info))


def validate_outputs(
    bench: Benchmark,
    tree: OutputTree,
    *,
    roles: Iterable[str] | None = None,
    modes: Iterable[Mode] | None = None,
    check_reference: bool = True,
    decode: bool = True,
) -> Validation:
    """Validate the outputs under `tree` against `bench` (optionally a subset of roles and modes)."""
    wanted_roles = set(roles) if roles else None
    wanted_modes = set(modes) if modes else set(Mode)
    report = Validation()
    if wanted_roles:
        for role in sorted(wanted_roles - set(bench.roles)):
            report.problems.append(
                Problem(str(bench.root), "roles", f"role {role!r} is not in the benchmark")
            )
    by_file: dict[tuple[Mode, str], list[Sample]] = defaultdict(list)
    for s in bench.samples:
        if s.mode in wanted_modes and (wanted_roles is None or s.role in wanted_roles):
            by_file[(s.mode, s.role)].append(s)
    for (mode, role), samples in sorted(by_file.items()):
        report.roles_checked += 1
        report.samples_checked += len(samples)
        if check_reference:
            for s in samples:
                _check_references(s, bench, report, decode)
        file = tree.json_file(mode, role)
        if not file.is_file():
            report.problems.append(
                Problem(str(file), "", f"missing output file ({len(samples)} samples expected)")
            )
            continue
        try:
            output, problems = read_role_output(file)
        except DataError as exc:
            report.problems.append(exc.problem)
            continue
        report.problems += problems
        if output.legacy and len(samples) > 1:
            report.problems.append(
                Problem(
                    str(file), "dialogue", "legacy single 'dialogue' key holds only dialogue 0", "warning"
                )
            )
        for s in samples:
            _check_sample_outputs(s, output.dialogues.get(s.index), file, tree, report, decode)
        extra = sorted(set(output.dialogues) - {s.index for s in samples})
        if extra:
            names = ", ".join(f"dialogue_{i}" for i in extra)
            report.problems.append(Problem(str(file), names, "not in the benchmark; ignored", "warning"))
    for mode in wanted_modes:
        for role in tree.roles(mode):
            if (mode, role) not in by_file and (wanted_roles is None or role in wanted_roles):
                report.problems.append(
                    Problem(
                        str(tree.json_file(mode, role)), "", "role not in the benchmark; ignored", "warning"
                    )
                )
    return report
