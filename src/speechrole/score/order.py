"""Order effects of a two-order judge (`swap`): does the judge prefer the answer it heard first?

One pure function, `order_effects`, measures it from one judge configuration's judgments (never pool
configurations: pass one `SystemResults.judgments`); `speechrole score`, the HTML report and the judge's
`summary.json` all show its result. Per metric and overall (all metrics pooled):

- **first-position preference**: among comparisons (one scored judgment x one metric), the share where
  the answer heard first scored higher (order AB: s_test > s_ref; order BA: s_ref > s_test), the share
  where the second did, and ties; a fair judge has first ~ second;
- **flip rate**: among samples scored in both orders, the share whose preferred side (the sign of
  s_test - s_ref, a tie being a side of its own) differs between AB and BA: a tie in one order and a
  preference in the other is a flip, a tie in both is not;
- **mean |AB - BA|**: per sample, |r_AB - r_BA| with r = s_test / s_ref, averaged.

Overall values pool every (sample, metric) pair. Samples scored in one order only count in the
preference, not in flips or |AB - BA|. Repeats: per sample, order and metric the *latest* scored
judgment counts (the last in the list, which `Run.systems()` gives in log order, already the latest per
task), as in the sample score. Intervals: percentile bootstrap over samples (each statistic a ratio of
per-sample sums, resampled with one seeded set of weights), so the same judgments give the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from speechrole.schema import METRICS, Judgment, MetricScore
from speechrole.score.stats import BootstrapSpec, percentile_interval, ratio_replicates, replicate_weights
from speechrole.score.table import Estimate, split_key

ORDERS = ("AB", "BA")


def preference(score: MetricScore) -> int:
    """The side a judge preferred: 1 the tested agent, -1 the reference, 0 a tie."""
    return int(np.sign(score.test - score.ref))


def flipped(ab: MetricScore, ba: MetricScore) -> bool:
    """Whether the preferred side differs between the two orders (a tie is a side of its own)."""
    return preference(ab) != preference(ba)


@dataclass(frozen=True)
class OrderStat:
    """Order effects of one metric (or of all metrics pooled)."""

    n_comparisons: int  # scored judgment x metric comparisons, both orders
    n_samples: int  # samples with at least one comparison
    first: Estimate  # share of comparisons won by the answer heard first
    second: Estimate  # share won by the answer heard second
    tie: Estimate
    first_minus_second: Estimate  # position bias: 0 for a fair judge
    n_paired: int  # samples scored in both orders (flips and |AB - BA| are over these)
    n_flips: int  # (sample, metric) pairs whose preferred side flipped
    flip_rate: Estimate
    mean_abs_diff: Estimate  # mean over samples of |r_AB - r_BA|, r = s_test / s_ref

    def to_dict(self) -> dict[str, object]:
        return {
            "n_comparisons": self.n_comparisons,
            "n_samples": self.n_samples,
            "first": self.first.to_dict(),
            "second": self.second.to_dict(),
            "tie": self.tie.to_dict(),
            "first_minus_second": self.first_minus_second.to_dict(),
            "n_paired": self.n_paired,
            "n_flips": self.n_flips,
            "flip_rate": self.flip_rate.to_dict(),
            "mean_abs_diff": self.mean_abs_diff.to_dict(),
        }


@dataclass(frozen=True)
class OrderEffects:
    """Order effects of one judge configuration: per metric, pooled, and what they were computed from."""

    n_judgments: int  # scored judgments used (the latest per sample, order and metric)
    n_samples: int
    n_paired_samples: int  # samples scored in both orders
    n_one_order_samples: int  # samples scored in one order only (preference only)
    overall: OrderStat
    by_metric: dict[str, OrderStat]
    flipped_samples: list[str]  # samples with a flip on at least one metric
    replicates: int
    confidence: float
    seed: int

    def to_dict(self) -> dict[str, object]:
        return {
            "n_judgments": self.n_judgments,
            "n_samples": self.n_samples,
            "n_paired_samples": self.n_paired_samples,
            "n_one_order_samples": self.n_one_order_samples,
            "interval": f"{self.confidence:.0%} percentile bootstrap over samples",
            "replicates": self.replicates,
            "confidence": self.confidence,
            "seed": self.seed,
            "overall": self.overall.to_dict(),
            "by_metric": {m: s.to_dict() for m, s in self.by_metric.items()},
            "flipped_samples": self.flipped_samples,
        }


def _latest(judgments: Iterable[Judgment]) -> tuple[dict[tuple[str, str, str], MetricScore], int]:
    """(sample, order, metric) -> the latest scored score, and how many judgments supplied one."""
    latest: dict[tuple[str, str, str], tuple[int, MetricScore]] = {}
    for n, j in enumerate(judgments):
        if j.status == "scored":
            for metric, score in j.scores.items():
                latest[(j.sample, j.order, metric)] = (n, score)
    used = {n for n, _ in latest.values()}
    return {k: s for k, (_, s) in latest.items()}, len(used)


def order_effects(judgments: Iterable[Judgment], spec: BootstrapSpec | None = None) -> OrderEffects | None:
    """Order effects of one judge configuration's judgments; None unless scored judgments of both orders
    are among them (a one-order protocol has no order effect to measure, which is not an effect of 0)."""
    spec = spec or BootstrapSpec()
    latest, n_judgments = _latest(judgments)
    if {order for _, order, _ in latest} != set(ORDERS):
        return None
    samples = sorted({s for s, _, _ in latest}, key=split_key)
    width = len(METRICS) + 1  # the 8 metrics, then all of them pooled
    first, second, tie, comps = (np.zeros((len(samples), width)) for _ in range(4))
    flips, paired, abs_diff = (np.zeros((len(samples), width)) for _ in range(3))
    for i, sample in enumerate(samples):
        for m, metric in enumerate(METRICS):
            by_order = {o: latest.get((sample, o, metric)) for o in ORDERS}
            for order, score in by_order.items():
                if score is None:
                    continue
                heard_first = preference(score) if order == "AB" else -preference(score)
                first[i, m] += heard_first > 0
                second[i, m] += heard_first < 0
                tie[i, m] += heard_first == 0
                comps[i, m] += 1
            ab, ba = by_order["AB"], by_order["BA"]
            if ab is not None and ba is not None:
                paired[i, m] = 1
                flips[i, m] = flipped(ab, ba)
                abs_diff[i, m] = abs(ab.test / ab.ref - ba.test / ba.ref)
    for table in (first, second, tie, comps, flips, paired, abs_diff):
        table[:, -1] = table[:, :-1].sum(axis=1)  # the pooled column
    weights = replicate_weights(len(samples), spec, "order-effects")
    reps = {
        "first": ratio_replicates(weights, first, comps),
        "second": ratio_replicates(weights, second, comps),
        "tie": ratio_replicates(weights, tie, comps),
        "flip": ratio_replicates(weights, flips, paired),
        "abs": ratio_replicates(weights, abs_diff, paired),
    }
    reps["bias"] = reps["first"] - reps["second"]

    def estimate(
        c: int, numer: np.ndarray, denom: np.ndarray, key: str, minus: np.ndarray | None = None
    ) -> Estimate:
        total = denom[:, c].sum()
        if not total:
            return Estimate(None)
        value = (numer[:, c].sum() - (0.0 if minus is None else minus[:, c].sum())) / total
        if (denom[:, c] > 0).sum() < 2:  # one sample: no interval
            return Estimate(float(value))
        return Estimate(float(value), *percentile_interval(reps[key][:, c], spec.confidence))

    def stat(c: int) -> OrderStat:
        return OrderStat(
            n_comparisons=int(comps[:, c].sum()),
            n_samples=int((comps[:, c] > 0).sum()),
            first=estimate(c, first, comps, "first"),
            second=estimate(c, second, comps, "second"),
            tie=estimate(c, tie, comps, "tie"),
            first_minus_second=estimate(c, first, comps, "bias", minus=second),
            n_paired=int((paired[:, c] > 0).sum()),
            n_flips=int(flips[:, c].sum()),
            flip_rate=estimate(c, flips, paired, "flip"),
            mean_abs_diff=estimate(c, abs_diff, paired, "abs"),
        )

    orders: dict[str, set[str]] = {s: set() for s in samples}
    for sample, order, _ in latest:
        orders[sample].add(order)
    return OrderEffects(
        n_judgments=n_judgments,
        n_samples=len(samples),
        n_paired_samples=sum(len(o) == 2 for o in orders.values()),
        n_one_order_samples=sum(len(o) == 1 for o in orders.values()),
        overall=stat(width - 1),
        by_metric={metric: stat(m) for m, metric in enumerate(METRICS)},
        flipped_samples=[s for i, s in enumerate(samples) if flips[i, -1] > 0],
        replicates=spec.replicates,
        confidence=spec.confidence,
        seed=spec.seed,
    )


__all__ = ["OrderEffects", "OrderStat", "flipped", "order_effects", "preference"]
