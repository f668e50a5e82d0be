"""Test doubles for agents (logic tests only; integration tests use the bundled real models)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from speechrole.agents.base import Agent, TurnRequest
from speechrole.audio import write_wav
from speechrole.schema import AgentReply


class FakeAgent(Agent):
    """Answers with a deterministic line and a tone; can be slow or fail on chosen turns."""

    def __init__(
        self, delay: float | str = 0.0, fail: str = "", thread_safe: bool | str = False, **_: Any
    ) -> None:
        self.delay = float(delay)
        self.fail = {f for f in fail.split(";") if f}  # "single/Ada/0#0" = sample key # turn
        self.calls: list[str] = []
        self._thread_safe = str(thread_safe).lower() in {"1", "true"}

    @property
    def thread_safe(self) -> bool:  # type: ignore[override]
        return self._thread_safe

    def reply(self, request: TurnRequest) -> AgentReply:
        key = f"{request.sample.key}#{request.turn}"
        self.calls.append(key)
        if key in self.fail:
            raise RuntimeError(f"injected failure at {key}")
        time.sleep(self.delay)
        seen = " | ".join(e.assistant for e in request.history)
        text = f"{request.role.name} answers turn {request.turn} (history: {seen or 'none'})"
        t = np.arange(8000) / 16000
        write_wav(request.audio_out, 0.2 * np.sin(2 * np.pi * (200 + 10 * request.turn) * t), 16000)
        return AgentReply(text=text, audio=str(request.audio_out), latency_s={"total": self.delay})

    def describe(self) -> dict[str, Any]:
        return {"agent": "fake", "delay": self.delay}


def make(**options: Any) -> Agent:
    return FakeAgent(**options)
