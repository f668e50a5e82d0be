"""Scores as the paper defines them, with what the paper's release lacks (DESIGN.md section 6).

Per sample and metric, r = s_test / s_ref. A metric's score is the mean of r over scored samples;
the ratio of means and win/tie/loss against the reference are reported beside it. Groups are means of
their metrics, overall is the mean of the 8. Intervals come from a bootstrap over roles. Unscored
metrics are left out of every mean and counted, never divided and never 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechrole.bench.language import official_role_languages
from speechrole.bench.official import known_defects
from speechrole.problems import Problem
from speechrole.results import SystemResults, problem_kind
from speechrole.schema import GROUPS, METRICS, Benchmark, Language, Mode
from speechrole.score.stats import (
    BootstrapSpec,
    cluster_sums,
    percentile_interval,
    ratio_replicates,
    replicate_weights,
    two_sided_p,
)

ALL = "all"


@dataclass(frozen=True)
class Split:
    """A subset of samples: by mode and language, and optionally one role or one category."""

    mode: str = ALL
    language: str = ALL
    role: str | None = None
    category: str | None = None

    @property
    def label(self) -> str:
        parts = [f"mode={self.mode}", f"language={self.language}"]
        if self.role is not None:
            parts.append(f"role={self.role}")
        if self.category is not None:
            parts.append(f"category={self.category}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, str | None]:
        return {"mode": self.mode, "language": self.language, "role": self.role, "category": self.category}


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": _round(self.value), "ci_low": _round(self.low), "ci_high": _round(self.high)}


@dataclass(frozen=True)
class MetricSummary:
    score: Estimate  # mean of per-sample ratios (the paper's score)
    ratio_of_means: Estimate
    win: float | None
    tie: float | None
    loss: float | None
    n: int
    n_unscored: int
    n_ratio_above_1: int

    def to_dict(self) -> dict[str, object]:
        return {
            "score": self.score.to_dict(),
            "ratio_of_means": self.ratio_of_means.to_dict(),
            "win": _round(self.win),
            "tie": _round(self.tie),
            "loss": _round(self.loss),
            "n": self.n,
            "n_unscored": self.n_unscored,
            "n_ratio_above_1": self.n_ratio_above_1,
        }


@dataclass(frozen=True)
class SplitSummary:
    split: Split
    n_samples: int
    n_roles: int
    n_unscored_samples: int  # samples with no metric scored at all
    ci_cluster: str  # "role", or "sample" when the split holds a single role
    metrics: dict[str, MetricSummary]
    groups: dict[str, Estimate]
    overall: Estimate

    def to_dict(self) -> dict[str, object]:
        return {
            **self.split.to_dict(),
            "n_samples": self.n_samples,
            "n_roles": self.n_roles,
            "n_unscored_samples": self.n_unscored_samples,
            "ci_cluster": self.ci_cluster,
            "metrics": {m: s.to_dict() for m, s in self.metrics.items()},
            "groups": {g: e.to_dict() for g, e in self.groups.items()},
            "overall": self.overall.to_dict(),
        }


@dataclass(frozen=True)
class Difference:
    """Paired difference system - baseline of the mean ratio on the samples both scored."""

    estimate: Estimate
    p_value: float | None
    n_shared: int

    def to_dict(self) -> dict[str, object]:
        return {**self.estimate.to_dict(), "p_value": _round(self.p_value), "n_shared": self.n_shared}


@dataclass(frozen=True)
class Comparison:
    system: str
    baseline: str
    split: Split
    metrics: dict[str, Difference]
    groups: dict[str, Difference]
    overall: Difference

    def to_dict(self) -> dict[str, object]:
        return {
            "system": self.system,
            "baseline": self.baseline,
            **self.split.to_dict(),
            "metrics": {m: d.to_dict() for m, d in self.metrics.items()},
            "groups": {g: d.to_dict() for g, d in self.groups.items()},
            "overall": self.overall.to_dict(),
        }


@dataclass
class Flags:
    """What a reader of the scores must know about the data behind them."""

    unscored_samples: list[str] = field(default_factory=list)
    unscored_metrics: dict[str, int] = field(default_factory=dict)
    problem_kinds: dict[str, int] = field(default_factory=dict)
    unreadable_files: list[str] = field(default_factory=list)
    ratio_above_1: dict[str, int] = field(default_factory=dict)
    defect_roles: dict[str, list[str]] = field(default_factory=dict)
    missing_samples: list[str] = field(default_factory=list)  # in the benchmark, not judged
    extra_samples: list[str] = field(default_factory=list)  # judged, not in the benchmark
    unknown_language_roles: list[str] = field(default_factory=list)
    one_order_samples: list[str] = field(default_factory=list)  # judged both ways elsewhere, one way here

    def to_dict(self) -> dict[str, object]:
        return {
            "unscored_samples": self.unscored_samples,
            "unscored_metrics": self.unscored_metrics,
            "problem_kinds": self.problem_kinds,
            "unreadable_files": self.unreadable_files,
            "ratio_above_1": self.ratio_above_1,
            "defect_roles": self.defect_roles,
            "missing_samples": self.missing_samples,
            "extra_samples": self.extra_samples,
            "unknown_language_roles": self.unknown_language_roles,
            "one_order_samples": self.one_order_samples,
        }


@dataclass
class SystemScores:
    name: str
    source: str
    protocol: str
    judge_model: str
    n_judgments: int
    summaries: list[SplitSummary]
    flags: Flags
    problems: list[Problem]
    order_consistency: OrderConsistency | None = None
    objective: dict[str, object] | None = None  # objective metrics and correlations (see score/objective.py)

    def summary(self, split: Split = Split()) -> SplitSummary | None:
        return next((s for s in self.summaries if s.split == split), None)

    def to_dict(self) -> dict[str, object]:
        return {
            "system": self.name,
            "source": self.source,
            "protocol": self.protocol,
            "judge_model": self.judge_model or None,
            "n_judgments": self.n_judgments,
            "splits": [s.to_dict() for s in self.summaries],
            "flags": self.flags.to_dict(),
            "order_consistency": self.order_consistency.to_dict() if self.order_consistency else None,
            "objective": self.objective,
            "problems": [p.to_dict() for p in self.problems],
        }


def _round(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


# --- per-sample table ----------------------------------------------------------------------------------


@dataclass
class SampleTable:
    """One row per judged sample: (test, ref) per metric, NaN where unscored; swap orders averaged."""

    keys: list[str]
    modes: np.ndarray  # str
    roles: np.ndarray  # str
    languages: np.ndarray  # str ("en", "zh" or "")
    categories: np.ndarray  # str ("" when unknown)
    test: np.ndarray  # (n, 8)
    ref: np.ndarray  # (n, 8)

    def take(self, mask: np.ndarray) -> SampleTable:
        idx = np.flatnonzero(mask)
        return SampleTable(
            [self.keys[i] for i in idx],
            self.modes[idx],
            self.roles[idx],
            self.languages[idx],
            self.categories[idx],
            self.test[idx],
            self.ref[idx],
        )

    @property
    def ratios(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.test / self.ref


def split_key(key: str) -> tuple[str, str, int]:
    mode, rest = key.split("/", 1)
    role, index = rest.rsplit("/", 1)
    return mode, role, int(index)


def role_language(role: str, bench: Benchmark | None, overrides: dict[str, Language]) -> Language | None:
    if role in overrides:
        return overrides[role]
    if bench is not None and role in bench.roles:
        return bench.roles[role].language
    return official_role_languages().get(role)


def build_table(
    system: SystemResults, bench: Benchmark | None, overrides: dict[str, Language]
) -> SampleTable:
    by_key: dict[str, list] = defaultdict(list)
    for j in system.judgments:
        by_key[j.sample].append(j)
    keys = sorted(by_key, key=split_key)
    n = len(keys)
    test = np.full((n, len(METRICS)), np.nan)
    ref = np.full((n, len(METRICS)), np.nan)
    for i, key in enumerate(keys):
        for m, metric in enumerate(METRICS):
            pairs = [(j.scores[metric].test, j.scores[metric].ref) for j in by_key[key] if metric in j.scores]
            if pairs:  # several judgments (e.g. both orders of the swap protocol) are averaged
                test[i, m] = sum(p[0] for p in pairs) / len(pairs)
                ref[i, m] = sum(p[1] for p in pairs) / len(pairs)
    return SampleTable(keys, *row_labels(keys, bench, overrides), test=test, ref=ref)


def row_labels(
    keys: list[str], bench: Benchmark | None, overrides: dict[str, Language]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(modes, roles, languages, categories) of sample keys; language "" and category "" when unknown."""
    parsed = [split_key(k) for k in keys]
    langs = [role_language(role, bench, overrides) for _, role, _ in parsed]
    bench_samples = {s.key: s for s in bench.samples} if bench is not None else {}
    return (
        np.array([p[0] for p in parsed], dtype=object),
        np.array([p[1] for p in parsed], dtype=object),
        np.array([lang.value if lang else "" for lang in langs], dtype=object),
        np.array([bench_samples[k].category if k in bench_samples else "" for k in keys], dtype=object),
    )


