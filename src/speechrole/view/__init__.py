"""`speechrole view`: a local web app over one or many runs — scores and charts, a sample table to
filter and sort (role, mode, language, flags, score gap on a metric), each sample to read and listen
to, and a blind A/B listening mode in which a person rates the agent against the reference on the 8
metrics (stored in `RUNS_DIR/ratings.sqlite`).

The server binds to 127.0.0.1 by default, renders every page with autoescaping, serves only the audio
files that the runs' own views name (so no path from data or from a URL reaches any other file), and
accepts a rating only for a task it created.
"""

from __future__ import annotations

import random
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
    from speechrole.bench import load_benchmark
    from speechrole.score import load_systems, score_systems
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
    loaded: dict[str, Benchmark] = {}
    runs: dict[str, RunView] = {}
    benches: dict[str, Benchmark] = {}
    groups: dict[str, list[Path]] = {}
    from speechrole.score import recorded_benchmarks

    for run_dir in discover_runs(runs_dir):
        run_id = run_dir.relative_to(runs_dir).as_posix() or "."
        specs = recorded_benchmarks([run_dir])
        if len(specs) != 1:
            problems.append(
                Problem(str(run_dir / "run.json"), "benchmark.spec", "no benchmark recorded; skipped")
            )
            continue
        spec = next(iter(specs))
        try:
            if spec not in loaded:
                loaded[spec] = load_benchmark(spec)[0]
        except DataError as exc:
            problems.append(exc.problem)
            continue
        runs[run_id] = collect_run(run_dir, loaded[spec], link, run_id=run_id)
        benches[run_id] = loaded[spec]
        groups.setdefault(spec, []).append(run_dir)
    scores: list[tuple[str, ScoreReport]] = []
    for spec, dirs in groups.items():
        report = score_systems(load_systems(dirs), bench=loaded[spec], by=("mode", "language", "role"))
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


def create_app(runs_dir: Path, *, default_rater: str = "") -> Any:
    """The Starlette application over `runs_dir`."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    from speechrole.report import environment
    from speechrole.report.charts import breakdown_bars, group_bars, radar
    from speechrole.score.render import all_tables

    lib = load_library(Path(runs_dir))
    store = RatingStore(lib.runs_dir / FILENAME)
    env = environment()

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
            return page("view_rate.html.j2", title="blind A/B rating", rater="", task=None, s=None, saved=0)
        task = _next_task(rater, request.query_params.get("run", ""))
        found = lib.sample(task.run, task.sample) if task else None
        return page(
            "view_rate.html.j2",
            title="blind A/B rating",
            rater=rater,
            task=task,
            s=found[1] if found else None,
            saved=len(store.rated(rater)),
        )

    async def _save(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            return PlainTextResponse("cross-origin rating refused", status_code=403)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
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
    app = Starlette(routes=routes)
    app.state.library, app.state.store = lib, store
    return app


def serve(runs_dir: Path, host: str = "127.0.0.1", port: int = 8766, rater: str = "") -> None:
    import uvicorn

    uvicorn.run(create_app(runs_dir, default_rater=rater), host=host, port=port, log_level="warning")


__all__ = ["Library", "create_app", "discover_runs", "load_library", "serve"]
