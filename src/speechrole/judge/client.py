"""An async client for OpenAI-compatible chat endpoints, built to be trusted with a paid judge.

- Retries only what is worth retrying: rate limits (429), server errors (5xx, 408), timeouts and
  dropped connections, a bounded number of times with exponential backoff and jitter.
- Honours `Retry-After` (seconds or an HTTP date), and a 429 pauses every caller of this client, not
  only the one that got it, so a rate-limited endpoint is not hammered by the other workers.
- Never retries a request the server rejected as invalid (other 4xx): that is the caller's bug or data.
- The API key is sent in a header and scrubbed from every error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


class CallError(Exception):
    """A failed call. `kind`: rate_limit, server, timeout, connection, bad_response or rejected."""

    def __init__(self, kind: str, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = 1


@dataclass(frozen=True)
class ChatResult:
    text: str
    usage: dict[str, int]
    model: str
    latency_s: float
    retries: int


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _flatten_usage(usage: Any) -> dict[str, int]:
    """Provider usage as flat integer counters (`prompt_tokens`, `prompt_tokens_details.audio_tokens`, ...)."""
    out: dict[str, int] = {}
    if not isinstance(usage, dict):
        return out
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            out[key] = value
        elif isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in _flatten_usage(value).items()})
    return out


def _content_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers return content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class ChatClient:
    """POST /chat/completions with retries; use as `async with ChatClient(...) as client`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 300.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        max_connections: int = 64,
    ) -> None:
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_backoff_s = max_backoff_s
        self._api_key = api_key or ""
        self.backoff_s = backoff_s
        self._backoff = wait_exponential_jitter(multiplier=backoff_s, max=max_backoff_s, jitter=backoff_s)
        self._pause_until = 0.0
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # One single-connection httpx client per concurrent request, handed out through a queue: httpcore
        # scans every pooled connection on each request, which costs milliseconds per call at 32 connections.
        tls = httpx.create_ssl_context()  # one TLS context for all (building one costs ~20 ms)
        self._clients = [
            httpx.AsyncClient(
                base_url=base_url,
                headers=headers,
                timeout=httpx.Timeout(timeout_s),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                verify=tls,
            )
            for _ in range(max(1, max_connections))
        ]
        self._idle: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for client in self._clients:
            self._idle.put_nowait(client)

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients))

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, CallError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_backoff_s)
        return self._backoff(state)

    async def _respect_pause(self) -> None:
        delay = self._pause_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _once(self, body: dict[str, Any]) -> tuple[str, dict[str, int], str]:
        http = await self._idle.get()
        try:
            resp = await http.post("chat/completions", json=body)
        except httpx.TimeoutException:
            raise CallError("timeout", f"no answer within {self.timeout_s:g} s", retryable=True) from None
        except httpx.TransportError as exc:
            raise CallError(
                "connection", f"connection failed ({type(exc).__name__})", retryable=True
            ) from None
        finally:
            self._idle.put_nowait(http)
        if resp.status_code == 429:
            wait = parse_retry_after(resp.headers.get("retry-after"))
            pause = wait if wait is not None else self.backoff_s
            self._pause_until = max(self._pause_until, time.monotonic() + min(pause, self.max_backoff_s))
            raise CallError("rate_limit", "rate limited (HTTP 429)", retryable=True, retry_after=wait)
        if resp.status_code in RETRYABLE_STATUS or resp.status_code >= 500:
            raise CallError("server", f"server error (HTTP {resp.status_code})", retryable=True)
        if resp.status_code >= 400:
            detail = self._scrub(resp.text[:300].strip())
            raise CallError(
                "rejected", f"request rejected (HTTP {resp.status_code}): {detail}", retryable=False
            )
        try:
            data = resp.json()
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise CallError(
                "bad_response", "the server's answer is not a chat completion", retryable=True
            ) from None
        return _content_text(message), _flatten_usage(data.get("usage")), str(data.get("model") or "")

    async def complete(self, body: dict[str, Any]) -> ChatResult:
        """One chat completion, retried as described above; raises `CallError` when it gives up."""
        started = time.monotonic()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            retry=retry_if_exception(lambda e: isinstance(e, CallError) and e.retryable),
            wait=self._wait,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._respect_pause()
                    text, usage, model = await self._once(body)
        except CallError as exc:
            exc.attempts = retrying.statistics.get("attempt_number", 1)
            raise
        retries = retrying.statistics.get("attempt_number", 1) - 1
        return ChatResult(text, usage, model, time.monotonic() - started, retries)
