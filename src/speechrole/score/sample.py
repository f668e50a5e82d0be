"""The score of one sample: the one definition used by the leaderboard, the report, the viewer and
`agreement`.

Per metric, the paper's ratio s_test / s_ref of a judgment; when a sample was judged more than once
under one judge configuration (both orders of the `swap` protocol, each mapped back to (test, reference)
by the parser), the mean of those ratios. Judgments of different configurations are never passed here
together (see `speechrole.run.JudgeKey`). A sample whose agent gave no usable answer scores 0 on every
metric (no answer is the worst answer); a judge that gave no usable answer leaves the metric unscored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from speechrole.schema import METRICS, Judgment


@dataclass(frozen=True)
class SampleScore:
    """Per metric: the sample's score (`ratio`), and the mean s_test, s_ref and s_test - s_ref behind it."""

    ratio: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    ref: dict[str, float] = field(default_factory=dict)
    failed: bool = False

    @property
    def gap(self) -> dict[str, float]:
        return {m: self.test[m] - self.ref[m] for m in self.ratio if m in self.ref}

    @property
    def overall(self) -> float | None:
        """Mean over the scored metrics (None when none is scored)."""
        return sum(self.ratio.values()) / len(self.ratio) if self.ratio else None


FAILED = SampleScore(ratio=dict.fromkeys(METRICS, 0.0), test=dict.fromkeys(METRICS, 0.0), ref={}, failed=True)


def sample_score(judgments: Iterable[Judgment], *, failed: bool = False) -> SampleScore:
    """The score of one sample from its current judgments under one judge configuration."""
    if failed:
        return FAILED
    pairs: dict[str, list[tuple[float, float]]] = {}
    for j in judgments:
        if j.status == "scored":
            for metric, s in j.scores.items():
                pairs.setdefault(metric, []).append((float(s.test), float(s.ref)))
    ratio, test, ref = {}, {}, {}
    for metric in METRICS:
        if metric in pairs:
            found = pairs[metric]
            ratio[metric] = sum(t / r for t, r in found) / len(found)
            test[metric] = sum(t for t, _ in found) / len(found)
            ref[metric] = sum(r for _, r in found) / len(found)
    return SampleScore(ratio, test, ref)


__all__ = ["FAILED", "SampleScore", "sample_score"]
