"""How far two judges agree on the same agents' answers: judge A against judge B, per system and metric.

The two judges are two runs (read through `speechrole.run.Run`), two judge configurations inside one run
(or one folder of runs), or two results trees in the official layout (`<tree>/<system>/{single,multi}/
<role>.json`, which record no judge: they are named by where they are). Systems are paired by name, after
an optional mapping of A's names to B's.

Per system and metric (the 8 of `speechrole.schema.METRICS`, and `overall`: the mean of the 8), on the
samples both judges scored, the values compared are the sample's score (`score.sample.sample_score`, read
through the score module's per-sample table, so agent failures and unscored judgments count exactly as
in `speechrole score`): Spearman's rho and Kendall's tau, Krippendorff's alpha (interval) with the two
judges as coders, and the mean shift B - A. Across systems: Kendall's tau between the two judges' system
orderings by mean overall score. Every statistic has a percentile bootstrap interval over samples (seeded,
so two runs print the same numbers).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechrole.agreement import OVERALL, Interval, _alpha, _correlation, _with_interval
from speechrole.schema import METRICS

if TYPE_CHECKING:
    from rich.console import Console

    from speechrole.results import SystemResults
    from speechrole.run import JudgeKey

COLUMNS: tuple[str, ...] = (*METRICS, OVERALL)

#: Where judge-against-judge records are kept in a run directory.
FILENAME = "agreement.jsonl"


# --- the two judges ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeIdentity:
    """Who judged: a run's judge configuration (`JudgeKey`), or results that record no judge (model and
    version None), named by where they are, with the protocol their files' text shows."""

    label: str
    model: str | None
    protocol: str | None
    version: str | None
    source: str

    @classmethod
    def of(cls, key: JudgeKey | None, source: Path, systems: list[SystemResults]) -> JudgeIdentity:
        if key is not None:
            return cls(key.label, key.model or None, key.protocol, key.version or None, str(source))
        protocols = sorted({s.protocol for s in systems if s.protocol})
        protocol = ", ".join(protocols) or None
        inferred = f" ({protocol} inferred from the files; judge model not recorded)" if protocol else ""
        return cls(f"released results at {source}{inferred}", None, protocol, None, str(source))

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass
class JudgeSide:
    """One judge's results: who judged, and per system name the system's results under that judge."""

    identity: JudgeIdentity
    systems: dict[str, SystemResults]
    not_judged: list[str] = field(default_factory=list)  # systems at the path without this judge's results


def _read(path: Path) -> list[SystemResults]:
    """Every system at `path` under every judge configuration, named without the configuration: a run, a
    results tree or one system's folder (`score.load_systems`), or a folder of runs."""
    from speechrole.problems import DataError
    from speechrole.run import Run
    from speechrole.score import load_systems
    from speechrole.view import discover_runs

    path = Path(path)
    try:
        systems = load_systems([path])
    except DataError:
        runs = discover_runs(path) if path.is_dir() and not Run.is_run(path) else []
        if not runs:
            raise
        systems = load_systems(runs)
    return [
        replace(s, name=s.name.removesuffix(f" [{s.judge.label}]")) if s.judge is not None else s
        for s in systems
    ]


def judge_configs(systems: list[SystemResults]) -> list[JudgeKey | None]:
    """The distinct judge configurations of `systems` (None: results that record none), first seen first;
    systems without any judgment are not judged by anyone and left out."""
    keys: list[JudgeKey | None] = []
    for s in systems:
        if (s.judgments or s.judge is not None) and s.judge not in keys:
            keys.append(s.judge)
    return keys


def _labels(
    path: Path, systems: list[SystemResults], keys: list[JudgeKey | None]
) -> dict[str, JudgeKey | None]:
    """Each configuration by the label it is shown under."""
    return {JudgeIdentity.of(k, path, [s for s in systems if s.judge == k]).label: k for k in keys}


def match_config(labels: dict[str, JudgeKey | None], wanted: str) -> JudgeKey | None:
    """The configuration whose label is `wanted`, or the only one whose label contains it (a model, a
    version, or "released" for results that record no judge)."""
    found = [labels[wanted]] if wanted in labels else [k for label, k in labels.items() if wanted in label]
    if len(found) != 1:
        why = "no" if not found else f"{len(found)}"
        raise ValueError(
            f"--config {wanted!r}: {why} judge configuration matches; found {list(labels) or 'none'}"
        )
    return found[0]


