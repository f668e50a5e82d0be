"""Scores as the paper defines them, with what the paper's release lacks (DESIGN.md section 6).

Pure functions over tables: nothing here reads a file (a run is read by `speechrole.run.Run`).
Per sample and metric, the sample's score is r = s_test / s_ref (`score.sample.sample_score`). A metric's
score is the mean of r over scored samples; the ratio of means and win/tie/loss against the reference
are reported beside it. Groups are means of their metrics, overall is the mean of the 8. Intervals come
from a bootstrap over roles. A judge's unscored metrics are left out of every mean and counted, never
divided and never 0; an agent failure scores 0 on every metric (or is left out, and counted, with
`failures="exclude"`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from speechrole.bench.language import official_role_languages
from speechrole.bench.official import known_defects
from speechrole.problems import Problem
from speechrole.results import SystemResults, problem_kind
from speechrole.schema import GROUPS, METRICS, Benchmark, Language, Mode
from speechrole.score.objective import correlations, objective_dict, objective_table, summarize_objective
from speechrole.score.order import OrderEffects, OrderStat, order_effects
from speechrole.score.sample import sample_score
from speechrole.score.stats import (
    BootstrapSpec,
    cluster_sums,
    percentile_interval,
    ratio_replicates,
    replicate_weights,
    two_sided_p,
)
from speechrole.score.table import ALL, Estimate, SampleTable, Split, round6, select, split_key

#: The split of every sample.
WHOLE = Split()

#: How an agent failure counts: as 0 on every metric (the headline), or left out (and counted).
Failures = Literal["zero", "exclude"]


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
            "win": round6(self.win),
            "tie": round6(self.tie),
            "loss": round6(self.loss),
            "n": self.n,
            "n_unscored": self.n_unscored,
            "n_ratio_above_1": self.n_ratio_above_1,
        }


@dataclass(frozen=True)
class SplitSummary:
    split: Split
    n_samples: int
    n_roles: int
    n_unscored_samples: int  # samples the judge scored no metric of (judge errors; excluded)
    n_agent_failures: int  # samples the agent gave no usable answer for (0, or excluded: see Failures)
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
            "n_agent_failures": self.n_agent_failures,
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
        return {**self.estimate.to_dict(), "p_value": round6(self.p_value), "n_shared": self.n_shared}


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
    agent_failures: dict[str, str] = field(default_factory=dict)  # sample -> why the agent has no answer
    failures: str = "zero"  # how agent failures were counted
    stale_judgments: dict[str, int] = field(default_factory=dict)  # reason -> judgments skipped
    stale_samples: list[str] = field(default_factory=list)
    stale_measures: dict[str, int] = field(default_factory=dict)  # reason -> measures skipped

    def to_dict(self) -> dict[str, object]:
        return {
            "agent_failures": self.agent_failures,
            "failures": self.failures,
            "stale_judgments": self.stale_judgments,
            "stale_samples": self.stale_samples,
            "stale_measures": self.stale_measures,
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
    order_effects: OrderEffects | None = None  # None unless judged in both orders (see score/order.py)
    objective: dict[str, object] | None = None  # objective metrics and correlations (see score/objective.py)
    judge: dict[str, str] | None = None  # the judge configuration (model, protocol, version)
    judge_checks: dict[str, list[dict[str, Any]]] | None = None  # probes, canaries, agreement records

    def summary(self, split: Split = WHOLE) -> SplitSummary | None:
        return next((s for s in self.summaries if s.split == split), None)

    def to_dict(self) -> dict[str, object]:
        return {
            "system": self.name,
            "source": self.source,
            "protocol": self.protocol,
            "judge_model": self.judge_model or None,
            "judge": self.judge,
            "n_judgments": self.n_judgments,
            "splits": [s.to_dict() for s in self.summaries],
            "flags": self.flags.to_dict(),
            "order_consistency": self.order_consistency.to_dict() if self.order_consistency else None,
            "order_effects": self.order_effects.to_dict() if self.order_effects else None,
            "objective": self.objective,
            "judge_checks": self.judge_checks,
            "problems": [p.to_dict() for p in self.problems],
        }


# --- per-sample table ----------------------------------------------------------------------------------


def role_language(role: str, bench: Benchmark | None, overrides: dict[str, Language]) -> Language | None:
    if role in overrides:
        return overrides[role]
    if bench is not None and role in bench.roles:
        return bench.roles[role].language
    return official_role_languages().get(role)


def build_table(
    system: SystemResults,
    bench: Benchmark | None,
    overrides: dict[str, Language],
    failures: Failures = "zero",
) -> SampleTable:
    """One row per judged sample (its score from `sample_score`) and, unless excluded, per agent failure."""
    by_key: dict[str, list] = defaultdict(list)
    for j in system.judgments:
        by_key[j.sample].append(j)
    failed = set(system.failures)
    keys = set(by_key) | failed if failures == "zero" else set(by_key) - failed
    keys_sorted = sorted(keys, key=split_key)
    n = len(keys_sorted)
    test, ref, ratio = (np.full((n, len(METRICS)), np.nan) for _ in range(3))
    for i, key in enumerate(keys_sorted):
        score = sample_score(by_key.get(key, []), failed=key in failed)
        for m, metric in enumerate(METRICS):
            if metric in score.ratio:
                ratio[i, m] = score.ratio[metric]
                test[i, m] = score.test[metric]
                ref[i, m] = score.ref.get(metric, np.nan)
    flags = np.array([k in failed for k in keys_sorted], dtype=bool)
    return SampleTable(
        keys_sorted, *row_labels(keys_sorted, bench, overrides), test=test, ref=ref, ratio=ratio, failed=flags
    )


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
    paired = valid & ~np.isnan(table.ref)  # judged samples (an agent failure has no reference score)
    failed = table.failed if table.failed is not None else np.zeros(len(table.keys), dtype=bool)
    n_valid = valid.sum(axis=0)
    clusters, n_clusters, cluster_kind = _clusters(table, valid)
    s_r, cnt = cluster_sums(ratios, clusters, n_clusters)
    can = _resampleable(cnt)  # per metric
    if can.any():
        # Seeded by the split only: the same data gives the same interval whatever the system is called.
        weights = replicate_weights(n_clusters, spec, "summary", split.label)
        s_t, _ = cluster_sums(np.where(paired, table.test, np.nan), clusters, n_clusters)
        s_ref, _ = cluster_sums(np.where(paired, table.ref, np.nan), clusters, n_clusters)
        mean_reps = ratio_replicates(weights, s_r, cnt)
        rom_reps = ratio_replicates(weights, s_t, s_ref)

    metrics: dict[str, MetricSummary] = {}
    points: dict[str, float | None] = {}
    for m, metric in enumerate(METRICS):
        n = int(n_valid[m])
        col = valid[:, m]
        r, t, f, lost = ratios[col, m], table.test[col, m], table.ref[col, m], failed[col]
        both = paired[:, m]
        value = float(r.mean()) if n else None
        rom = float(table.test[both, m].sum() / table.ref[both, m].sum()) if both.any() else None
        ci = percentile_interval(mean_reps[:, m], spec.confidence) if can[m] else (None, None)
        rom_ci = percentile_interval(rom_reps[:, m], spec.confidence) if can[m] else (None, None)
        with np.errstate(invalid="ignore"):
            win, tie = (t > f) & ~lost, (t == f) & ~lost
        metrics[metric] = MetricSummary(
            score=Estimate(value, *ci),
            ratio_of_means=Estimate(rom, *rom_ci),
            win=float(np.mean(win)) if n else None,
            tie=float(np.mean(tie)) if n else None,
            loss=float(np.mean(~win & ~tie)) if n else None,  # an agent failure is a loss
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
        n_agent_failures=int(failed.sum()),
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
    (a tie counts as a sign of its own): 1 - the flip rate of `score.order.order_effects`.
    """

    n_samples: int
    rate: float | None
    by_metric: dict[str, float]
    inconsistent_samples: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "n_samples": self.n_samples,
            "rate": round6(self.rate),
            "by_metric": {m: round6(v) for m, v in self.by_metric.items()},
            "inconsistent_samples": self.inconsistent_samples,
        }


