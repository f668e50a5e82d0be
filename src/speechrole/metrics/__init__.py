"""Objective speech metrics: speaker similarity, DNSMOS, intelligibility, prosody, duration."""

from __future__ import annotations

import importlib
from functools import cache

from speechrole.metrics.base import METRICS

BUILTIN = (
    "speechrole.metrics.speaker",
    "speechrole.metrics.dnsmos",
    "speechrole.metrics.intelligibility",
    "speechrole.metrics.prosody",
)


@cache
def load_builtin() -> None:
    for module in BUILTIN:
        importlib.import_module(module)


__all__ = ["METRICS", "load_builtin"]
