"""The local servers stay local: the viewer answers only requests addressed to its own loopback name
and port (DNS rebinding), enters a rating only from a POST that carries its session token, and warns
when it listens beyond loopback; `serve-agent` takes only JSON posts and, when given a token, only
requests that carry it. Everything over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from speechrole.agents.base import create_agent
from speechrole.agents.remote import serve_agent
from speechrole.schema import METRICS
from tests.factory import make_benchmark, make_outputs
from tests.fakes import FakeAgent

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

TOKEN_RE = re.compile(r'name="token" value="([^"]+)"')
TASK_RE = re.compile(r'name="task" value="([0-9a-f]+)"')


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("local")
    bench = make_benchmark(root / "bench")
    run = make_outputs(root / "runs" / "alpha", bench)
    (run / "run.json").write_text(json.dumps({"benchmark": {"spec": str(bench)}}), encoding="utf-8")
    return root / "runs"


class _Viewer:
    """A viewer app served by uvicorn on a socket bound to port 0 (the port chosen at start)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> _Viewer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.store.close()


@pytest.fixture(scope="module")
def viewer(runs: Path) -> Iterator[_Viewer]:
    from speechrole.view import create_app

    with _Viewer(create_app(runs)) as running:
        yield running


def _ratings(runs: Path) -> int:
    with sqlite3.connect(runs / "ratings.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0])


def test_viewer_refuses_foreign_host_header(viewer: _Viewer) -> None:
    port = viewer.port
    with httpx.Client(base_url=viewer.url) as client:
        for own in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
            assert client.get("/", headers={"Host": own}).status_code == 200, own
        foreign = (
            f"evil.example:{port}",  # a page that rebound its DNS name to 127.0.0.1
            "evil.example",
            f"127.0.0.1:{port + 1}",  # the right name at another port
            "127.0.0.1",  # no port: 80
            f"localhost.:{port}",
            f"127.0.0.1:{port}.evil.example",
            f"[::1]x:{port}",
            "",
        )
        for host in foreign:
            for path in ("/", "/samples", "/rate?rater=x", "/media/m0/x.wav"):
                refused = client.get(path, headers={"Host": host})
                assert refused.status_code == 400 and "Host" in refused.text, (host, path)
            assert client.post("/rate", headers={"Host": host}, data={"x": "1"}).status_code == 400


def test_viewer_host_check_follows_its_names_and_port() -> None:
    from speechrole.view import LOOPBACK_NAMES, host_header_allowed

    names = LOOPBACK_NAMES | {"viewer.lan", "localhost:9000"}  # a LAN name; a tunnel's front end
    assert host_header_allowed("viewer.lan:8766", names, 8766)
    assert host_header_allowed("localhost:9000", names, 8766)
    assert not host_header_allowed("localhost:9001", names, 8766)
    assert not host_header_allowed("viewer.lan:8767", names, 8766)
    assert host_header_allowed("localhost", names, 80) and not host_header_allowed("localhost", names, 8766)
    assert host_header_allowed("[::1]:5", names, None) and not host_header_allowed("[::1]", names, 8766)
    assert not host_header_allowed("other.lan:8766", names, 8766)


def test_rating_needs_post_and_session_token(runs: Path, viewer: _Viewer) -> None:
    with httpx.Client(base_url=viewer.url) as client:
        page = client.get("/rate", params={"rater": "csrf"}).text
        task, token = TASK_RE.search(page), TOKEN_RE.search(page)
        assert task and token and len(token.group(1)) >= 32
        form = {"task": task.group(1), "rater": "csrf"}
        form |= {f"{side}_{m}": "5" for m in METRICS for side in ("a", "b")}
        before = _ratings(runs)
        # GET with every field of a rating writes nothing
        assert client.get("/rate", params=form | {"token": token.group(1)}).status_code == 200
        assert _ratings(runs) == before
        # a POST without the token, or with a wrong one (a form on another site), is refused
        for forged in (form, form | {"token": "guess"}, form | {"token": ""}):
            refused = client.post("/rate", data=forged)
            assert refused.status_code == 403 and "token" in refused.text
        assert _ratings(runs) == before
        # the page's own form, token included, is stored
        assert client.post("/rate", data=form | {"token": token.group(1)}).status_code == 303
        assert _ratings(runs) == before + len(METRICS)


def test_viewer_session_token_is_new_at_each_start(runs: Path) -> None:
    from speechrole.view import create_app

    first, second = create_app(runs), create_app(runs)
    try:
        assert first.state.session_token != second.state.session_token
    finally:
        first.state.store.close()
        second.state.store.close()


def test_viewer_warns_when_listening_beyond_loopback() -> None:
    from speechrole.view import exposure_warning, is_loopback

    for local in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]", "::ffff:127.0.0.1"):
        assert is_loopback(local) and exposure_warning(local) is None, local
    for exposed in ("0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "myhost.example"):
        warning = exposure_warning(exposed)
        assert not is_loopback(exposed) and warning and exposed in warning, exposed


def test_serve_on_port_0_reports_its_address_and_refuses_foreign_hosts(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from speechrole.view import serve

    started: list[Any] = []

    class Recorded(uvicorn.Server):  # type: ignore[misc, name-defined]
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            started.append(self)

    monkeypatch.setattr(uvicorn, "Server", Recorded)
    ready: list[str] = []
    thread = threading.Thread(
        target=serve, args=(runs, "127.0.0.1", 0), kwargs={"on_ready": ready.append}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not (started and started[0].started) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert ready and re.fullmatch(r"http://127\.0\.0\.1:\d+", ready[0]) and not ready[0].endswith(":0")
        port = int(ready[0].rsplit(":", 1)[1])
        assert httpx.get(ready[0] + "/").status_code == 200
        assert httpx.get(ready[0] + "/", headers={"Host": f"localhost:{port}"}).status_code == 200
        assert httpx.get(ready[0] + "/", headers={"Host": f"evil.example:{port}"}).status_code == 400
    finally:
        started[0].should_exit = True
        thread.join(timeout=10)


# --- serve-agent ---------------------------------------------------------------------------------


class _AgentServer:
    def __init__(self, token: str | None = None) -> None:
        self.agent = FakeAgent()
        self.server = serve_agent(self.agent, "127.0.0.1", 0, token=token)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> _AgentServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_serve_agent_refuses_form_posts() -> None:
    with _AgentServer() as served, httpx.Client(base_url=served.url) as client:
        for content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "text/plain; charset=utf-8",
        ):
            body = b'{"op": "reply"}'
            refused = client.post("/reply", content=body, headers={"Content-Type": content_type})
            assert refused.status_code == 415, content_type
        assert client.post("/reply", content=b"{}").status_code == 415  # no Content-Type at all
        assert served.agent.calls == []
        # a JSON post passes the gate (and this one fails for what it lacks, not for its type)
        passed = client.post("/reply", json={"op": "reply"})
        assert passed.status_code == 400 and "bad request" in passed.json()["error"]
        passed = client.post(
            "/reply", content=b"{}", headers={"Content-Type": "Application/JSON; charset=utf-8"}
        )
        assert passed.status_code == 400 and "bad request" in passed.json()["error"]


def test_serve_agent_requires_bearer_token_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cret-token-for-the-test"
    with _AgentServer(token=secret) as served, httpx.Client(base_url=served.url) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": secret}):
            refused = client.get("/info", headers=headers)
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
            assert client.post("/reply", json={"op": "reply"}, headers=headers).status_code == 401
        good = {"Authorization": f"Bearer {secret}"}
        assert client.get("/info", headers=good).json()["description"]["agent"] == "fake"
        assert served.agent.calls == []

        # the client reads the token from the environment variable its spec names
        monkeypatch.setenv("SPEECHROLE_TEST_AGENT_TOKEN", secret)
        agent = create_agent(f"remote:url={served.url},token_env=SPEECHROLE_TEST_AGENT_TOKEN")
        try:
            described = agent.describe()
            assert described["remote"]["description"]["agent"] == "fake"
            assert secret not in json.dumps(described)
        finally:
            agent.close()
        with pytest.raises(RuntimeError, match="token_env"):
            create_agent(f"remote:url={served.url}")
        monkeypatch.setenv("SPEECHROLE_TEST_AGENT_TOKEN", "not-it")
        with pytest.raises(RuntimeError, match="SPEECHROLE_TEST_AGENT_TOKEN"):
            create_agent(f"remote:url={served.url},token_env=SPEECHROLE_TEST_AGENT_TOKEN")
        monkeypatch.delenv("SPEECHROLE_TEST_AGENT_TOKEN")
        with pytest.raises(ValueError, match="SPEECHROLE_TEST_AGENT_TOKEN"):
            create_agent(f"remote:url={served.url},token_env=SPEECHROLE_TEST_AGENT_TOKEN")
    with pytest.raises(ValueError, match="empty"):
        serve_agent(FakeAgent(), "127.0.0.1", 0, token=" ")


def test_serve_agent_refuses_foreign_host_header_on_loopback() -> None:
    with _AgentServer() as served, httpx.Client(base_url=served.url) as client:
        for host in (f"evil.example:{served.port}", "evil.example", f"localhost.:{served.port}"):
            assert client.get("/info", headers={"Host": host}).status_code == 400, host
            assert client.post("/reply", json={}, headers={"Host": host}).status_code == 400, host
        # any port: a client behind `ssh -L 9000:127.0.0.1:PORT` names the tunnel's port
        for host in (f"127.0.0.1:{served.port}", "localhost:9000", "[::1]:9000"):
            assert client.get("/info", headers={"Host": host}).status_code == 200, host
        assert served.agent.calls == []