def _side(path: Path, systems: list[SystemResults], key: JudgeKey | None) -> JudgeSide:
    chosen = [s for s in systems if s.judge == key and (s.judgments or key is not None)]
    names = {s.name for s in chosen}
    not_judged = sorted({s.name for s in systems} - names)
    return JudgeSide(JudgeIdentity.of(key, path, chosen), {s.name: s for s in chosen}, not_judged)


def load_side(path: Path, config: str | None = None) -> JudgeSide:
    """One judge's results at `path`: its only judge configuration, or the one `config` names."""
    systems = _read(path)
    labels = _labels(path, systems, judge_configs(systems))
    if config is not None:
        return _side(path, systems, match_config(labels, config))
    if not labels:
        raise ValueError(f"{path}: no judge results")
    if len(labels) > 1:
        raise ValueError(
            f"{path}: {len(labels)} judge configurations {list(labels)}; choose one with --config"
        )
    return _side(path, systems, next(iter(labels.values())))


def load_judges(path: Path, configs: list[str]) -> tuple[JudgeSide, JudgeSide]:
    """Two judge configurations of one run (or folder of runs): the only two, or the two `configs` name
    (A first)."""
    systems = _read(path)
    labels = _labels(path, systems, judge_configs(systems))
    if configs:
        if len(configs) != 2:
            raise ValueError(f"--config: give two judge configurations (A then B), got {len(configs)}")
        a, b = (match_config(labels, c) for c in configs)
        if a == b:
            raise ValueError(f"--config: both name the same judge configuration {configs}")
    elif len(labels) == 2:
        a, b = labels.values()
    else:
        raise ValueError(
            f"{path}: {len(labels)} judge configuration(s) {list(labels)}; --judges compares two"
            + ("; choose them with --config LABEL --config LABEL" if len(labels) > 2 else "")
        )
    return _side(path, systems, a), _side(path, systems, b)


# --- pairing systems ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pairing:
    """Which system of A is compared with which of B, and what was left out."""

    pairs: list[tuple[str, str]]  # (name in A, name in B)
    only_a: list[str]  # A's systems with no counterpart in B (named as in A)
    only_b: list[str]
    unknown_map: list[str]  # --map names that A does not have
    implicit: bool = False  # the only system of A paired with the only system of B, names differing


def parse_map(items: list[str]) -> dict[str, str]:
    """`NAME_A=NAME_B` items -> {NAME_A: NAME_B}."""
    mapping: dict[str, str] = {}
    for item in items:
        a, sep, b = item.partition("=")
        if not sep or not a.strip() or not b.strip():
            raise ValueError(f"--map {item!r}: expected NAME_A=NAME_B")
        mapping[a.strip()] = b.strip()
    return mapping


def pair_systems(a: list[str], b: list[str], mapping: dict[str, str] | None = None) -> Pairing:
    """A's systems named as in B after `mapping`, paired with B's of that name; with no mapping and one
    system on each side, those two whatever their names (two runs of one agent)."""
    mapping = mapping or {}
    renamed = {n: mapping.get(n, n) for n in a}
    clash = sorted(n for n, c in Counter(renamed.values()).items() if c > 1)
    if clash:
        raise ValueError(f"--map: several systems of A map to {clash}")
    pairs = [(n, renamed[n]) for n in a if renamed[n] in b]
    unknown = sorted(set(mapping) - set(a))
    if not pairs and not mapping and len(a) == 1 and len(b) == 1:
        return Pairing([(a[0], b[0])], [], [], unknown, implicit=True)
    paired_b = {y for _, y in pairs}
    return Pairing(pairs, [n for n in a if renamed[n] not in b], [n for n in b if n not in paired_b], unknown)


def pair_label(a: str, b: str) -> str:
    return a if a == b else f"{a} = {b}"


