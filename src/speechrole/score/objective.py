"""Objective metrics beside the judge's: agent value, reference value and their ratio per measure, with
the same splits and bootstrap intervals over roles; and how each judge metric correlates with its
objective counterparts (Spearman, per sample).

Per sample, a measure is the mean over the sample's turns of the clip values that exist (errors are
left out and counted); latencies come from `generations.jsonl` (agent side only). Pure functions: the
current measures and latencies are read by `speechrole.run.Run`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from speechrole.schema import METRICS as JUDGE_METRICS
from speechrole.score.stats import (
    BootstrapSpec,
    cluster_sums,
    percentile_interval,
    ratio_replicates,
    replicate_weights,
)
from speechrole.score.table import Estimate, SampleTable, Split, select, split_key

#: Which objective measures each judge metric is compared with (the judge hears what they measure).
COUNTERPARTS: dict[str, tuple[str, ...]] = {
    "Speech_Naturalness": ("dnsmos.ovrl", "dnsmos.sig", "dnsmos.p808"),
    "Speech_Fluency": ("intelligibility.error_rate", "prosody.pause_ratio", "prosody.rate_syl_per_s"),
    "Conversational_Coherence": ("intelligibility.error_rate",),
    "Prosodic_Consistency": ("speaker.similarity", "prosody.f0_range_st"),
    "Emotion_Appropriateness": ("prosody.f0_range_st", "prosody.energy_db"),
    "Personality_Consistency": ("speaker.similarity",),
}


@dataclass
class ObjectiveTable:
    """Per sample (rows in `keys` order) and measure: the agent's and the reference's mean value."""

    keys: list[str]
    roles: np.ndarray
    modes: np.ndarray
    languages: np.ndarray
    categories: np.ndarray
    measures: list[str]
    directions: dict[str, str]
    agent: np.ndarray  # (samples, measures), NaN where not measured
    reference: np.ndarray
    errors: dict[str, int]  # measure -> clips with an error
    flags: dict[str, int]  # clip flag -> clips (agent side)


def objective_table(
    lines: list[dict[str, Any]],
    lat: dict[tuple[str, int], dict[str, float]],
    judged_keys: list[str],
    labels: Callable[[list[str]], tuple[np.ndarray, ...]],
) -> ObjectiveTable | None:
    """Per-sample measures from the current lines of `measures.jsonl` (the latest per clip and metric)
    and per-turn latencies; None when the run was never measured. Rows are the measured samples plus the
    judged ones (for correlations); `labels` gives their split labels."""
    if not lines and not lat:
        return None
    from speechrole.metrics import METRICS, load_builtin

    load_builtin()
    directions: dict[str, str] = {}
    latest: dict[tuple[str, int, str, str], dict] = {}
    for line in lines:
        latest[(line["sample"], line["turn"], line["side"], line["metric"])] = line
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)  # (sample, side, measure)
    errors: dict[str, int] = defaultdict(int)
    flags: dict[str, int] = defaultdict(int)
    seen_flags: set[tuple[str, int]] = set()
    for (sample, turn, side, metric), line in latest.items():
        try:
            declared = METRICS.get(metric).factory.fields  # type: ignore[attr-defined]
        except (ValueError, AttributeError):
            declared = {}
        if side == "agent" and (sample, turn) not in seen_flags:
            seen_flags.add((sample, turn))
            for f in line.get("flags") or []:
                flags[f] += 1
        if line.get("error"):
            for name in declared or {"?": "none"}:
                errors[f"{metric}.{name}"] += 1
            continue
        for name, value in (line.get("values") or {}).items():
            if name in declared and isinstance(value, int | float) and np.isfinite(value):
                directions[f"{metric}.{name}"] = declared[name]
                values[(sample, side, f"{metric}.{name}")].append(float(value))
    for (sample, _turn), lat_values in lat.items():
        for name in ("first_audio", "total"):
            if name in lat_values:
                directions[f"latency.{name}_s"] = "lower"
                values[(sample, "agent", f"latency.{name}_s")].append(lat_values[name])
    measures = sorted(directions)
    keys = sorted({k[0] for k in values} | set(judged_keys), key=split_key)
    index = {k: i for i, k in enumerate(keys)}
    agent = np.full((len(keys), len(measures)), np.nan)
    reference = np.full((len(keys), len(measures)), np.nan)
    for (sample, side, measure), vals in values.items():
        target = agent if side == "agent" else reference
        target[index[sample], measures.index(measure)] = float(np.mean(vals))
    modes, roles, languages, categories = labels(keys)
    return ObjectiveTable(
        keys=keys,
        roles=roles,
        modes=modes,
        languages=languages,
        categories=categories,
        measures=measures,
        directions=directions,
        agent=agent,
        reference=reference,
        errors=dict(sorted(errors.items())),
        flags=dict(sorted(flags.items())),
    )


@dataclass(frozen=True)
class MeasureSummary:
    measure: str
    direction: str
    agent: Estimate
    reference: Estimate
    ratio: Estimate  # mean agent / mean reference
    n: int

    def to_dict(self) -> dict[str, object]:
        return {
            "measure": self.measure,
            "direction": self.direction,
            "agent": self.agent.to_dict(),
            "reference": self.reference.to_dict(),
            "ratio": self.ratio.to_dict(),
            "n": self.n,
        }


def _as_table(obj: ObjectiveTable, values: np.ndarray) -> SampleTable:
    return SampleTable(obj.keys, obj.modes, obj.roles, obj.languages, obj.categories, values, values)


def summarize_objective(obj: ObjectiveTable, split: Split, spec: BootstrapSpec) -> list[MeasureSummary]:
    mask = select(_as_table(obj, obj.agent), split).keys
    rows = np.array([obj.keys.index(k) for k in mask], dtype=int)
    agent, ref = obj.agent[rows], obj.reference[rows]
    roles, codes = np.unique(obj.roles[rows].astype(str), return_inverse=True)
    clusters, n_clusters = (codes, len(roles)) if len(roles) >= 2 else (np.arange(len(rows)), len(rows))
    out = []
    weights = replicate_weights(n_clusters, spec, "objective", split.label) if n_clusters >= 2 else None
    for m, measure in enumerate(obj.measures):
        a, r = agent[:, m : m + 1], ref[:, m : m + 1]
        both = ~np.isnan(a[:, 0]) & ~np.isnan(r[:, 0])
        estimates = []
        for values in (a, r):
            valid = ~np.isnan(values[:, 0])
            point = float(np.mean(values[valid, 0])) if valid.any() else None
            ci: tuple[float | None, float | None] = (None, None)
            if weights is not None and point is not None:
                s, c = cluster_sums(values, clusters, n_clusters)
                if (c[:, 0] > 0).sum() >= 2:
                    ci = percentile_interval(ratio_replicates(weights, s, c)[:, 0], spec.confidence)
            estimates.append(Estimate(point, *ci))
        ratio: Estimate = Estimate(None)
        positive = (
            both.any() and (a[both, 0] > 0).all() and (r[both, 0] > 0).all()
        )  # a ratio of dB means nothing
        if positive:
            point = float(np.sum(a[both, 0]) / np.sum(r[both, 0]))
            ci = (None, None)
            if weights is not None:
                sa, ca = cluster_sums(np.where(both[:, None], a, np.nan), clusters, n_clusters)
                sr, _ = cluster_sums(np.where(both[:, None], r, np.nan), clusters, n_clusters)
                if (ca[:, 0] > 0).sum() >= 2:
                    ci = percentile_interval(ratio_replicates(weights, sa, sr)[:, 0], spec.confidence)
            ratio = Estimate(point, *ci)
        out.append(
            MeasureSummary(
                measure,
                obj.directions[measure],
                estimates[0],
                estimates[1],
                ratio,
                int((~np.isnan(a[:, 0])).sum()),
            )
        )
    return out


@dataclass(frozen=True)
class Correlation:
    judge_metric: str
    measure: str
    rho: Estimate  # Spearman between the judge's score of the agent and the agent's measure, per sample
    n: int

    def to_dict(self) -> dict[str, object]:
        return {
            "judge_metric": self.judge_metric,
            "measure": self.measure,
            "spearman": self.rho.to_dict(),
            "n": self.n,
        }


def correlations(judged: SampleTable, obj: ObjectiveTable, spec: BootstrapSpec) -> list[Correlation]:
    """Spearman's rho between each judge metric (s_test, both orders averaged) and its counterparts."""
    from scipy.stats import spearmanr

    index = {k: i for i, k in enumerate(obj.keys)}
    rows = [(i, index[k]) for i, k in enumerate(judged.keys) if k in index]
    out = []
    for metric, measures in COUNTERPARTS.items():
        m = JUDGE_METRICS.index(metric)
        for measure in measures:
            if measure not in obj.measures:
                continue
            c = obj.measures.index(measure)
            pairs = [(judged.test[i, m], obj.agent[j, c], judged.roles[i]) for i, j in rows]
            pairs = [p for p in pairs if np.isfinite(p[0]) and np.isfinite(p[1])]
            if len(pairs) < 5:
                continue
            x, y = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
            rho = float(spearmanr(x, y).statistic) if np.ptp(x) and np.ptp(y) else None
            ci = _rho_interval(x, y, np.array([p[2] for p in pairs]), spec, f"{metric}~{measure}")
            out.append(Correlation(metric, measure, Estimate(rho, *ci), len(pairs)))
    return out


