"""A pipeline described in YAML, built and checked before any work starts.

```yaml
name: my-show
work_dir: work                  # relative to this file
sources:                        # media files or globs, each with its language
  - {path: media/*.mkv, language: en}
roles:                          # how segments become roles: manual, enrol or cluster
  mode: enrol
  list:
    - {id: Holmes, name: Sherlock Holmes, work: A-Study-in-Scarlet, persona: "...", enrol: [clips/holmes.wav]}
stages:
  - extract
  - vad
  - diarize: {threshold: 0.5}
  ...
```
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from speechrole.pipeline.stage import Context, Row, Stage, row_id, stage_class
from speechrole.problems import DataError

#: Fields every source row has.
SOURCE_FIELDS = frozenset({"id", "media_path", "language"})


@dataclass
class Pipeline:
    name: str
    path: Path  # the YAML file
    work_dir: Path
    stages: list[Stage]
    context: Context
    sources: list[Row]


def _stage_entries(raw: Any, file: Path) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(raw, list) or not raw:
        raise DataError(file, "stages", "expected a non-empty list of stage names or {name: options}")
    entries = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            entries.append((item, {}))
        elif isinstance(item, dict) and len(item) == 1:
            name, options = next(iter(item.items()))
            if options is not None and not isinstance(options, dict):
                raise DataError(file, f"stages[{i}].{name}", "options must be a mapping")
            entries.append((str(name), dict(options or {})))
        else:
            raise DataError(file, f"stages[{i}]", "expected a stage name or {name: options}")
    return entries


def fingerprint(path: Path) -> str:
    """A cheap content fingerprint (size, first and last MiB): a replaced file gets a new source id,
    on any machine, without reading a whole video."""
    import hashlib

    size = path.stat().st_size if path.is_file() else -1
    digest = hashlib.sha256(str(size).encode())
    if size > 0:
        with path.open("rb") as handle:
            digest.update(handle.read(1 << 20))
            if size > 2 << 20:
                handle.seek(-(1 << 20), 2)
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def _sources(raw: Any, base: Path, file: Path) -> list[Row]:
    """One row per media file; its id comes from its path and content, so a replaced file is new work."""
    from speechrole.schema import Language

    if not isinstance(raw, list) or not raw:
        raise DataError(file, "sources", "expected a non-empty list of {path, language}")
    rows: list[Row] = []
    seen: set[Path] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "path" not in item:
            raise DataError(file, f"sources[{i}]", "expected {path: FILE_OR_GLOB, language: en|zh}")
        language = str(item.get("language", "en"))
        if language not in {x.value for x in Language}:
            raise DataError(file, f"sources[{i}].language", f"{language!r}: use one of en, zh")
        pattern = str(item["path"])
        if any(c in pattern for c in "*?["):
            whole = Path(pattern)
            root = Path(whole.anchor) if whole.is_absolute() else base
            matches = sorted(
                root.glob(str(whole.relative_to(whole.anchor)) if whole.is_absolute() else pattern)
            )
            if not matches:
                raise DataError(file, f"sources[{i}].path", f"{pattern!r} matches no file")
        else:
            matches = [base / pattern]
            if not matches[0].is_file():
                raise DataError(file, f"sources[{i}].path", f"{pattern!r}: file not found")
        for media in matches:
            if not media.is_file() or media.resolve() in seen:
                continue  # folders, and files that an earlier entry already named
            seen.add(media.resolve())
            rel = media.relative_to(base).as_posix() if media.is_relative_to(base) else str(media)
            rows.append(
                {
                    "id": row_id("source", rel, fingerprint(media)),
                    "media_path": str(media),
                    "language": language,
                }
            )
    return rows


def check_fields(stages: list[Stage], file: Path) -> None:
    """Every field a stage reads is written by the sources or an earlier stage (else: one clear error)."""
    available = set(SOURCE_FIELDS)
    for i, stage in enumerate(stages):
        missing = sorted(stage.reads - available)
        if missing:
            raise DataError(
                file,
                f"stages[{i}].{stage.name}",
                f"reads {', '.join(missing)}, which no earlier stage writes (available: {', '.join(sorted(available))})",
            )
        available = set(stage.writes) | ({"id"} if not stage.keeps else available)


def inherit_options(stages: list[Stage]) -> None:
    """Give each stage the options it `inherits` from the nearest earlier stage that sets them."""
    for i, stage in enumerate(stages):
        for key in stage.inherits - stage.options.keys():
            source = next((s for s in reversed(stages[:i]) if key in s.options), None)
            if source is not None:
                stage.options[key] = source.options[key]


def load_pipeline(path: Path) -> Pipeline:
    """Read, build and check a pipeline; nothing runs yet."""
    path = Path(path).absolute()
    if not path.is_file():
        raise DataError(path, "", "pipeline file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(path, "", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(path, "", "expected a mapping with name, sources, stages")
    base = path.parent
    stages = []
    for i, (name, options) in enumerate(_stage_entries(data.get("stages"), path)):
        resources = options.pop("resources", None)
        try:
            stage = stage_class(name)(**options)
            if resources is not None:  # what one worker needs, for Ray: {cpus, gpus, memory_gb}
                if not isinstance(resources, dict):
                    raise ValueError("resources: expected {cpus, gpus, memory_gb}")
                stage.resources = replace(stage.resources, **resources)
        except (ValueError, TypeError) as exc:
            raise DataError(path, f"stages[{i}].{name}", str(exc)) from None
        stages.append(stage)
    check_fields(stages, path)
    inherit_options(stages)
    work_dir = (base / str(data.get("work_dir", "work"))).absolute()
    config = {k: v for k, v in data.items() if k not in ("stages", "sources")}
    config["base_dir"] = str(base)
    for i, stage in enumerate(stages):
        if (why := stage.check(config)) is not None:
            raise DataError(path, f"stages[{i}].{stage.name}", why)
    return Pipeline(
        name=str(data.get("name") or path.stem),
        path=path,
        work_dir=work_dir,
        stages=stages,
        context=Context(work_dir, config),
        sources=_sources(data.get("sources"), base, path),
    )
