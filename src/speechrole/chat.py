"""Clients for OpenAI-compatible chat endpoints (async for the judge, sync and streaming for agents).

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
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

#: A server asking to wait longer than this is not waited for: the call ends (unscored, retried next run).
MAX_RETRY_AFTER_S = 600.0
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
    message: dict[str, Any] = field(default_factory=dict)  # the raw message (e.g. audio of speech models)
    finish_reason: str = ""  # the server's: "stop", "length" (cut by max_tokens), ...; "" when not sent


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
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


class _Policy:
    """What both clients share: headers, error classification, backoff, the shared 429 pause."""

    def __init__(
        self, api_key: str | None, timeout_s: float, max_retries: int, backoff_s: float, max_backoff_s: float
    ):
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.api_key = api_key or ""
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.backoff = wait_exponential_jitter(multiplier=backoff_s, max=max_backoff_s, jitter=backoff_s)
        self.pause_until = 0.0

    def scrub(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text

    def wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, CallError) and exc.retry_after is not None:
            return exc.retry_after  # honoured as asked (calls asking for more than MAX_RETRY_AFTER_S give up)
        return self.backoff(state)

    def pause_left(self) -> float:
        return self.pause_until - time.monotonic()

    def retry_args(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.max_retries + 1),
            "retry": retry_if_exception(lambda e: isinstance(e, CallError) and e.retryable),
            "wait": self.wait,
            "reraise": True,
        }

    def transport_error(self, exc: Exception) -> CallError:
        """Any failure of the HTTP exchange itself (httpx.HTTPError and friends) as a `CallError`."""
        if isinstance(exc, httpx.TimeoutException):
            return CallError("timeout", f"no answer within {self.timeout_s:g} s", retryable=True)
        if isinstance(exc, httpx.TransportError):
            return CallError("connection", f"connection failed ({type(exc).__name__})", retryable=True)
        return CallError("bad_response", f"unusable HTTP exchange ({type(exc).__name__})", retryable=True)

    def check(self, status: int, headers: httpx.Headers, text: str) -> None:
        """Raise the right `CallError` for a non-success status (and pause everyone on a 429)."""
        if status == 429:
            wait = parse_retry_after(headers.get("retry-after"))
            if wait is not None and wait > MAX_RETRY_AFTER_S:
                # Retrying sooner than asked would only burn retries: give up on this call instead.
                raise CallError("rate_limit", f"rate limited; asked to wait {wait:.0f} s", retryable=False)
            pause = wait if wait is not None else self.backoff_s
            self.pause_until = max(self.pause_until, time.monotonic() + pause)
            raise CallError("rate_limit", "rate limited (HTTP 429)", retryable=True, retry_after=wait)
        if status in RETRYABLE_STATUS or status >= 500:
            raise CallError("server", f"server error (HTTP {status})", retryable=True)
        if status >= 400:
            detail = self.scrub(text)[:300].strip()  # scrub first: a cut could split the key
            raise CallError("rejected", f"request rejected (HTTP {status}): {detail}", retryable=False)

    @staticmethod
    def parse(resp: httpx.Response) -> tuple[str, dict[str, int], str, dict[str, Any], str]:
        try:
            data = resp.json()
            choice = data["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise CallError(
                "bad_response", "the server's answer is not a chat completion", retryable=True
            ) from None
        if not isinstance(message, dict):
            raise CallError("bad_response", "the server's answer is not a chat completion", retryable=True)
        return (
            _content_text(message),
            _flatten_usage(data.get("usage")),
            str(data.get("model") or ""),
            message,
            str(choice.get("finish_reason") or ""),
        )


class ChatClient:
    """Async POST /chat/completions with retries; use as `async with ChatClient(...) as client`."""

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
        self._policy = _Policy(api_key, timeout_s, max_retries, backoff_s, max_backoff_s)
        tls = httpx.create_ssl_context()  # one TLS context for all (building one costs ~20 ms)
        # One single-connection httpx client per concurrent request, handed out through a queue: httpcore
        # scans every pooled connection on each request, which costs milliseconds per call at 32 connections.
        self._clients = [
            httpx.AsyncClient(
                base_url=base_url,
                headers=self._policy.headers,
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

    async def _once(self, body: dict[str, Any]) -> tuple[str, dict[str, int], str, dict[str, Any], str]:
        if (delay := self._policy.pause_left()) > 0:
            await asyncio.sleep(delay)
        http = await self._idle.get()
        try:
            resp = await http.post("chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise self._policy.transport_error(exc) from None
        finally:
            self._idle.put_nowait(http)
        self._policy.check(resp.status_code, resp.headers, resp.text if resp.status_code >= 400 else "")
        return self._policy.parse(resp)

    async def complete(self, body: dict[str, Any]) -> ChatResult:
        """One chat completion, retried as described above; raises `CallError` when it gives up."""
        started = time.monotonic()
        retrying = AsyncRetrying(**self._policy.retry_args())
        try:
            async for attempt in retrying:
                with attempt:
                    text, usage, model, message, finish = await self._once(body)
        except CallError as exc:
            exc.attempts = retrying.statistics.get("attempt_number", 1)
            raise
        retries = retrying.statistics.get("attempt_number", 1) - 1
        return ChatResult(text, usage, model, time.monotonic() - started, retries, message, finish)


class SyncChatClient:
    """The same policy for blocking callers (agents run in worker threads); adds token streaming."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 300.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.base_url = base_url
        self._policy = _Policy(api_key, timeout_s, max_retries, backoff_s, max_backoff_s)
        self._http = httpx.Client(
            base_url=base_url, headers=self._policy.headers, timeout=httpx.Timeout(timeout_s)
        )

    def close(self) -> None:
        self._http.close()

    def _pause(self) -> None:
        if (delay := self._policy.pause_left()) > 0:
            time.sleep(delay)

    def complete(self, body: dict[str, Any]) -> ChatResult:
        started = time.monotonic()
        retrying = Retrying(**self._policy.retry_args())
        try:
            for attempt in retrying:
                with attempt:
                    self._pause()
                    try:
                        resp = self._http.post("chat/completions", json=body)
                    except httpx.HTTPError as exc:
                        raise self._policy.transport_error(exc) from None
                    self._policy.check(
                        resp.status_code, resp.headers, resp.text if resp.status_code >= 400 else ""
                    )
                    text, usage, model, message, finish = self._policy.parse(resp)
        except CallError as exc:
            exc.attempts = retrying.statistics.get("attempt_number", 1)
            raise
        retries = retrying.statistics.get("attempt_number", 1) - 1
        return ChatResult(text, usage, model, time.monotonic() - started, retries, message, finish)

    def stream(self, body: dict[str, Any], on_finish: Callable[[str], None] | None = None) -> Iterator[str]:
        """Text deltas of a streamed completion (server-sent events). Failures before the first delta are
        retried like `complete`; a stream cut off midway raises `CallError` (the text so far is kept by
        the caller). `on_finish` gets the server's finish_reason ("length": cut by max_tokens) if it sends one."""
        retrying = Retrying(**self._policy.retry_args())
        for attempt in retrying:
            with attempt:
                self._pause()
                try:
                    context = self._http.stream("POST", "chat/completions", json={**body, "stream": True})
                    resp = context.__enter__()
                except httpx.HTTPError as exc:
                    raise self._policy.transport_error(exc) from None
                if resp.status_code >= 400:
                    text = resp.read().decode("utf-8", "replace")
                    context.__exit__(None, None, None)
                    self._policy.check(resp.status_code, resp.headers, text)
        try:
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    choice = json.loads(data)["choices"][0]
                    delta = choice.get("delta", {})
                except (ValueError, KeyError, IndexError, TypeError):
                    raise CallError("bad_response", "malformed streamed chunk", retryable=False) from None
                if on_finish is not None and choice.get("finish_reason"):
                    on_finish(str(choice["finish_reason"]))
                if isinstance(delta.get("content"), str) and delta["content"]:
                    yield delta["content"]
        except httpx.HTTPError as exc:
            raise self._policy.transport_error(exc) from None
        finally:
            context.__exit__(None, None, None)
