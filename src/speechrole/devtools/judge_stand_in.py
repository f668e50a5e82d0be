"""A stand-in for an audio-LLM judge: a local OpenAI-compatible chat server whose scores mean nothing.

It lets you try `speechrole judge`, `eval` and `demo --judge` end to end with no model and no key, and
it is what the test suite judges against (real HTTP, real client). Run it with

    python -m speechrole.devtools.judge_stand_in [LATENCY_S] [--port PORT] [--lean]

and point the judge at the URL it prints (`--judge test --base-url http://127.0.0.1:PORT/v1`). It
listens on 127.0.0.1 only.

It answers `POST /v1/chat/completions` like an audio judge would: it finds the aspects asked for in
the prompt (`### Metric` headers), sorts the audio parts into Model A's and Model B's by the
"Model A" / "Model B" texts before them, and scores each side from the sha256 of its audio (so the
same clips get the same scores in either order, unless `bias_a` favours whoever is presented first),
or with `side_score` when a test wants scores that depend on what a side's clips are. A `plan`
decides, per request, whether to answer normally or to fail in one of many ways (429, 5xx, timeouts,
dropped connections, prose, missing or out-of-range scores, ...). Requests that ask for speech or for
a plain chat get a short tone or a role-play line, so it also stands in for agents' remote models.

The scores are derived from bytes, not from listening: never report them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from speechrole.schema import METRICS

FAULTS = (
    "ok",
    "rate_limit",
    "server_error",
    "timeout",
    "drop",
    "fenced",
    "prose",
    "missing_metric",
    "out_of_range",
    "string_score",
    "bad_request",
    "empty",
)


@dataclass(frozen=True)
class RequestInfo:
    number: int  # 1-based, over the server's life
    conversation: str  # sha256 of the first user message: the same for retries and re-asks
    attempt: int  # how many times this exact body was seen, this one included
    reask: bool  # the client is re-asking after an unusable answer
    prompt_sha256: str  # the judge's own prompt hash (texts + clip hashes), to match judgments


Plan = Callable[[RequestInfo], str]


def always_ok(info: RequestInfo) -> str:
    return "ok"


def share_faulty(share: float, faults: tuple[str, ...], *, first_attempt_only: bool = True) -> Plan:
    """Fail a deterministic `share` of conversations, cycling through `faults` (on the first attempt only,
    so retries and re-asks succeed, unless the fault is permanent by nature, like bad_request)."""

    def plan(info: RequestInfo) -> str:
        h = int(info.conversation[:8], 16)
        if (h % 1000) / 1000 >= share:
            return "ok"
        fault = faults[(h // 1000) % len(faults)]
        if fault == "bad_request":
            return fault
        if info.reask or (first_attempt_only and info.attempt > 1):
            return "ok"
        return fault

    return plan


def _score(data: str) -> int:
    return 5 + int(hashlib.sha256(data.encode()).hexdigest()[:8], 16) % 6


#: Scores one side of a request from the decoded bytes (a WAV file each) of its clips, in order.
SideScore = Callable[[Sequence[bytes]], int]


@dataclass
class ServerState:
    plan: Plan = always_ok
    latency_s: float = 0.0
    bias_a: int = 0
    side_score: SideScore | None = None  # instead of the sha256-derived score
    timeout_sleep_s: float = 3.0
    retry_after: str = "1"
    track: bool = True  # hash bodies and prompts per request (tests need it; throughput benchmarks do not)
    requests: int = 0
    by_prompt: Counter[str] = field(default_factory=Counter)
    by_body: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    auth: set[str] = field(default_factory=set)
    models: set[str | None] = field(default_factory=set)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def audio_bytes(data: str) -> bytes:
    """A clip's bytes from an `input_audio` part's data: base64, or a `data:...;base64,` URL."""
    if data.startswith("data:") and ";base64," in data:
        data = data.split(";base64,", 1)[1]
    return base64.b64decode(data)


def asked_metrics(texts: str) -> list[str]:
    """The aspects a prompt asks for: `### Metric` headers, or a definition led by the metric's name
    in words ("Speech Fluency: ...", one aspect per call in the released v1 judge)."""
    return [m for m in METRICS if f"### {m}" in texts] or [
        m for m in METRICS if f"{m.replace('_', ' ')}:" in texts
    ]


def _prompt_sha(messages: list[dict[str, Any]]) -> str:
    """Same shape as `JudgeRequest.prompt_sha256`: system text, then each text or `<clip sha>`."""
    system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
    shape = [system]
    user = next((m for m in messages if m.get("role") == "user"), {"content": []})
    for part in user["content"] if isinstance(user["content"], list) else []:
        if part.get("type") == "input_audio":
            raw = audio_bytes(part["input_audio"]["data"])
            shape.append(f"<clip {hashlib.sha256(raw).hexdigest()}>")
        else:
            shape.append(part.get("text", ""))
    return hashlib.sha256(json.dumps(shape, ensure_ascii=False).encode("utf-8")).hexdigest()


_MODEL_LABEL = re.compile(r"\bModel ([AB])\b")


def sides(parts: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The base64 audio of Model A and of Model B: each clip belongs to the model last named in a text
    part before it. Without such labels, the first half of the clips is A's and the second half B's."""
    labelled: dict[str, list[str]] = {"A": [], "B": []}
    unlabelled: list[str] = []
    current: str | None = None
    for part in parts:
        if part.get("type") == "text":
            names = _MODEL_LABEL.findall(part.get("text", ""))
            current = names[-1] if names else current
        elif part.get("type") == "input_audio":
            (labelled[current] if current else unlabelled).append(part["input_audio"]["data"])
    if unlabelled:
        audio = unlabelled + labelled["A"] + labelled["B"]
        half = len(audio) // 2
        return audio[:half], audio[half:]
    return labelled["A"], labelled["B"]


