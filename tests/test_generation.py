"""Dialogue generation against a local OpenAI-compatible server: dialogues in flight together, the
same dialogues at any concurrency, and every answer cached by prompt (a rerun asks nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechrole.pipeline import Context
from speechrole.pipeline.example import synthetic_roles
from speechrole.pipeline.stages.dialogues import GenerateDialogues
from tests.judge_server import JudgeServer


def _generate(server: JudgeServer, work: Path, concurrency: int) -> list[dict[str, Any]]:
    stage = GenerateDialogues(llm=f"openai:stand-in@{server.base_url}", concurrency=concurrency)
    stage.setup(Context(work, {}))
    try:
        return stage.process_batch(synthetic_roles(4))
    finally:
        stage.teardown()


def test_dialogues_in_flight_together_the_same_at_any_concurrency_and_cached(tmp_path: Path) -> None:
    with JudgeServer(latency_s=0.05) as server:
        one = _generate(server, tmp_path / "a", 1)
        asked, most = server.state.requests, server.state.max_in_flight
        assert most == 1 and len(one) == 12 and all("turns" in r for r in one)  # 4 roles x 3 dialogues
        server.state.max_in_flight = 0
        many = _generate(server, tmp_path / "b", 12)
        assert server.state.max_in_flight >= 6  # each dialogue waits on its own answers only
        assert server.state.requests == 2 * asked  # a prompt in flight is waited for, not sent twice
        assert [(r["id"], r["turns"]) for r in many] == [(r["id"], r["turns"]) for r in one]
        again = _generate(server, tmp_path / "b", 12)  # a rerun in the same folder: all from the cache
        assert server.state.requests == 2 * asked and again == many
        assert (tmp_path / "b" / "cache" / "llm.sqlite").is_file()
