"""Agents: the cascaded agent and its ASR/LLM/TTS backends, end-to-end speech models, remote agents."""

from __future__ import annotations

import importlib
from functools import cache

#: Modules that register agents and backends when imported (heavy libraries load only when used).
BUILTIN = (
    "speechrole.agents.asr",
    "speechrole.agents.llm",
    "speechrole.agents.tts",
    "speechrole.agents.cloning",
    "speechrole.agents.cascaded",
    "speechrole.agents.e2e",
    "speechrole.agents.omni",
    "speechrole.agents.remote",
)


@cache
def load_builtin() -> None:
    for module in BUILTIN:
        importlib.import_module(module)
