"""speechrole: build, run and evaluate speech role-playing agents (SpeechRole-Eval, done right)."""

from __future__ import annotations

__version__ = "0.1.0"