def order_consistency(effects: OrderEffects | None) -> OrderConsistency | None:
    """The consistency view of `order_effects` (1 - flip rate); None when no sample was judged in both
    orders."""
    if effects is None or not effects.n_paired_samples:
        return None

    def rate(stat: OrderStat) -> float | None:
        return (stat.n_paired - stat.n_flips) / stat.n_paired if stat.n_paired else None

    pooled = effects.overall
    pairs = sum(s.n_paired for s in effects.by_metric.values())
    return OrderConsistency(
        n_samples=effects.n_paired_samples,
        rate=(pairs - pooled.n_flips) / pairs if pairs else None,
        by_metric={m: r for m, s in effects.by_metric.items() if (r := rate(s)) is not None},
        inconsistent_samples=effects.flipped_samples,
    )


# --- flags ---------------------------------------------------------------------------------------------


def build_flags(
    system: SystemResults, table: SampleTable, bench: Benchmark | None, failures: Failures = "zero"
) -> Flags:
    flags = Flags(
        agent_failures=dict(sorted(system.failures.items(), key=lambda kv: split_key(kv[0]))),
        failures=failures,
        stale_judgments=dict(sorted(system.stale.items())),
        stale_samples=sorted(system.stale_samples, key=split_key),
        stale_measures=dict(sorted(system.stale_measures.items())),
    )
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


#: How a score is made, as written into every score.json and summary.json.
SCORE_DEFINITION = (
    "per metric, the mean over samples of the sample's s_test / s_ref (a sample judged in both orders: the "
    "mean of the two ratios, each order mapped back to test and reference); an agent failure scores 0 "
    "(failures=zero) or is left out (failures=exclude); judge errors are left out and counted; groups and "
    "overall are means of metrics; judge configurations are never pooled"
)


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
    failures: str = "zero"

    def to_dict(self) -> dict[str, object]:
        return {
            "schema": "speechrole.score/1",
            "settings": {
                "score": SCORE_DEFINITION,
                "failures": self.failures,
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
    """Objective metrics of a measured run (None otherwise)."""
    obj = objective_table(system.measures or [], system.latencies or {}, table.keys, labels)
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
    failures: Failures = "zero",
) -> ScoreReport:
    """Score several systems at once; with `baseline`, compare every other system to it, paired.
    `failures`: an agent failure scores 0 ("zero", the headline) or is left out ("exclude"); both count."""
    if failures not in ("zero", "exclude"):
        raise ValueError(f"failures must be zero or exclude, got {failures!r}")
    spec = spec or BootstrapSpec()
    overrides = languages or {}
    tables = {s.name: build_table(s, bench, overrides, failures) for s in systems}
    scored: list[SystemScores] = []
    for system in systems:
        table = tables[system.name]
        effects = order_effects(system.judgments, spec)
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
                flags=build_flags(system, table, bench, failures),
                problems=system.problems,
                order_consistency=order_consistency(effects),
                order_effects=effects,
                judge=system.judge.to_dict() if system.judge is not None else None,
                judge_checks=system.checks,
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
    return ScoreReport(scored, comparisons, spec, by, baseline, bench.name if bench else None, failures)