def notes(a: JudgeSide, b: JudgeSide, pairing: Pairing) -> list[str]:
    """What the reader should know before the numbers: problems met reading the compared systems
    (counted by kind), systems without this judge's results, the pairing, and what it left out."""
    lines = []
    for which, side, names in (
        ("A", a, [x for x, _ in pairing.pairs]),
        ("B", b, [y for _, y in pairing.pairs]),
    ):
        kinds = Counter((p.severity, p.reason) for n in names for p in side.systems[n].problems)
        lines += [f"{which}: {n} x {severity}: {reason}" for (severity, reason), n in sorted(kinds.items())]
        if side.not_judged:
            lines.append(f"{which}: not under this judge: {', '.join(side.not_judged)}")
    lines += [f"--map: A has no system {name!r}" for name in pairing.unknown_map]
    if pairing.implicit:
        ((name_a, name_b),) = pairing.pairs
        lines.append(f"comparing the only system of each side: {name_a} (A) with {name_b} (B)")
    for which, names in (("A", pairing.only_a), ("B", pairing.only_b)):
        if names:
            lines.append(f"left out, only in {which}: {', '.join(names)}")
    return lines


# --- statistics ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    n: int  # samples both judges scored on this metric
    n_agent_failures: int  # of those, samples an agent failure (0 under both judges unless excluded)
    mean_a: float | None
    mean_b: float | None
    spearman: Interval
    kendall: Interval
    alpha: Interval  # Krippendorff's alpha (interval), the two judges as coders
    shift: Interval  # mean of B - A over the samples, paired bootstrap


@dataclass(frozen=True)
class SystemComparison:
    system: str  # the pair's name: the shared name, or "A's = B's" when they differ
    system_a: str
    system_b: str
    metrics: list[MetricComparison]


@dataclass(frozen=True)
class RankingComparison:
    """The two judges' orderings of the systems by mean overall score on each system's common samples."""

    systems: list[str]
    n: dict[str, int]  # per system, the samples behind its means
    means_a: dict[str, float]
    means_b: dict[str, float]
    order_a: list[str]  # best first
    order_b: list[str]
    kendall: Interval
    changes: bool


@dataclass(frozen=True)
class JudgeAgreement:
    judge_a: JudgeIdentity
    judge_b: JudgeIdentity
    systems: list[SystemComparison]
    ranking: RankingComparison | None
    pairing: Pairing
    replicates: int
    confidence: float
    seed: int
    failures: str

    def _common(self) -> dict[str, Any]:
        return {
            "judge_a": self.judge_a.to_dict(),
            "judge_b": self.judge_b.to_dict(),
            "replicates": self.replicates,
            "confidence": self.confidence,
            "seed": self.seed,
            "failures": self.failures,
        }

    def records(self) -> list[dict[str, Any]]:
        """One record per system x metric, and one for the ranking comparison (see docs/agreement.md);
        numbers rounded to 6 decimals."""
        common = self._common()
        out: list[dict[str, Any]] = []
        for s in self.systems:
            for m in s.metrics:
                names = {"system": s.system, "system_a": s.system_a, "system_b": s.system_b}
                out.append({"record": "metric", **names, **_rounded(asdict(m)), **common})
        if self.ranking is not None:
            out.append({"record": "ranking", **_rounded(asdict(self.ranking)), **common})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._common(),
            "compared": [[a, b] for a, b in self.pairing.pairs],
            "only_a": self.pairing.only_a,
            "only_b": self.pairing.only_b,
            "unknown_map": self.pairing.unknown_map,
            "records": self.records(),
        }


def _rounded(value: Any) -> Any:
    """`value` with every float rounded to 6 decimals, as in `speechrole score --format json`."""
    from speechrole.score.table import round6

    if isinstance(value, float):
        return round6(value)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _values(system: SystemResults, failures: str) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Per sample key its row; the (samples x 9) sample scores (NaN: unscored; the last column overall, NaN
    unless all 8 are scored); and whether each sample is an agent failure — the score module's table."""
    from speechrole.score.aggregate import build_table

    table = build_table(system, None, {}, failures)  # type: ignore[arg-type]
    ratio = table.ratios
    values = np.column_stack([ratio, ratio.mean(axis=1)])
    assert table.failed is not None
    return {k: i for i, k in enumerate(table.keys)}, values, table.failed


