"""The judge client against a real local HTTP server that injects faults."""

from __future__ import annotations

import asyncio
import time

import pytest

from speechrole.chat import CallError, ChatClient, parse_retry_after
from tests.judge_server import JudgeServer

BODY = {
    "model": "judge",
    "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "### Speech_Fluency\nrate it"}]},
    ],
}


def first_attempts(fault: str, n: int = 1):  # type: ignore[no-untyped-def]
    """Fail the first `n` attempts of every body with `fault`."""
    return lambda info: fault if info.attempt <= n else "ok"


def call(server: JudgeServer, body=BODY, **kwargs):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        async with ChatClient(server.base_url, "sk-test-key", backoff_s=0.01, **kwargs) as client:
            return await client.complete(body)

    return asyncio.run(go())


def test_ok_answer_usage_and_model() -> None:
    with JudgeServer() as server:
        result = call(server)
    assert '"score_a"' in result.text and result.retries == 0
    assert result.model == "judge-test-001"
    assert result.usage["prompt_tokens_details.audio_tokens"] == 800
    assert server.state.auth == {"Bearer sk-test-key"}


@pytest.mark.parametrize("fault", ["server_error", "drop", "timeout"])
def test_transient_errors_are_retried(fault: str) -> None:
    with JudgeServer(plan=first_attempts(fault, 2), timeout_sleep_s=1.5) as server:
        result = call(server, timeout_s=0.5)
    assert result.retries == 2
    assert server.state.requests == 3


def test_429_honours_retry_after_and_pauses_everyone() -> None:
    with JudgeServer(plan=lambda info: "rate_limit" if info.number == 1 else "ok", retry_after="1") as server:

        async def go() -> list[float]:
            async with ChatClient(server.base_url, None, backoff_s=0.01) as client:
                started = time.monotonic()
                first = asyncio.create_task(client.complete(BODY))
                await asyncio.sleep(0.2)  # by now the first call got its 429
                second = asyncio.create_task(client.complete({**BODY, "model": "other"}))
                await asyncio.gather(first, second)
                return [time.monotonic() - started, first.result().retries, second.result().retries]

        elapsed, retries_first, retries_second = asyncio.run(go())
    assert retries_first == 1 and retries_second == 0
    assert elapsed >= 0.95  # the first waited the whole Retry-After, and the second waited with it
    assert server.state.requests == 3


def test_invalid_request_is_not_retried_and_the_key_is_scrubbed() -> None:
    with JudgeServer(plan=lambda info: "bad_request") as server, pytest.raises(CallError) as info:
        call(server)
    assert info.value.kind == "rejected" and not info.value.retryable and info.value.attempts == 1
    assert "HTTP 400" in str(info.value) and "sk-test-key" not in str(info.value)
    assert server.state.requests == 1


def test_retries_are_bounded() -> None:
    with JudgeServer(plan=lambda info: "server_error") as server, pytest.raises(CallError) as info:
        call(server, max_retries=2)
    assert info.value.kind == "server" and info.value.attempts == 3
    assert server.state.requests == 3


def test_connection_refused_is_a_connection_error() -> None:
    async def go() -> None:
        async with ChatClient("http://127.0.0.1:9/v1", None, max_retries=1, backoff_s=0.01) as client:
            await client.complete(BODY)

    with pytest.raises(CallError) as info:
        asyncio.run(go())
    assert info.value.kind == "connection" and info.value.attempts == 2


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # type: ignore[operator]
