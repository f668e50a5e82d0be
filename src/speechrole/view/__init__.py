"""`speechrole view`: a local web app over one or many runs — scores and charts, a sample table to
filter and sort (role, mode, language, flags, score gap on a metric), each sample to read and listen
to, and a blind A/B listening mode in which a person rates the agent against the reference on the 8
metrics (stored in `RUNS_DIR/ratings.sqlite`).

The server binds to 127.0.0.1 by default, answers only requests addressed to its own name and port
(so a web page that rebinds its DNS name to 127.0.0.1 gets nothing), renders every page with
autoescaping, serves only the audio files that the runs' own views name (so no path from data or from
a URL reaches any other file), and accepts a rating only by POST, with the session's token, for a task
it created.
"""

from __future__ import annotations

import hmac
import ipaddress
import random
import secrets
import socket
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from speechrole.problems import DataError, Problem
from speechrole.report.collect import Clip, RunView, SampleView, collect_run
from speechrole.schema import METRICS, Benchmark
from speechrole.view.ratings import FILENAME, RatingStore

SORTS = {
    "key": ("sample", False),
    "overall": ("overall score, lowest first", False),
    "-overall": ("overall score, highest first", True),
    "gap": ("gap on the metric, agent furthest below the reference first", False),
    "-gap": ("gap on the metric, agent furthest above the reference first", True),
    "flags": ("most flags first", True),
}


def discover_runs(runs_dir: Path) -> list[Path]:
    """Run directories (a `run.json` and `model_output/`) at most three levels below `runs_dir`."""
    found = []
    for depth in range(0, 4):
        for run_json in sorted(runs_dir.glob("/".join(["*"] * depth + ["run.json"]))):
            if (run_json.parent / "model_output").is_dir():
                found.append(run_json.parent)
    return found


@dataclass
class Library:
    """The runs the viewer shows, collected once at start (restart the viewer to see new results)."""

    runs_dir: Path
    runs: dict[str, RunView]
    benches: dict[str, Benchmark]  # run id -> its benchmark
    scores: list[tuple[str, Any]]  # (benchmark name, ScoreReport of its runs)
    media: dict[str, Path]  # media id -> a file the views name
    problems: list[Problem]

    def sample(self, run: str, key: str) -> tuple[RunView, SampleView] | None:
        view = self.runs.get(run)
        found = view.sample(key) if view else None
        return (view, found) if view and found else None


def load_library(runs_dir: Path) -> Library:
    """Every run under `runs_dir`, read through `speechrole.run.Run` (one view per judge configuration),
    and the score of each benchmark's runs, by the same functions as `speechrole score` and the report."""
    from speechrole.run import Run
    from speechrole.score import score_systems
    from speechrole.score.aggregate import ScoreReport

    runs_dir = Path(runs_dir).absolute()
    media: dict[str, Path] = {}

    def link(path: Path) -> tuple[str | None, bool]:
        if not path.is_file():
            return None, True
        media_id = f"m{len(media)}"
        media[media_id] = path
        return f"/media/{media_id}/{quote(path.name)}", False

    problems: list[Problem] = []
    loaded: dict[str, Benchmark] = {}  # benchmark spec -> the benchmark, loaded once
    runs: dict[str, RunView] = {}
    benches: dict[str, Benchmark] = {}
    groups: dict[str, list] = {}  # benchmark spec -> systems of its runs
    for run_dir in discover_runs(runs_dir):
        run_id = run_dir.relative_to(runs_dir).as_posix() or "."
        run = Run.open(run_dir)
        spec = run.bench_spec or ""
        try:
            if spec in loaded:
                run = Run.open(run_dir, bench=loaded[spec])
            loaded[spec] = run.bench
            systems = run.systems()
        except DataError as exc:
            problems.append(exc.problem)
            continue
        for i, system in enumerate(systems, 1):
            view_id = run_id if len(systems) == 1 else f"{run_id}#{i}"
            runs[view_id] = collect_run(run, system, link, view_id)
            benches[view_id] = loaded[spec]
        groups.setdefault(spec, []).extend(systems)
    scores: list[tuple[str, ScoreReport]] = []
    for spec, systems in groups.items():
        report = score_systems(systems, bench=loaded[spec], by=("mode", "language", "role"))
        scores.append((loaded[spec].name, report))
    return Library(runs_dir, runs, benches, scores, media, problems)


def _rows(lib: Library, q: dict[str, str]) -> list[tuple[RunView, SampleView]]:
    rows = [
        (run, s)
        for run in lib.runs.values()
        for s in run.samples
        if (not q.get("run") or run.id == q["run"])
        and (not q.get("role") or s.role == q["role"])
        and (not q.get("mode") or s.mode == q["mode"])
        and (not q.get("language") or s.language == q["language"])
        and (not q.get("flag") or any(f.startswith(q["flag"]) for f in s.flags))
    ]
    sort, metric = q.get("sort") or "key", q.get("metric") or METRICS[0]
    missing = float("inf")

    def key(row: tuple[RunView, SampleView]) -> Any:
        s = row[1]
        if sort in ("overall", "-overall"):
            value = s.overall
        elif sort in ("gap", "-gap"):
            value = s.gaps.get(metric)
        elif sort == "flags":
            value = float(len(s.flags))
        else:
            return (row[0].id, s.key)
        return missing if value is None else (-value if SORTS[sort][1] else value)

    return sorted(rows, key=key)