def _kendall(x: np.ndarray, y: np.ndarray) -> float | None:
    """Kendall's tau-b of two orderings (defined from two items on, unlike `_correlation`'s samples)."""
    from scipy import stats

    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return _finite(stats.kendalltau(x, y).statistic)


def _compare_metric(
    metric: str, x: np.ndarray, y: np.ndarray, failed: np.ndarray, spec: tuple[int, float, int]
) -> MetricComparison:
    n = len(x)

    def shift(idx: np.ndarray) -> float | None:
        return float(np.mean(y[idx] - x[idx])) if len(idx) else None

    return MetricComparison(
        metric,
        n,
        int(failed.sum()),
        float(x.mean()) if n else None,
        float(y.mean()) if n else None,
        _with_interval(lambda idx: _correlation(x[idx], y[idx], "spearman"), n, *spec),
        _with_interval(lambda idx: _correlation(x[idx], y[idx], "kendall"), n, *spec),
        _with_interval(lambda idx: _alpha(np.vstack([x[idx], y[idx]])), n, *spec),
        _with_interval(shift, n, *spec),
    )


def _ranking(
    names: list[str],
    keys: list[str],
    a: np.ndarray,
    b: np.ndarray,
    replicates: int,
    confidence: float,
    seed: int,
) -> RankingComparison:
    """`a`, `b`: (samples x systems) overall scores, NaN where the system's sample is not common. The
    bootstrap resamples sample keys (one question, every system's answer to it) and recomputes both
    judges' system means."""
    valid = ~np.isnan(a)
    a0, b0 = np.where(valid, a, 0.0), np.where(valid, b, 0.0)

    def means(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        counts = valid[idx].sum(axis=0)
        if (counts == 0).any():
            return None
        return a0[idx].sum(axis=0) / counts, b0[idx].sum(axis=0) / counts

    def tau(idx: np.ndarray) -> float | None:
        found = means(idx)
        return None if found is None else _kendall(*found)

    full = means(np.arange(len(keys)))
    assert full is not None  # every compared system has a common sample
    mean_a = {n: float(v) for n, v in zip(names, full[0], strict=True)}
    mean_b = {n: float(v) for n, v in zip(names, full[1], strict=True)}
    order_a = sorted(names, key=lambda n: (-mean_a[n], n))
    order_b = sorted(names, key=lambda n: (-mean_b[n], n))
    return RankingComparison(
        names,
        {n: int(c) for n, c in zip(names, valid.sum(axis=0), strict=True)},
        mean_a,
        mean_b,
        order_a,
        order_b,
        _with_interval(tau, len(keys), replicates, confidence, seed),
        order_a != order_b,
    )


def compare_judges(
    a: JudgeSide,
    b: JudgeSide,
    pairing: Pairing,
    *,
    replicates: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    failures: str = "zero",
) -> JudgeAgreement:
    """Judge A against judge B on each paired system, and on the systems' ranking when two or more
    systems have samples both judges scored overall."""
    if failures not in ("zero", "exclude"):
        raise ValueError(f"failures must be zero or exclude, got {failures!r}")
    spec = (replicates, confidence, seed)
    compared: list[SystemComparison] = []
    overall: dict[str, dict[str, tuple[float, float]]] = {}  # pair -> sample -> (A, B) overall
    for name_a, name_b in pairing.pairs:
        rows_a, values_a, failed_a = _values(a.systems[name_a], failures)
        rows_b, values_b, failed_b = _values(b.systems[name_b], failures)
        keys = [k for k in rows_a if k in rows_b]
        ia = np.array([rows_a[k] for k in keys], dtype=int)
        ib = np.array([rows_b[k] for k in keys], dtype=int)
        va, vb = values_a[ia], values_b[ib]
        failed = failed_a[ia] | failed_b[ib]
        rows = []
        for c, metric in enumerate(COLUMNS):
            both = ~np.isnan(va[:, c]) & ~np.isnan(vb[:, c])
            rows.append(
                _compare_metric(metric, va[both, c], vb[both, c], failed[both], (*spec[:2], seed + c))
            )
        label = pair_label(name_a, name_b)
        compared.append(SystemComparison(label, name_a, name_b, rows))
        c = len(METRICS)
        overall[label] = {
            k: (float(va[i, c]), float(vb[i, c]))
            for i, k in enumerate(keys)
            if not (np.isnan(va[i, c]) or np.isnan(vb[i, c]))
        }
    ranked = [n for n, v in overall.items() if v]
    ranking = None
    if len(ranked) >= 2:
        keys = sorted({k for n in ranked for k in overall[n]})
        grid_a, grid_b = (np.full((len(keys), len(ranked)), np.nan) for _ in range(2))
        where = {k: i for i, k in enumerate(keys)}
        for j, n in enumerate(ranked):
            for k, (x, y) in overall[n].items():
                grid_a[where[k], j], grid_b[where[k], j] = x, y
        ranking = _ranking(ranked, keys, grid_a, grid_b, replicates, confidence, seed)
    return JudgeAgreement(
        a.identity, b.identity, compared, ranking, pairing, replicates, confidence, seed, failures
    )


# --- the terminal table -------------------------------------------------------------------------------


def _cell(i: Interval, digits: int = 3, signed: bool = False) -> str:
    if i.value is None:
        return "–"
    sign = "+" if signed else ""
    text = f"{i.value:{sign}.{digits}f}"
    return text if i.low is None else f"{text} [{i.low:{sign}.2f}, {i.high:{sign}.2f}]"


def render_terminal(report: JudgeAgreement, console: Console) -> None:
    """One table of system x metric, then the ranking comparison."""
    from rich.markup import escape
    from rich.table import Table

    from speechrole.schema import METRIC_ABBREV

    level = f"{report.confidence:.0%} CI"
    table = Table(
        title=f"Judge vs judge\nA: {escape(report.judge_a.label)}\nB: {escape(report.judge_b.label)}",
        caption=f"on the sample score s_agent/s_reference; n: samples both judges scored (agent failures "
        f"{'score 0' if report.failures == 'zero' else 'left out'}; fail: agent failures among them) · "
        f"{level}: bootstrap over samples, {report.replicates} replicates, seed {report.seed}",
        title_justify="left",
    )
    for col in ("system", "metric", "n", "fail", "Spearman", "Kendall", "alpha", "mean A", "mean B", "B − A"):
        table.add_column(col, justify="left" if col in ("system", "metric") else "right")
    for s in report.systems:
        for k, m in enumerate(s.metrics):
            mean = ("–" if v is None else f"{v:.3f}" for v in (m.mean_a, m.mean_b))
            table.add_row(
                escape(s.system) if k == 0 else "",
                METRIC_ABBREV.get(m.metric, m.metric),
                str(m.n),
                str(m.n_agent_failures),
                _cell(m.spearman),
                _cell(m.kendall),
                _cell(m.alpha),
                *mean,
                _cell(m.shift, signed=True),
            )
        table.add_section()
    console.print(table)
    r = report.ranking
    if r is None:
        console.print("ranking: fewer than two systems compared", highlight=False)
        return
    ranks = Table(title="System ranking by mean overall score (best first)", title_justify="left")
    for col in ("rank", "judge A", "mean A", "judge B", "mean B"):
        ranks.add_column(col, justify="left" if col.startswith("judge") else "right")
    for i, (x, y) in enumerate(zip(r.order_a, r.order_b, strict=True), start=1):
        ranks.add_row(str(i), escape(x), f"{r.means_a[x]:.3f}", escape(y), f"{r.means_b[y]:.3f}")
    console.print(ranks)
    verdict = "the ranking changes" if r.changes else "the ranking is the same"
    console.print(
        f"Kendall tau between the orderings: {_cell(r.kendall)} ({level}, bootstrap over samples); {verdict}",
        highlight=False,
    )


__all__ = [
    "JudgeAgreement",
    "JudgeIdentity",
    "JudgeSide",
    "MetricComparison",
    "Pairing",
    "RankingComparison",
    "SystemComparison",
    "compare_judges",
    "judge_configs",
    "load_judges",
    "load_side",
    "match_config",
    "notes",
    "pair_systems",
    "parse_map",
    "render_terminal",
]
