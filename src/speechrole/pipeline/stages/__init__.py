"""The built-in stages; importing a module registers its stages."""

from __future__ import annotations

import importlib

MODULES = ("audio", "roles", "dialogues", "speech", "export")


def load_builtin() -> None:
    for module in MODULES:
        importlib.import_module(f"speechrole.pipeline.stages.{module}")