def _answer(body: dict[str, Any], fault: str, bias_a: int, side_score: SideScore | None = None) -> str:
    user = next(m for m in body["messages"] if m.get("role") == "user")
    parts = user["content"]
    texts = "\n".join(p.get("text", "") for p in parts if p.get("type") == "text")
    metrics = asked_metrics(texts) or list(METRICS)
    audio_a, audio_b = sides(parts)
    if side_score is None:
        a, b = _score("".join(audio_a)), _score("".join(audio_b))
    else:
        a = side_score([audio_bytes(x) for x in audio_a])
        b = side_score([audio_bytes(x) for x in audio_b])
    a = min(10, a + bias_a)
    if "[Scores]" in texts and len(metrics) == 1:  # a free-text answer ending in paired scores
        if fault in ("missing_metric", "string_score", "fenced", "prose"):
            return f"Model A and Model B on {metrics[0]}: no scores given."
        if fault == "empty":
            return ""
        return f"Model A {a} against Model B {b} on {metrics[0]}.\n\n[Scores]: ({11 if fault == 'out_of_range' else a}, {b})"
    answer: dict[str, Any] = {
        m: {"reason": f"A {a} vs B {b} on {m}.", "score_a": a, "score_b": b} for m in metrics
    }
    if fault == "missing_metric" and len(metrics) > 1:
        answer.pop(metrics[-1])
    if fault == "out_of_range":
        answer[metrics[0]]["score_a"] = 11
    if fault == "string_score":
        answer[metrics[0]]["score_b"] = str(b)
    text = json.dumps(answer, indent=1)
    if fault == "fenced":
        return f"Here is my evaluation.\n```json\n{text}\n```\nThanks."
    if fault == "prose":
        return f"My evaluation follows: {text} I hope this helps."
    if fault == "empty":
        return ""
    return text


def _asks_for_scores(body: dict[str, Any]) -> bool:
    """A judge prompt names the aspects to score as `### Metric` headers."""
    user = next((m for m in body["messages"] if m.get("role") == "user"), {})
    content = user.get("content")
    texts = [p.get("text", "") for p in content] if isinstance(content, list) else [str(content or "")]
    return bool(asked_metrics("\n".join(texts)))


