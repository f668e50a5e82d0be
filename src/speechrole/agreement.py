"""How far the judge agrees with human ears, and humans and the judge with themselves.

Per judge configuration (never pooled) and metric, on the quantity the benchmark scores (the sample's
score, `score.sample.sample_score`: s_agent / s_reference, both orders of `swap` averaged):
- Spearman's rho and Kendall's tau between the human value (mean over raters) and the judge's sample
  score of each sample both rated and judged — what the paper reports (Spearman 0.55-0.76 by metric);
- Krippendorff's alpha (interval) between human raters, and between repeated judgments: the same task
  (sample, order, metrics) asked again of the same configuration, each judgment's ratio a value;
each with a percentile bootstrap interval over samples (seeded, so two runs print the same numbers).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speechrole.schema import METRICS

Unit = tuple[str, str]  # (run id, sample key)
Repeat = tuple[str, str, str]  # (run id, sample key, task)
OVERALL = "overall"


@dataclass(frozen=True)
class Interval:
    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class MetricAgreement:
    metric: str
    n_paired: int  # samples both rated and judged
    spearman: Interval
    kendall: Interval
    n_rater_units: int  # samples rated by two raters or more
    alpha_raters: Interval
    n_repeat_units: int  # samples judged twice or more
    alpha_judge: Interval


@dataclass(frozen=True)
class AgreementReport:
    judge: str  # the judge configuration (model, protocol, version)
    metrics: list[MetricAgreement]
    raters: list[str]
    n_ratings: int
    replicates: int
    confidence: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _bootstrap(
    n: int, stat: object, replicates: int, confidence: float, seed: int
) -> tuple[float | None, float | None]:
    """Percentile interval of `stat(indices)` over units resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(replicates):
        v = stat(rng.integers(0, n, n))  # type: ignore[operator]
        if v is not None and math.isfinite(v):
            values.append(v)
    if len(values) < replicates / 2:  # mostly undefined (e.g. constant resamples): no honest interval
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _correlation(x: np.ndarray, y: np.ndarray, kind: str) -> float | None:
    from scipy import stats

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    result = stats.spearmanr(x, y) if kind == "spearman" else stats.kendalltau(x, y)
    value = float(result.statistic)
    return value if math.isfinite(value) else None


def _alpha(matrix: np.ndarray) -> float | None:
    """Krippendorff's alpha (interval) of a coders x units matrix with NaN for missing values."""
    import krippendorff

    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2
    if pairable.sum() < 2:
        return None
    m = matrix[:, pairable]
    values = m[~np.isnan(m)]
    if np.ptp(values) == 0:
        return None
    value = float(krippendorff.alpha(reliability_data=m, level_of_measurement="interval"))
    return value if math.isfinite(value) else None


def _with_interval(compute: object, n: int, replicates: int, confidence: float, seed: int) -> Interval:
    point = compute(np.arange(n))  # type: ignore[operator]
    if point is None:
        return Interval(None)
    return Interval(point, *_bootstrap(n, compute, replicates, confidence, seed))


def _one_metric(
    metric: str,
    h: dict[Unit, dict[str, float]],
    j: dict[Unit, float],
    reps: dict[Repeat, list[float]],
    raters: list[str],
    replicates: int,
    confidence: float,
    seed: int,
) -> MetricAgreement:
    paired = sorted(set(h) & set(j))
    x = np.array([np.mean(list(h[u].values())) for u in paired])
    y = np.array([j[u] for u in paired])
    rated = sorted(u for u in h if len(h[u]) >= 2)
    by_rater = np.array([[h[u].get(r, np.nan) for u in rated] for r in raters]).reshape(
        len(raters), len(rated)
    )
    repeated = sorted(u for u, v in reps.items() if len(v) >= 2)
    width = max((len(reps[u]) for u in repeated), default=0)
    by_repeat = np.array(
        [[reps[u][c] if c < len(reps[u]) else np.nan for u in repeated] for c in range(width)]
    ).reshape(width, len(repeated))
    spec = (replicates, confidence, seed)
    return MetricAgreement(
        metric,
        len(paired),
        _with_interval(lambda idx: _correlation(x[idx], y[idx], "spearman"), len(paired), *spec),
        _with_interval(lambda idx: _correlation(x[idx], y[idx], "kendall"), len(paired), *spec),
        len(rated),
        _with_interval(lambda idx: _alpha(by_rater[:, idx]), len(rated), *spec),
        len(repeated),
        _with_interval(lambda idx: _alpha(by_repeat[:, idx]), len(repeated), *spec),
    )


