"""The per-sample table every score is computed from, and the splits that select rows of it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
        return {"value": round6(self.value), "ci_low": round6(self.low), "ci_high": round6(self.high)}


def round6(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


@dataclass
class SampleTable:
    """One row per sample: per metric the sample's score (`ratio`, see `score.sample.sample_score`) and
    the mean s_test and s_ref behind it; NaN where unscored. A row of an agent failure has ratio 0 and
    s_test 0 on every metric and no s_ref (the judge had nothing to compare)."""

    keys: list[str]
    modes: np.ndarray  # str
    roles: np.ndarray  # str
    languages: np.ndarray  # str ("en", "zh" or "")
    categories: np.ndarray  # str ("" when unknown)
    test: np.ndarray  # (n, 8)
    ref: np.ndarray  # (n, 8)
    ratio: np.ndarray | None = None  # (n, 8); None: test / ref (one judgment per sample)
    failed: np.ndarray | None = None  # (n,) bool: the agent gave no usable answer

    def __post_init__(self) -> None:
        if self.ratio is None:
            with np.errstate(invalid="ignore", divide="ignore"):
                self.ratio = self.test / self.ref
        if self.failed is None:
            self.failed = np.zeros(len(self.keys), dtype=bool)

    def take(self, mask: np.ndarray) -> SampleTable:
        idx = np.flatnonzero(mask)
        assert self.ratio is not None and self.failed is not None
        return SampleTable(
            [self.keys[i] for i in idx],
            self.modes[idx],
            self.roles[idx],
            self.languages[idx],
            self.categories[idx],
            self.test[idx],
            self.ref[idx],
            self.ratio[idx],
            self.failed[idx],
        )

    @property
    def ratios(self) -> np.ndarray:
        assert self.ratio is not None
        return self.ratio


def split_key(key: str) -> tuple[str, str, int]:
    mode, rest = key.split("/", 1)
    role, index = rest.rsplit("/", 1)
    return mode, role, int(index)


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
