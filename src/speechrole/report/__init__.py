"""The HTML report: one self-contained file (opened from disk, offline) with the leaderboard and every
score table, charts (a radar of the 8 metrics, bars with intervals by group, language and role), and
a drill-down per sample to read and listen to.

Every piece of text from models, data or judges reaches the page through Jinja2's autoescaping, so an
answer holding markup shows as text; the page itself runs no script.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from speechrole.fileio import write_text_atomic
from speechrole.report.collect import CLIP_MEASURES, RunView, collect_run, relative_links
from speechrole.schema import METRIC_ABBREV, METRICS, Benchmark


@cache
def environment() -> Any:
    """The Jinja2 environment of the report and the viewer (autoescaping on, undefined names fail)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("speechrole.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v, digits=2: "–" if v is None else f"{v:.{digits}f}"
    env.globals.update(metrics=METRICS, abbrev=METRIC_ABBREV, clip_measures=CLIP_MEASURES)
    return env


def render_report(runs: list[RunView], score: Any, title: str) -> str:
    from speechrole.report.charts import breakdown_bars, group_bars, radar
    from speechrole.score.render import all_tables

    return (
        environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            runs=runs,
            tables=all_tables(score),
            radar=radar(score),
            bar_charts=group_bars(score) + breakdown_bars(score),
        )
    )


def build_report(
    runs: list[Path],
    out: Path,
    *,
    bench: Benchmark | None = None,
    score: Any = None,
    embed_audio: bool = False,
) -> Path:
    """Write the report of `runs` to `out` (scored here unless `score` is given); returns its path."""
    from speechrole.run import Run, common_benchmark
    from speechrole.score import score_systems

    bench = bench or common_benchmark(runs)
    opened = [Run.open(path, bench=bench) for path in runs]  # each run read once, for scores and views
    systems = [run.systems() for run in opened]
    if score is None:
        flat = [s for found in systems for s in found]
        score = score_systems(flat, bench=bench, by=("mode", "language", "role"))
    link = relative_links(Path(out), embed_audio)
    views = [
        collect_run(run, system, link, f"run{i}" if len(found) == 1 else f"run{i}-{k}")
        for i, (run, found) in enumerate(zip(opened, systems, strict=True), 1)
        for k, system in enumerate(found, 1)
    ]
    title = f"speechrole report: {', '.join(v.name for v in views)} on {bench.name}"
    write_text_atomic(Path(out), render_report(views, score, title))
    return Path(out)


__all__ = ["build_report", "collect_run", "environment", "render_report"]
