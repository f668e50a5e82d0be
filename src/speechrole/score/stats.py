"""Cluster bootstrap over per-sample ratios, vectorised with numpy.

Samples of one role are not independent (same voice, same persona, same judge habits), so intervals
resample roles, not samples (DESIGN.md section 6). Each statistic is a ratio of cluster sums, so a
bootstrap replicate is just a weighted sum: weights = how often each cluster was drawn.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

DEFAULT_REPLICATES = 2000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class BootstrapSpec:
    replicates: int = DEFAULT_REPLICATES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = 0

    def rng(self, *labels: str) -> np.random.Generator:
        """A generator that depends only on the seed and the labels, so every table is reproducible."""
        entropy = [self.seed, *(zlib.crc32(label.encode("utf-8")) for label in labels)]
        return np.random.default_rng(np.random.SeedSequence(entropy))


def cluster_sums(values: np.ndarray, clusters: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums and counts of `values` (rows x columns, NaN = missing)."""
    valid = ~np.isnan(values)
    sums = np.zeros((n_clusters, values.shape[1]))
    counts = np.zeros((n_clusters, values.shape[1]))
    np.add.at(sums, clusters, np.where(valid, values, 0.0))
    np.add.at(counts, clusters, valid.astype(float))
    return sums, counts


def replicate_weights(n_clusters: int, spec: BootstrapSpec, *labels: str) -> np.ndarray:
    """(replicates x clusters) draw counts: resampling clusters with replacement."""
    rng = spec.rng(*labels)
    draws = rng.integers(0, n_clusters, size=(spec.replicates, n_clusters))
    flat = draws + n_clusters * np.arange(spec.replicates)[:, None]  # one bincount for all replicates
    counts = np.bincount(flat.ravel(), minlength=spec.replicates * n_clusters)
    return counts.reshape(spec.replicates, n_clusters).astype(float)


def ratio_replicates(weights: np.ndarray, numer: np.ndarray, denom: np.ndarray) -> np.ndarray:
    """(replicates x columns) of sum(w * numer) / sum(w * denom); NaN where the denominator is 0."""
    num = weights @ numer
    den = weights @ denom
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """Percentile interval of the finite replicates; (None, None) if there are too few to say."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size < 10:
        return None, None
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def two_sided_p(replicates: np.ndarray) -> float | None:
    """Bootstrap p-value for 'the difference is 0': twice the smaller tail share (at most 1)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size < 10:
        return None
    tail = min(np.mean(finite <= 0.0), np.mean(finite >= 0.0))
    return float(min(1.0, 2.0 * tail))