@dataclass
class JudgeValues:
    """One judge configuration's values: the sample score per metric and unit, and each judgment's ratio
    per metric and repeated task."""

    samples: dict[str, dict[Unit, float]] = field(default_factory=lambda: defaultdict(dict))
    repeats: dict[str, dict[Repeat, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )


def agreement(
    human: dict[str, dict[Unit, dict[str, float]]],
    judge: JudgeValues,
    *,
    label: str = "",
    raters: list[str],
    n_ratings: int,
    replicates: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AgreementReport:
    """`human[metric][unit][rater]` and one judge configuration's values -> the report."""
    rows = [
        _one_metric(
            metric,
            human.get(metric, {}),
            judge.samples.get(metric, {}),
            judge.repeats.get(metric, {}),
            raters,
            replicates,
            confidence,
            seed + k,
        )
        for k, metric in enumerate([*METRICS, OVERALL])
    ]
    return AgreementReport(label, rows, raters, n_ratings, replicates, confidence)


def _overall(per_metric: dict[str, float]) -> float | None:
    return float(np.mean([per_metric[m] for m in METRICS])) if all(m in per_metric for m in METRICS) else None


def collect(
    runs_dir: Path, ratings_path: Path | None = None
) -> tuple[dict[str, dict[Unit, dict[str, float]]], dict[str, JudgeValues], list[str], int]:
    """Human ratings from the viewer's database and, per judge configuration, the current judgments of
    the runs under `runs_dir` (read through `speechrole.run.Run`)."""
    from speechrole.problems import DataError
    from speechrole.run import Run
    from speechrole.score.sample import sample_score
    from speechrole.view import discover_runs
    from speechrole.view.ratings import FILENAME, RatingStore

    runs_dir = Path(runs_dir).absolute()
    path = ratings_path or runs_dir / FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ratings yet (rate pairs in `speechrole view {runs_dir}`)")
    store = RatingStore(path)
    try:
        ratings = store.ratings()
    finally:
        store.close()
    if not ratings:
        raise FileNotFoundError(f"{path}: no ratings yet (rate pairs in `speechrole view {runs_dir}`)")
    latest: dict[tuple[Unit, str, str], float] = {}  # (unit, rater, metric) -> agent / reference
    for r in ratings:  # ordered by time: a later rating of the same sample replaces the earlier
        run_id = r.run.split("#", 1)[0]  # a run's views per judge configuration share its audio
        latest[((run_id, r.sample), r.rater, r.metric)] = r.agent / r.reference
    human: dict[str, dict[Unit, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for (unit, rater, metric), value in latest.items():
        human[metric][unit][rater] = value
    by_rater: dict[tuple[Unit, str], dict[str, float]] = defaultdict(dict)
    for (unit, rater, metric), value in latest.items():
        by_rater[(unit, rater)][metric] = value
    for (unit, rater), values in by_rater.items():
        if (o := _overall(values)) is not None:
            human[OVERALL][unit][rater] = o
    judges: dict[str, JudgeValues] = defaultdict(JudgeValues)
    for run_dir in discover_runs(runs_dir):
        run_id = run_dir.relative_to(runs_dir).as_posix() or "."
        run = Run.open(run_dir)
        try:
            systems = run.systems()
        except DataError:
            continue
        for system in systems:
            if system.judge is None:
                continue
            values = judges[system.judge.label]
            by_sample: dict[str, list] = defaultdict(list)
            for jd in system.judgments:
                by_sample[jd.sample].append(jd)
            for key, judged in by_sample.items():
                score = sample_score(judged, failed=key in system.failures)
                for metric, value in score.ratio.items():
                    values.samples[metric][(run_id, key)] = value
                if (o := _overall(score.ratio)) is not None:
                    values.samples[OVERALL][(run_id, key)] = o
            group = next(g for g in run.judgments if g.key == system.judge)
            for jd in group.current:  # every repeat of a task, not only the latest
                if jd.status != "scored":
                    continue
                ratios = {m: s.test / s.ref for m, s in jd.scores.items()}
                for metric, value in ratios.items():
                    values.repeats[metric][(run_id, jd.sample, jd.task)].append(value)
                if (o := _overall(ratios)) is not None:
                    values.repeats[OVERALL][(run_id, jd.sample, jd.task)].append(o)
    raters = sorted({r.rater for r in ratings})
    return human, dict(judges), raters, len({(r.run, r.sample, r.rater) for r in ratings})


__all__ = ["AgreementReport", "Interval", "JudgeValues", "MetricAgreement", "agreement", "collect"]