# --- the web app -----------------------------------------------------------------------------------

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def is_loopback(host: str) -> bool:
    """Whether a listening address stays on this machine: `localhost`, 127.0.0.0/8 or ::1."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def exposure_warning(host: str) -> str | None:
    """The warning to print when the viewer listens beyond loopback; None when it does not."""
    if is_loopback(host):
        return None
    return (
        f"warning: the viewer listens on {host}, beyond this machine: anyone who can reach that address can "
        "read the runs (answers, audio, judge reasons) and enter ratings. Keep the default 127.0.0.1 unless "
        "you mean to share it on a trusted network."
    )


def host_name(host: str) -> str:
    """A listening address as it appears in a Host header (IPv6 in brackets, lower case); a
    `name:port` stays as it is."""
    host = host.strip().lower()
    if host.count(":") > 1 and not host.startswith("["):
        return f"[{host}]"
    return host


def host_header_allowed(header: str, names: Collection[str], port: int | None) -> bool:
    """Whether a Host header names this server: one of `names` at `port` (None: any port; no port in
    the header means 80, as a browser omits it there), or exactly a `name:port` entry of `names` (the
    front end of a tunnel, e.g. `localhost:9000` for `ssh -L 9000:127.0.0.1:8766`)."""
    header = header.strip().lower()
    if header in names and ("]:" in header if header.startswith("[") else ":" in header):
        return True  # a name:port entry
    if header.startswith("["):
        name, bracket, rest = header.partition("]")
        name += bracket
        if not bracket or (rest and not rest.startswith(":")):
            return False
        port_text = rest[1:] if rest else ""
    else:
        name, _, port_text = header.partition(":")
    if name not in names:
        return False
    if port is None:
        return True
    if not port_text:
        return port == 80
    return port_text.isdigit() and int(port_text) == port


class HostGuard:
    """ASGI middleware: refuse (400) a request whose Host header is not one of this server's names at
    the port it actually listens on (read from the connection, so a port chosen at start works).

    Starlette's TrustedHostMiddleware ignores the port; this one checks it too, so that only the
    address a browser sends for this very server passes (a tunnel's front end passes as a `name:port`
    entry of `names`)."""

    def __init__(self, app: Any, names: Collection[str] = LOOPBACK_NAMES) -> None:
        self.app, self.names = app, frozenset(host_name(n) for n in names)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            hosts = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"]
            server = scope.get("server")
            port = server[1] if server else None
            if len(hosts) != 1 or not host_header_allowed(hosts[0], self.names, port):
                from starlette.responses import PlainTextResponse

                shown = hosts[0][:100] if hosts else "(none)"
                message = f"refused: Host {shown!r} is not this viewer's address; open it at its own address"
                await PlainTextResponse(message, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(runs_dir: Path, *, default_rater: str = "", allowed_hosts: Collection[str] = ()) -> Any:
    """The Starlette application over `runs_dir`. It answers only requests whose Host header is a
    loopback name (127.0.0.1, localhost, [::1]) or one of `allowed_hosts`, at the port it listens on."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    from speechrole.report import environment
    from speechrole.report.charts import breakdown_bars, group_bars, radar
    from speechrole.score.render import all_tables

    lib = load_library(Path(runs_dir))
    store = RatingStore(lib.runs_dir / FILENAME)
    env = environment()
    # A page on another site cannot read the rating form, so it cannot learn this token, which a
    # rating must carry: no cross-site form post can enter a rating.
    session_token = secrets.token_urlsafe(32)

    def page(template: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(**context))

    async def index(request: Request) -> Response:
        sections = [
            {
                "name": name,
                "tables": all_tables(report),
                "radar": radar(report),
                "bars": group_bars(report) + breakdown_bars(report),
            }
            for name, report in lib.scores
        ]
        return page("view_index.html.j2", title="speechrole view", lib=lib, sections=sections)

    async def samples(request: Request) -> Response:
        q = {k: v for k, v in request.query_params.items() if v}
        if q.get("sort", "key") not in SORTS or q.get("metric", METRICS[0]) not in METRICS:
            return PlainTextResponse("unknown sort or metric", status_code=400)
        rows = _rows(lib, q)
        roles = sorted({s.role for run in lib.runs.values() for s in run.samples})
        flags = ["unscored", "order-inconsistent", "turn", "data defect"]
        return page(
            "view_samples.html.j2",
            title="samples",
            lib=lib,
            rows=rows,
            q=q,
            roles=roles,
            flags=flags,
            sorts=SORTS,
            metric=q.get("metric", METRICS[0]),
        )

    async def sample(request: Request) -> Response:
        found = lib.sample(request.query_params.get("run", ""), request.query_params.get("key", ""))
        if found is None:
            return PlainTextResponse("no such run or sample", status_code=404)
        run, s = found
        others = [r for r in lib.runs.values() if r.id != run.id and r.sample(s.key)]
        return page("view_sample.html.j2", title=f"{s.key} · {run.name}", run=run, s=s, others=others)

    async def media(request: Request) -> Response:
        path = lib.media.get(request.path_params["media_id"])
        if path is None or request.path_params["name"] != path.name:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, media_type="audio/wav")

    def _next_task(rater: str, run_filter: str) -> Any:
        done = store.rated(rater)
        todo = [
            (run.id, s.key)
            for run in lib.runs.values()
            if not run_filter or run.id == run_filter
            for s in run.samples
            if (run.id, s.key) not in done and all(t.agent.path and t.reference.path for t in s.turns)
        ]
        if not todo:
            return None
        run_id, key = random.choice(todo)
        return store.new_task(rater, run_id, key, random.choice(("agent", "reference")))

    async def rate(request: Request) -> Response:
        if request.method == "POST":
            return await _save(request)
        rater = request.query_params.get("rater", default_rater).strip()
        if not rater:
            return page(
                "view_rate.html.j2", title="blind A/B rating", rater="", task=None, s=None, saved=0, token=""
            )
        task = _next_task(rater, request.query_params.get("run", ""))
        found = lib.sample(task.run, task.sample) if task else None
        return page(
            "view_rate.html.j2",
            title="blind A/B rating",
            rater=rater,
            task=task,
            s=found[1] if found else None,
            saved=len(store.rated(rater)),
            token=session_token,
        )

    async def _save(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            return PlainTextResponse("cross-origin rating refused", status_code=403)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(form.get("token", "").encode(), session_token.encode()):
            return PlainTextResponse(
                "rating refused: missing or stale session token (reload the rating page)", status_code=403
            )
        task = store.task(form.get("task", ""))
        if task is None or form.get("rater") != task.rater:
            return PlainTextResponse("unknown rating task", status_code=400)
        scores: dict[str, tuple[int, int]] = {}
        try:
            for metric in METRICS:
                a, b = int(form[f"a_{metric}"]), int(form[f"b_{metric}"])
                scores[metric] = (a, b) if task.a_is == "agent" else (b, a)
            store.save(task, scores)
        except (KeyError, ValueError) as exc:
            return PlainTextResponse(f"incomplete rating: {exc}", status_code=400)
        return RedirectResponse("/rate?" + urlencode({"rater": task.rater}), status_code=303)

    async def blind(request: Request) -> Response:
        task = store.task(request.path_params["task"])
        side = request.path_params["side"]
        found = lib.sample(task.run, task.sample) if task else None
        turn = request.path_params["turn"]
        if task is None or found is None or side not in ("A", "B") or turn >= len(found[1].turns):
            return PlainTextResponse("not found", status_code=404)
        which = task.a_is if side == "A" else task.b_is
        clip: Clip = getattr(found[1].turns[turn], which)
        if clip.path is None or not clip.path.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(clip.path, media_type="audio/wav")

    routes = [
        Route("/", index),
        Route("/samples", samples),
        Route("/sample", sample),
        Route("/media/{media_id}/{name}", media),
        Route("/rate", rate, methods=["GET", "POST"]),
        Route("/blind/{task}/{side}/{turn:int}", blind),
    ]
    names = LOOPBACK_NAMES | {host_name(h) for h in allowed_hosts}
    app = Starlette(routes=routes, middleware=[Middleware(HostGuard, names=names)])
    app.state.library, app.state.store, app.state.session_token = lib, store, session_token
    return app


def own_host_names(host: str) -> list[str]:
    """The Host-header name of a listening address, unless it is a wildcard (0.0.0.0, ::), which
    names no host: those are reached by names given as `allowed_hosts`."""
    return [] if host.strip().lower() in _WILDCARDS else [host_name(host)]


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: one the system chooses)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family)


def serve(
    runs_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8766,
    rater: str = "",
    *,
    allowed_hosts: Sequence[str] = (),
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the viewer until interrupted. `on_ready` gets the address once it listens (with the
    port the system chose when `port` is 0)."""
    import uvicorn

    app = create_app(runs_dir, default_rater=rater, allowed_hosts=[*allowed_hosts, *own_host_names(host)])
    sock = listen(host, port)
    if on_ready is not None:
        on_ready(f"http://{host_name(host)}:{sock.getsockname()[1]}")
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


__all__ = [
    "HostGuard",
    "Library",
    "create_app",
    "discover_runs",
    "exposure_warning",
    "host_header_allowed",
    "is_loopback",
    "load_library",
    "serve",
]