def select(table: SampleTable, split: Split) -> SampleTable:
    mask = np.ones(len(table.keys), dtype=bool)
    if split.mode != ALL:
        mask &= table.modes == split.mode
    if split.language != ALL:
        mask &= table.languages == split.language
    if split.role is not None:
        mask &= table.roles == split.role
    if split.category is not None:
        mask &= table.categories == split.category
    return table.take(mask)


# --- summaries -----------------------------------------------------------------------------------------


def _clusters(table: SampleTable, valid: np.ndarray) -> tuple[np.ndarray, int, str]:
    """Roles as clusters when at least two roles have scores, else samples (a single role's samples)."""
    roles, codes = np.unique(table.roles.astype(str), return_inverse=True)
    if len(np.unique(codes[valid.any(axis=1)])) >= 2:
        return codes, len(roles), "role"
    return np.arange(len(table.keys)), len(table.keys), "sample"


def _resampleable(counts: np.ndarray) -> np.ndarray:
    """Per column: whether at least two clusters hold values (else an interval would be a point)."""
    return (counts > 0).sum(axis=0) >= 2


def _mean_of(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def _combine(reps: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
    """Mean over metric columns per replicate; NaN when any of them is undefined in that replicate."""
    return reps[:, list(columns)].mean(axis=1)


def summarize(table: SampleTable, split: Split, spec: BootstrapSpec) -> SplitSummary:
    ratios = table.ratios
    valid = ~np.isnan(ratios)
    n_valid = valid.sum(axis=0)
    clusters, n_clusters, cluster_kind = _clusters(table, valid)
    s_r, cnt = cluster_sums(ratios, clusters, n_clusters)
    can = _resampleable(cnt)  # per metric
    if can.any():
        # Seeded by the split only: the same data gives the same interval whatever the system is called.
        weights = replicate_weights(n_clusters, spec, "summary", split.label)
        s_t, _ = cluster_sums(np.where(valid, table.test, np.nan), clusters, n_clusters)
        s_ref, _ = cluster_sums(np.where(valid, table.ref, np.nan), clusters, n_clusters)
        mean_reps = ratio_replicates(weights, s_r, cnt)
        rom_reps = ratio_replicates(weights, s_t, s_ref)

    metrics: dict[str, MetricSummary] = {}
    points: dict[str, float | None] = {}
    for m, metric in enumerate(METRICS):
        n = int(n_valid[m])
        col = valid[:, m]
        r, t, f = ratios[col, m], table.test[col, m], table.ref[col, m]
        value = float(r.mean()) if n else None
        rom = float(t.sum() / f.sum()) if n else None
        ci = percentile_interval(mean_reps[:, m], spec.confidence) if can[m] else (None, None)
        rom_ci = percentile_interval(rom_reps[:, m], spec.confidence) if can[m] else (None, None)
        metrics[metric] = MetricSummary(
            score=Estimate(value, *ci),
            ratio_of_means=Estimate(rom, *rom_ci),
            win=float(np.mean(t > f)) if n else None,
            tie=float(np.mean(t == f)) if n else None,
            loss=float(np.mean(t < f)) if n else None,
            n=n,
            n_unscored=len(table.keys) - n,
            n_ratio_above_1=int((r > 1).sum()),
        )
        points[metric] = value

    def group_estimate(members: tuple[str, ...]) -> Estimate:
        value = _mean_of([points[m] for m in members])
        columns = tuple(METRICS.index(m) for m in members)
        if value is None or not all(can[c] for c in columns):
            return Estimate(value)
        reps = _combine(mean_reps, columns)
        return Estimate(value, *percentile_interval(reps, spec.confidence))

    return SplitSummary(
        split=split,
        n_samples=len(table.keys),
        n_roles=len(set(table.roles)),
        n_unscored_samples=int((~valid.any(axis=1)).sum()),
        ci_cluster=cluster_kind,
        metrics=metrics,
        groups={g: group_estimate(members) for g, members in GROUPS.items()},
        overall=group_estimate(METRICS),
    )


def compare(
    system: SampleTable, baseline: SampleTable, names: tuple[str, str], split: Split, spec: BootstrapSpec
) -> Comparison:
    """Paired bootstrap (over roles) of the difference in mean ratio, on the samples both systems scored."""
    shared = sorted(set(system.keys) & set(baseline.keys), key=split_key)
    a = system.take(np.isin(system.keys, shared))
    b = baseline.take(np.isin(baseline.keys, shared))
    diffs = a.ratios - b.ratios  # rows align: both sorted by the same key order
    valid = ~np.isnan(diffs)
    n_valid = valid.sum(axis=0)
    clusters, n_clusters, _ = _clusters(a, valid)
    s_d, cnt = cluster_sums(diffs, clusters, n_clusters)
    can = _resampleable(cnt)
    if can.any():
        weights = replicate_weights(n_clusters, spec, "compare", split.label)
        reps = ratio_replicates(weights, s_d, cnt)

    def diff(columns: tuple[int, ...]) -> Difference:
        if any(n_valid[c] == 0 for c in columns):
            return Difference(Estimate(None), None, int(min(n_valid[c] for c in columns)))
        value = float(np.mean([np.nanmean(diffs[:, c]) for c in columns]))
        if not all(can[c] for c in columns):
            return Difference(Estimate(value), None, int(min(n_valid[c] for c in columns)))
        combined = _combine(reps, columns)
        ci = percentile_interval(combined, spec.confidence)
        return Difference(Estimate(value, *ci), two_sided_p(combined), int(min(n_valid[c] for c in columns)))

    return Comparison(
        system=names[0],
        baseline=names[1],
        split=split,
        metrics={metric: diff((m,)) for m, metric in enumerate(METRICS)},
        groups={g: diff(tuple(METRICS.index(x) for x in ms)) for g, ms in GROUPS.items()},
        overall=diff(tuple(range(len(METRICS)))),
    )


# --- judge self-agreement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderConsistency:
    """How often the judge preferred the same side when the two answers were heard in both orders.

    Per sample and metric, consistent when the sign of s_test - s_ref is the same in order AB and BA
    (a tie counts as a sign of its own).
    """

    n_samples: int
    rate: float | None
    by_metric: dict[str, float]
    inconsistent_samples: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "n_samples": self.n_samples,
            "rate": _round(self.rate),
            "by_metric": {m: _round(v) for m, v in self.by_metric.items()},
            "inconsistent_samples": self.inconsistent_samples,
        }


def order_consistency(judgments: list) -> OrderConsistency | None:
    """None when no sample was judged in both orders."""
    by_sample: dict[str, dict[str, list]] = defaultdict(lambda: {"AB": [], "BA": []})
    for j in judgments:
        if j.status == "scored":
            by_sample[j.sample][j.order].append(j)
    agree: dict[str, list[bool]] = defaultdict(list)
    inconsistent: set[str] = set()
    n_samples = 0
    for key, orders in by_sample.items():
        if not orders["AB"] or not orders["BA"]:
            continue
        n_samples += 1
        for metric in METRICS:
            ab = [j.scores[metric] for j in orders["AB"] if metric in j.scores]
            ba = [j.scores[metric] for j in orders["BA"] if metric in j.scores]
            if ab and ba:
                same = np.sign(ab[-1].test - ab[-1].ref) == np.sign(ba[-1].test - ba[-1].ref)
                agree[metric].append(bool(same))
                if not same:
                    inconsistent.add(key)
    if not n_samples:
        return None
    flat = [a for values in agree.values() for a in values]
    return OrderConsistency(
        n_samples=n_samples,
        rate=float(np.mean(flat)) if flat else None,
        by_metric={m: float(np.mean(agree[m])) for m in METRICS if agree[m]},
        inconsistent_samples=sorted(inconsistent, key=split_key),
    )


# --- flags ---------------------------------------------------------------------------------------------


def build_flags(system: SystemResults, table: SampleTable, bench: Benchmark | None) -> Flags:
    flags = Flags()
    valid = ~np.isnan(table.ratios)
    flags.unscored_samples = [k for k, row in zip(table.keys, valid, strict=True) if not row.any()]
    flags.unscored_metrics = {
        m: int((~valid[:, i]).sum()) for i, m in enumerate(METRICS) if (~valid[:, i]).any()
    }
    kinds: dict[str, int] = defaultdict(int)
    for j in system.judgments:
        for reason in j.problems.values():
            kinds[problem_kind(reason)] += 1
    for j in system.judgments:
        if j.status == "unscored" and j.error_kind:
            kinds[f"judge_{j.error_kind}"] += 1
    flags.problem_kinds = dict(sorted(kinds.items()))
    flags.unreadable_files = sorted(
        {p.file for p in system.problems if not p.field and p.severity == "error"}
    )
    with np.errstate(invalid="ignore"):
        above = table.ratios > 1
    flags.ratio_above_1 = {m: int(above[:, i].sum()) for i, m in enumerate(METRICS) if above[:, i].any()}
    roles = sorted(set(table.roles))
    defects = {r: list(bench.roles[r].defects) for r in roles if bench is not None and r in bench.roles}
    for r in roles:
        if r in known_defects() and not defects.get(r):
            defects[r] = [known_defects()[r]]
    flags.defect_roles = {r: d for r, d in defects.items() if d}
    if bench is not None and table.keys:
        judged = set(table.keys)
        expected = {s.key for s in bench.samples}
        flags.missing_samples = sorted(expected - judged, key=split_key)
        flags.extra_samples = sorted(judged - expected, key=split_key)
    orders: dict[str, set[str]] = defaultdict(set)
    for j in system.judgments:
        if j.status == "scored":
            orders[j.sample].add(j.order)
    if any(len(o) > 1 for o in orders.values()):  # a two-order protocol: samples heard one way carry its bias
        flags.one_order_samples = sorted((k for k, o in orders.items() if len(o) == 1), key=split_key)
    flags.unknown_language_roles = sorted(
        {r for r, lang in zip(table.roles, table.languages, strict=True) if not lang}
    )
    return flags


# --- entry point ---------------------------------------------------------------------------------------


STANDARD_SPLITS: tuple[Split, ...] = tuple(
    Split(mode, lang) for mode in (ALL, Mode.SINGLE.value, Mode.MULTI.value) for lang in (ALL, "en", "zh")
)


@dataclass
class ScoreReport:
    systems: list[SystemScores]
    comparisons: list[Comparison]
    spec: BootstrapSpec
    by: tuple[str, ...]
    baseline: str | None
    benchmark: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "schema": "speechrole.score/1",
            "settings": {
                "score": "mean over samples of s_test / s_ref (per metric); groups and overall are means of metrics",
                "interval": f"{self.spec.confidence:.0%} percentile bootstrap over roles",
                "replicates": self.spec.replicates,
                "confidence": self.spec.confidence,
                "seed": self.spec.seed,
                "by": list(self.by),
                "baseline": self.baseline,
                "benchmark": self.benchmark,
                "metrics": list(METRICS),
                "groups": {g: list(ms) for g, ms in GROUPS.items()},
            },
            "systems": [s.to_dict() for s in self.systems],
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def _splits_for(table: SampleTable, by: tuple[str, ...]) -> list[Split]:
    splits = [
        s
        for s in STANDARD_SPLITS
        if (s.mode == ALL and s.language == ALL)
        or (("mode" in by or s.mode == ALL) and ("language" in by or s.language == ALL))
    ]
    if "role" in by:
        splits += [Split(role=r) for r in sorted(set(table.roles))]
    if "category" in by:
        splits += [Split(category=c) for c in sorted(set(table.categories)) if c]
    return splits


def _objective(
    system: SystemResults,
    table: SampleTable,
    by: tuple[str, ...],
    spec: BootstrapSpec,
    labels: Callable[[list[str]], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> dict[str, object] | None:
    """Objective metrics of a run directory that was measured (None otherwise)."""
    from speechrole.score.objective import correlations, load_objective, objective_dict, summarize_objective

    source = Path(system.source)
    if not source.is_dir():
        return None
    obj = load_objective(source, table.keys, labels)
    if obj is None:
        return None
    rows = SampleTable(obj.keys, obj.modes, obj.roles, obj.languages, obj.categories, obj.agent, obj.agent)
    summaries = [(split, summarize_objective(obj, split, spec)) for split in _splits_for(rows, by)]
    kept = [(split, sums) for split, sums in summaries if any(m.n for m in sums)]
    corr = correlations(table, obj, spec) if table.keys else []
    return objective_dict(obj, kept or summaries[:1], corr)


def score_systems(
    systems: list[SystemResults],
    *,
    bench: Benchmark | None = None,
    languages: dict[str, Language] | None = None,
    by: tuple[str, ...] = ("mode", "language"),
    baseline: str | None = None,
    spec: BootstrapSpec | None = None,
) -> ScoreReport:
    """Score several systems at once; with `baseline`, compare every other system to it, paired."""
    spec = spec or BootstrapSpec()
    overrides = languages or {}
    tables = {s.name: build_table(s, bench, overrides) for s in systems}
    scored: list[SystemScores] = []
    for system in systems:
        table = tables[system.name]
        summaries = []
        for split in _splits_for(table, by):
            subset = select(table, split)
            if subset.keys or split == Split():
                summaries.append(summarize(subset, split, spec))
        scored.append(
            SystemScores(
                name=system.name,
                source=str(system.source),
                protocol=system.protocol,
                judge_model=system.judge_model,
                n_judgments=len(system.judgments),
                summaries=summaries,
                flags=build_flags(system, table, bench),
                problems=system.problems,
                order_consistency=order_consistency(system.judgments),
                objective=_objective(
                    system, table, by, spec, lambda keys: row_labels(keys, bench, overrides)
                ),
            )
        )
    comparisons: list[Comparison] = []
    if baseline is not None:
        if baseline not in tables:
            raise ValueError(f"baseline {baseline!r} is not among the systems: {sorted(tables)}")
        for system in systems:
            if system.name == baseline:
                continue
            for split in STANDARD_SPLITS:
                a, b = select(tables[system.name], split), select(tables[baseline], split)
                if set(a.keys) & set(b.keys):
                    comparisons.append(compare(a, b, (system.name, baseline), split, spec))
    return ScoreReport(scored, comparisons, spec, by, baseline, bench.name if bench else None)
