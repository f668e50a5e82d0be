"""Remote agents: an agent with its own heavy dependencies runs in its own environment or machine and
answers over a small JSON contract (docs/remote-agent.md), by HTTP or as JSON lines over stdio.

`serve_agent` exposes any speechrole agent over that contract, e.g. on a GPU machine:
`speechrole serve-agent --agent cascaded:... --port 8765`, then `--agent remote:url=http://host:8765`.
The server takes only JSON posts (a web page's form post cannot make it spend anything), answers on a
loopback address only to requests addressed to it there (no DNS rebinding), and can require a bearer
token, which the client reads from an environment variable (`remote:url=...,token_env=NAME`).
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import shlex
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from speechrole.agents.base import AGENTS, Agent, Exchange, TurnRequest
from speechrole.audio import load_audio, write_wav
from speechrole.schema import AgentReply, Language, Mode, Role, Sample, Turn

CONTRACT_VERSION = "speechrole.remote-agent/1"


def _b64_file(path: Path | None) -> str | None:
    return base64.b64encode(path.read_bytes()).decode("ascii") if path and path.is_file() else None


def request_json(request: TurnRequest, send_reference: bool = False) -> dict[str, Any]:
    """The wire form of a turn request (see docs/remote-agent.md)."""
    role, sample = request.role, request.sample
    reference = Path(role.reference_audio) if send_reference and role.reference_audio else None
    return {
        "contract": CONTRACT_VERSION,
        "op": "reply",
        "role": {
            "id": role.id,
            "name": role.name,
            "work": role.work,
            "language": role.language.value,
            "profile": role.profile,
            "reference_transcript": role.reference_transcript,
            "reference_audio_base64": _b64_file(reference),
        },
        "sample": {
            "key": sample.key,
            "mode": sample.mode.value,
            "index": sample.index,
            "system_prompt": sample.system_prompt,
            "context": sample.context,
            "category": sample.category,
        },
        "turn": request.turn,
        "history": [{"user": e.user, "assistant": e.assistant} for e in request.history],
        "user": {"text": request.user_text, "audio_base64": _b64_file(request.user_audio)},
    }


def apply_response(data: Any, request: TurnRequest, started: float) -> AgentReply:
    """Check a remote answer and write its audio where the run expects it."""
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not data.get("audio_base64"):
        raise RuntimeError("the remote agent's answer needs 'text' and 'audio_base64'")
    tmp = request.audio_out.with_name(f".{request.audio_out.name}.remote")
    request.audio_out.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(base64.b64decode(data["audio_base64"]))
    try:
        audio, rate = load_audio(tmp)
    finally:
        tmp.unlink(missing_ok=True)
    write_wav(request.audio_out, audio.mean(axis=1), rate)
    latency = {k: float(v) for k, v in (data.get("latency_s") or {}).items() if isinstance(v, int | float)}
    latency["round_trip"] = round(time.perf_counter() - started, 4)
    intermediates = {k: str(v) for k, v in (data.get("intermediates") or {}).items()}
    return AgentReply(
        text=data["text"].strip(),
        audio=str(request.audio_out),
        intermediates=intermediates,
        latency_s=latency,
    )


class _TransientError(Exception):
    pass


class RemoteHTTPAgent(Agent):
    thread_safe = True

    def __init__(
        self,
        url: str = "",
        timeout_s: float | str = 300.0,
        send_reference: bool | str = False,
        token_env: str = "",
    ) -> None:
        if not url:
            raise ValueError("the remote agent needs its address: remote:url=http://host:port")
        self.url = url.rstrip("/")
        self.send_reference = str(send_reference).lower() in {"1", "true", "yes"}
        self.token_env = token_env
        headers = {}
        if token_env:  # the secret itself never appears in a spec, a flag or a file
            token = os.environ.get(token_env, "").strip()
            if not token:
                raise ValueError(f"the remote agent's token: environment variable {token_env} is not set")
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(timeout=float(timeout_s), headers=headers)
        try:
            resp = self._http.get(f"{self.url}/info")
            if resp.status_code == 401:
                raise RuntimeError(
                    f"remote agent at {self.url} wants a bearer token: "
                    + (f"{token_env} does not hold it" if token_env else "give token_env=NAME_OF_VARIABLE")
                )
            resp.raise_for_status()
            self.info = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RuntimeError(f"remote agent at {self.url} is not answering /info: {exc}") from None

    def reply(self, request: TurnRequest) -> AgentReply:
        started = time.perf_counter()
        payload = request_json(request, self.send_reference)
        for attempt in Retrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential_jitter(1, 10),
            retry=retry_if_exception_type(_TransientError),
            reraise=True,
        ):
            with attempt:
                try:
                    resp = self._http.post(f"{self.url}/reply", json=payload)
                except httpx.TransportError as exc:
                    raise _TransientError(str(exc)) from None
                if resp.status_code >= 500:
                    raise _TransientError(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise RuntimeError(f"remote agent refused the turn (HTTP {resp.status_code}): {resp.text[:200]}")
        return apply_response(resp.json(), request, started)

    def describe(self) -> dict[str, Any]:
        described = {"agent": "remote", "url": self.url, "contract": CONTRACT_VERSION, "remote": self.info}
        return described | ({"token_env": self.token_env} if self.token_env else {})

    def close(self) -> None:
        self._http.close()


class RemoteStdioAgent(Agent):
    """A subprocess that reads one JSON request per line on stdin and writes one JSON answer per line."""

    def __init__(
        self, command: str = "", timeout_s: float | str = 300.0, send_reference: bool | str = False
    ) -> None:
        if not command:
            raise ValueError("the stdio agent needs its command: remote-stdio:command=python my_agent.py")
        self.command, self.timeout_s = command, float(timeout_s)
        self.send_reference = str(send_reference).lower() in {"1", "true", "yes"}
        self._proc = subprocess.Popen(
            shlex.split(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._lock = threading.Lock()
        self.info = self._ask({"contract": CONTRACT_VERSION, "op": "info"})

    def _ask(self, message: dict[str, Any]) -> Any:
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"the agent process {self.command!r} has exited ({self._proc.returncode})")
            self._proc.stdin.write(json.dumps(message, ensure_ascii=False) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the agent process {self.command!r} closed its output")
        return json.loads(line)

    def reply(self, request: TurnRequest) -> AgentReply:
        started = time.perf_counter()
        return apply_response(self._ask(request_json(request, self.send_reference)), request, started)

    def describe(self) -> dict[str, Any]:
        return {
            "agent": "remote-stdio",
            "command": self.command,
            "contract": CONTRACT_VERSION,
            "remote": self.info,
        }

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()  # type: ignore[union-attr]
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()


@AGENTS.register(
    "remote", summary="an agent served over HTTP (docs/remote-agent.md): remote:url=http://host:8765"
)
def _remote(**options: Any) -> Agent:
    return RemoteHTTPAgent(**options)


@AGENTS.register(
    "remote-stdio", summary="an agent process speaking JSON lines: remote-stdio:command=python agent.py"
)
def _remote_stdio(**options: Any) -> Agent:
    return RemoteStdioAgent(**options)


# --- the server side -------------------------------------------------------------------------------


def turn_request(data: dict[str, Any], folder: Path) -> TurnRequest:
    """Rebuild a turn request from its wire form, with its audio in `folder`."""
    r, s, user = data["role"], data["sample"], data["user"]
    reference = None
    if r.get("reference_audio_base64"):
        reference = folder / "reference.wav"
        reference.write_bytes(base64.b64decode(r["reference_audio_base64"]))
    role = Role(
        id=r["id"],
        name=r.get("name") or r["id"],
        work=r.get("work", ""),
        language=Language(r.get("language", "en")),
        profile=r.get("profile", ""),
        reference_audio=str(reference) if reference else None,
        reference_transcript=r.get("reference_transcript"),
    )
    audio = None
    if user.get("audio_base64"):
        audio = folder / "user.wav"
        audio.write_bytes(base64.b64decode(user["audio_base64"]))
    sample = Sample(
        role=role.id,
        mode=Mode(s.get("mode", "single")),
        index=int(s.get("index", 0)),
        turns=(Turn(user_text=user.get("text", ""), reference_text=""),),
        system_prompt=s.get("system_prompt", ""),
        context=s.get("context", ""),
        category=s.get("category", ""),
    )
    history = tuple(Exchange(h["user"], h["assistant"]) for h in data.get("history", []))
    return TurnRequest(
        role, sample, int(data.get("turn", 0)), history, user.get("text", ""), audio, folder / "answer.wav"
    )


def answer(agent: Agent, data: dict[str, Any]) -> dict[str, Any]:
    """Handle one wire request (`op` info or reply) with a local agent."""
    if data.get("op") == "info":
        return {"contract": CONTRACT_VERSION, "description": agent.describe()}
    with tempfile.TemporaryDirectory(prefix="speechrole-remote-") as tmp:
        request = turn_request(data, Path(tmp))
        reply = agent.reply(request)
        return {
            "text": reply.text,
            "audio_base64": _b64_file(Path(reply.audio or request.audio_out)),
            "intermediates": reply.intermediates,
            "latency_s": reply.latency_s,
        }


_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def serve_agent(
    agent: Agent, host: str = "127.0.0.1", port: int = 8765, token: str | None = None
) -> ThreadingHTTPServer:
    """An HTTP server for `agent` (GET /info, POST /reply); call `serve_forever()` on it.

    POST bodies must be `Content-Type: application/json` (415 otherwise), so that no web page's form
    post can make the agent work. With `token`, every request needs `Authorization: Bearer <token>`
    (401 otherwise). Bound to a loopback address, it answers only requests whose Host header is a
    loopback name at its port (400 otherwise), so a page that rebinds its DNS name to 127.0.0.1 cannot
    reach it."""
    from speechrole.view import host_header_allowed, host_name, is_loopback

    if token is not None and not token.strip():
        raise ValueError("serve_agent: the token is empty")
    expected = token.strip().encode() if token else None
    lock = threading.Lock() if not agent.thread_safe else None
    local_names = _LOOPBACK_NAMES | {host_name(host)} if is_loopback(host) else None

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            body = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _refused(self) -> bool:
            """Answer and return True when the request is not addressed to us or not authorised."""
            # the name alone (any port): a client behind `ssh -L 9000:127.0.0.1:8765` says port 9000
            if local_names is not None and not host_header_allowed(
                self.headers.get("Host", ""), local_names, None
            ):
                self._send(400, {"error": "the Host header does not name this server"})
                return True
            scheme, _, given = self.headers.get("Authorization", "").strip().partition(" ")
            if expected is not None and not (
                scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)
            ):
                self._send(401, {"error": "a bearer token is required"}, {"WWW-Authenticate": "Bearer"})
                return True
            return False

        def do_GET(self) -> None:
            if self._refused():
                return
            if self.path.rstrip("/") == "/info":
                self._send(200, answer(agent, {"op": "info"}))
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            if self._refused():
                return
            if self.path.rstrip("/") != "/reply":
                self._send(404, {"error": f"no route {self.path}"})
                return
            if self.headers.get_content_type() != "application/json":
                self._send(415, {"error": "POST bodies must be Content-Type: application/json"})
                return
            try:
                data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            except ValueError:
                self._send(400, {"error": "the body is not JSON"})
                return
            try:
                if lock is None:
                    result = answer(agent, data)
                else:
                    with lock:
                        result = answer(agent, data)
            except (KeyError, ValueError, TypeError) as exc:
                self._send(400, {"error": f"bad request: {exc}"})
                return
            except Exception as exc:
                self._send(500, {"error": f"{type(exc).__name__}: {exc}"})
                return
            self._send(200, result)

    return ThreadingHTTPServer((host, port), Handler)