def _rho_interval(
    x: np.ndarray, y: np.ndarray, roles: np.ndarray, spec: BootstrapSpec, label: str
) -> tuple[float | None, float | None]:
    """Percentile interval of Spearman's rho, resampling roles (the samples of a role go together)."""
    from scipy.stats import spearmanr

    names, codes = np.unique(roles.astype(str), return_inverse=True)
    if len(names) < 3:
        return None, None
    rng = spec.rng("spearman", label)
    members = [np.flatnonzero(codes == k) for k in range(len(names))]
    reps = []
    for _ in range(min(spec.replicates, 1000)):
        take = np.concatenate([members[k] for k in rng.integers(0, len(names), len(names))])
        if np.ptp(x[take]) and np.ptp(y[take]):
            reps.append(spearmanr(x[take], y[take]).statistic)
    return percentile_interval(np.array(reps), spec.confidence)


def objective_dict(
    obj: ObjectiveTable, summaries: list[tuple[Split, list[MeasureSummary]]], corr: list[Correlation]
) -> dict[str, object]:
    return {
        "n_samples": len(obj.keys),
        "splits": [{**split.to_dict(), "measures": [s.to_dict() for s in sums]} for split, sums in summaries],
        "errors": obj.errors,
        "flags": obj.flags,
        "correlations": [c.to_dict() for c in corr],
    }
