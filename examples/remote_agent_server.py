"""A tiny remote agent speaking speechrole's remote-agent contract (docs/remote-agent.md), with nothing
but the standard library and espeak-ng: it answers every question with the same kind of line.

Run it in any environment, then point speechrole at it:

    python examples/remote_agent_server.py --port 8765
    speechrole generate --bench BENCH --agent remote:url=http://127.0.0.1:8765 --run-dir runs/echo

Replace `answer_text` (and the voice) with your own model to evaluate it.
"""

import argparse
import base64
import json
import subprocess
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def answer_text(request: dict) -> str:
    role, question = request["role"], request["user"]["text"]
    return f"I am {role['name']}, and you ask me: {question} A fine question, and I shall think on it."


def speak(text: str, language: str) -> bytes:
    voice = "cmn-latn-pinyin" if language == "zh" else "en-us+m3"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "answer.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True)
        return out.read_bytes()


class Handler(BaseHTTPRequestHandler):
    def _send(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # /info
        self._send(
            {
                "contract": "speechrole.remote-agent/1",
                "description": {"agent": "example echo", "tts": "espeak-ng"},
            }
        )

    def do_POST(self) -> None:  # /reply
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = answer_text(request)
        audio = speak(text, request["role"]["language"])
        self._send(
            {
                "text": text,
                "audio_base64": base64.b64encode(audio).decode(),
                "intermediates": {},
                "latency_s": {},
            }
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