def _speech_answer(body: dict[str, Any], number: int) -> dict[str, Any]:
    """An audio chat completion: a short tone as the spoken answer, with its transcript."""
    import io
    import wave

    rate, seconds = 24000, 0.5
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                (((i // 30) % 2) * 6000 - 3000).to_bytes(2, "little", signed=True)
                for i in range(int(rate * seconds))
            )
        )
    heard = sum(1 for m in body["messages"] if m.get("role") == "user")
    transcript = f"Answer {number}: I heard {heard} user turns."
    message = {
        "role": "assistant",
        "content": None,
        "audio": {
            "id": f"audio-{number}",
            "data": base64.b64encode(buf.getvalue()).decode(),
            "transcript": transcript,
        },
    }
    return {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and the client's
        # delayed ACK add ~40 ms to every answer on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _chat(self, body: dict[str, Any], number: int) -> None:
        last = next((m["content"] for m in reversed(body["messages"]) if m.get("role") == "user"), "")
        text = f"You ask me: {last} Well. I have thought about it for a long time. The answer is no!"
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            self._send(
                200,
                {
                    "id": f"chat-{number}",
                    "choices": [{"index": 0, "message": message}],
                    "model": body.get("model"),
                },
            )
            return
        words = text.split(" ")
        events = [
            {"choices": [{"index": 0, "delta": {"content": w + (" " if i < len(words) - 1 else "")}}]}
            for i, w in enumerate(words)
        ]
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        raw = data.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        """`/stats`: counters, for benchmarks that run the server in another process."""
        state = self.server.state
        with state.lock:
            stats = {
                "requests": state.requests,
                "max_in_flight": state.max_in_flight,
                "faults": dict(state.faults),
                "cpu_s": time.process_time(),
            }
        self._send(200, stats)

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        body = json.loads(raw)
        messages = body["messages"]
        body_hash = hashlib.sha256(raw).hexdigest() if state.track else ""
        prompt = _prompt_sha(messages) if state.track else ""
        with state.lock:
            state.requests += 1
            state.by_body[body_hash] += 1
            reask = len(messages) > 2
            if not reask:
                state.by_prompt[prompt] += 1
            info = RequestInfo(
                number=state.requests,
                conversation=prompt,  # the first user message is the same in retries and re-asks
                attempt=state.by_body[body_hash],
                reask=reask,
                prompt_sha256=prompt,
            )
            state.auth.add(self.headers.get("Authorization", ""))
            state.models.add(body.get("model"))
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            fault = state.plan(info)
            with state.lock:
                state.faults[fault] += 1
            if state.latency_s:
                time.sleep(state.latency_s)
            if fault == "rate_limit":
                self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": state.retry_after})
            elif fault == "server_error":
                self._send(500, {"error": {"message": "internal"}})
            elif fault == "bad_request":
                self._send(400, {"error": {"message": "Invalid audio data"}})
            elif fault == "timeout":
                time.sleep(state.timeout_sleep_s)
                self._send(500, {"error": {"message": "too late"}})
            elif fault == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif "audio" in (body.get("modalities") or []):  # a speech model answering aloud
                self._send(200, _speech_answer(body, info.number))
            elif not _asks_for_scores(body):  # a plain chat: a role-play line, streamed when asked
                self._chat(body, info.number)
            else:
                text = _answer(body, fault, state.bias_a, state.side_score)
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{info.number}",
                        "object": "chat.completion",
                        "model": f"{body.get('model')}-test-001",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 1000 + len(raw) // 100,
                            "completion_tokens": 50 * (text.count("score_a") or 1),
                            "total_tokens": 0,
                            "prompt_tokens_details": {"audio_tokens": 800},
                        },
                    },
                )
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with state.lock:
                state.in_flight -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    state: ServerState


class JudgeServer:
    """`with JudgeServer(plan=..., latency_s=...) as server:` then use `server.base_url`."""

    def __init__(self, *, port: int = 0, **state: Any) -> None:
        self.state = ServerState(**state)
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> JudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def main(argv: list[str] | None = None) -> None:
    """Serve until Ctrl-C, printing the base URL to give the judge."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m speechrole.devtools.judge_stand_in",
        description="A local stand-in for an audio-LLM judge (for trying the pipeline and for tests): "
        "OpenAI-compatible, on 127.0.0.1, with scores that mean nothing.",
    )
    parser.add_argument("latency_s", nargs="?", type=float, default=0.0, help="seconds to wait per answer")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    parser.add_argument(
        "--lean", action="store_true", help="do not hash requests (for throughput benchmarks)"
    )
    args = parser.parse_args(argv)
    with JudgeServer(latency_s=args.latency_s, track=not args.lean, port=args.port) as server:
        print(
            f"stand-in judge (meaningless scores) on {server.base_url} (Ctrl-C to stop)",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
