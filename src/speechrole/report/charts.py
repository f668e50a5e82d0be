"""Chart geometry for the report (drawn as inline SVG by the templates, so the page needs no script
and no network): a radar of the 8 judge metrics per system, and bars with their intervals.

Scores are ratios to the reference (1 = as good as the reference), so every chart marks 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from speechrole.schema import GROUPS, METRIC_ABBREV, METRICS
from speechrole.score.aggregate import ALL, Estimate, ScoreReport, Split

#: Colour per system, in order (colour-blind-safe Okabe-Ito palette).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: str  # SVG polygon points


@dataclass(frozen=True)
class Axis:
    label: str
    x: float
    y: float
    lx: float  # label position
    ly: float


@dataclass(frozen=True)
class Radar:
    size: int
    center: float
    rings: list[tuple[float, str]]  # (radius, label)
    axes: list[Axis]
    series: list[Series]


@dataclass(frozen=True)
class Bar:
    label: str
    color: str
    y: float
    width: float  # of the bar, from the axis
    low: float | None  # whisker ends (x), when there is an interval
    high: float | None
    text: str


@dataclass(frozen=True)
class Bars:
    title: str
    width: int
    height: int
    left: float  # x of the axis
    one: float  # x of the value 1
    bars: list[Bar]


def _top(values: list[float]) -> float:
    """The scale's upper end: at least 1.2, rounded up to a tenth above the largest value."""
    return max(1.2, math.ceil(max(values, default=0) * 10 + 0.5) / 10)


def radar(report: ScoreReport, size: int = 360) -> Radar | None:
    """The 8 metric scores of each judged system over all samples."""
    rows = []
    for s in report.systems:
        summary = s.summary(Split())
        if summary is None or not s.n_judgments:
            continue
        rows.append((s.name, {m: summary.metrics[m].score.value for m in METRICS if m in summary.metrics}))
    if not rows:
        return None
    top = _top([v for _, values in rows for v in values.values() if v is not None])
    center, radius = size / 2, size / 2 - 48

    def at(i: int, value: float) -> tuple[float, float]:
        angle = -math.pi / 2 + 2 * math.pi * i / len(METRICS)
        r = radius * value / top
        return center + r * math.cos(angle), center + r * math.sin(angle)

    axes = []
    for i, metric in enumerate(METRICS):
        x, y = at(i, top)
        lx, ly = at(i, top * 1.14)
        axes.append(Axis(METRIC_ABBREV[metric], x, y, lx, ly))
    series = []
    for k, (name, values) in enumerate(rows):
        points = [at(i, values.get(m) or 0.0) for i, m in enumerate(METRICS)]
        series.append(
            Series(name, PALETTE[k % len(PALETTE)], " ".join(f"{x:.1f},{y:.1f}" for x, y in points))
        )
    rings = [(radius * v / top, f"{v:g}") for v in (0.5, 1.0) if v < top] + [(radius, f"{top:g}")]
    return Radar(size, center, rings, axes, series)


def bars(title: str, rows: list[tuple[str, Estimate]], width: int = 560) -> Bars | None:
    """Horizontal bars with interval whiskers; one row per (label, estimate)."""
    rows = [(label, est) for label, est in rows if est.value is not None]
    if not rows:
        return None
    top = _top([max(est.value or 0.0, est.high or 0.0) for _, est in rows])
    left, right, step = 170.0, width - 60.0, 22.0
    scale = (right - left) / top
    out = []
    for k, (label, est) in enumerate(rows):
        assert est.value is not None
        y = 8 + k * step
        low = left + est.low * scale if est.low is not None else None
        high = left + est.high * scale if est.high is not None else None
        out.append(Bar(label, PALETTE[0], y, est.value * scale, low, high, f"{est.value:.3f}"))
    return Bars(title, width, int(16 + len(rows) * step), left, left + scale, out)


def group_bars(report: ScoreReport) -> list[Bars]:
    """Per judged system: the three groups and overall, with intervals."""
    charts = []
    for s in report.systems:
        summary = s.summary(Split())
        if summary is None or not s.n_judgments:
            continue
        rows = [(g, summary.groups[g]) for g in GROUPS if g in summary.groups] + [
            ("overall", summary.overall)
        ]
        if chart := bars(f"{s.name}: groups and overall (ratio to the reference)", rows):
            charts.append(chart)
    return charts


def breakdown_bars(report: ScoreReport) -> list[Bars]:
    """Per judged system: overall score by language and by role, with intervals."""
    charts = []
    for s in report.systems:
        if not s.n_judgments:
            continue
        languages = [
            (f"language {x.split.language}", x.overall)
            for x in s.summaries
            if x.split.mode == ALL
            and x.split.language != ALL
            and x.split.role is None
            and x.split.category is None
        ]
        roles = [(str(x.split.role), x.overall) for x in s.summaries if x.split.role is not None]
        if chart := bars(f"{s.name}: overall by language and role", languages + sorted(roles)):
            charts.append(chart)
    return charts
