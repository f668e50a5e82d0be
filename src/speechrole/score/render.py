"""Present a `ScoreReport` as terminal tables, Markdown, CSV or JSON.

Tables are built once as plain rows (`TextTable`) and rendered by rich (terminal) or tabulate
(Markdown), so both show the same numbers. CSV is long-format (one row per system, split and measure);
JSON is `ScoreReport.to_dict()`, whose keys are documented in docs/score-json.md.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from speechrole.schema import GROUPS, METRIC_ABBREV, METRICS
from speechrole.score.aggregate import ALL, Comparison, Estimate, ScoreReport, Split, SystemScores

MAX_PROBLEMS_SHOWN = 12


@dataclass
class TextTable:
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_ci(est: Estimate, sep: str = " ") -> str:
    if est.value is None:
        return "–"
    if est.low is None or est.high is None:
        return fmt(est.value)
    return f"{fmt(est.value)}{sep}[{fmt(est.low, 2)}, {fmt(est.high, 2)}]"


def fmt_diff(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}"


def _caption(report: ScoreReport) -> str:
    protocols = sorted({s.protocol or "unknown" for s in report.systems})
    judges = sorted({s.judge_model or "not recorded" for s in report.systems})
    spec = report.spec
    return (
        f"protocol: {', '.join(protocols)} · judge model: {', '.join(judges)} · score = mean of s_test/s_ref · "
        f"agent failures {'score 0' if report.failures == 'zero' else 'excluded'} · "
        f"[{spec.confidence:.0%} CI: bootstrap over roles, {spec.replicates} replicates, seed {spec.seed}]"
    )


def _unscored(summary_n: int, s: SystemScores) -> str:
    unscored = sum(s.flags.unscored_metrics.values())
    return f"{summary_n} samples, {len(s.flags.unscored_samples)} unscored, {unscored} unscored metric scores"


def leaderboard(report: ScoreReport, sep: str = " ") -> TextTable:
    rows = []
    ranked = sorted(
        report.systems,
        key=lambda s: (
            -(s.summary().overall.value if s.summary() and s.summary().overall.value is not None else -1)
        ),
    )
    for s in ranked:
        summ = s.summary()
        assert summ is not None
        rows.append(
            [
                s.name,
                str(summ.n_samples),
                str(summ.n_agent_failures if report.failures == "zero" else len(s.flags.agent_failures)),
                str(summ.n_unscored_samples),
                str(sum(m.n_unscored for m in summ.metrics.values())),
                str(sum(s.flags.stale_judgments.values())),
                *(fmt_ci(summ.groups[g], sep) for g in GROUPS),
                fmt_ci(summ.overall, sep),
            ]
        )
    counts = {r[1] for r in rows}
    notes = (
        [
            "systems were judged on different numbers of samples: compare them with --baseline (paired, shared samples)"
        ]
        if len(counts) > 1
        else []
    )
    return TextTable(
        "Leaderboard (all modes, all languages)",
        [
            "system",
            "samples",
            "agent failures",
            "judge errors (samples)",
            "unscored scores",
            "stale judgments",
            *GROUPS,
            "overall",
        ],
        rows,
        _caption(report),
        notes,
    )


def metric_table(report: ScoreReport, sep: str = " ") -> TextTable:
    rows = []
    for s in report.systems:
        summ = s.summary()
        assert summ is not None
        rows.append([s.name, *(fmt_ci(summ.metrics[m].score, sep) for m in METRICS)])
    return TextTable(
        "Per metric: mean of s_test/s_ref (all modes, all languages)",
        ["system", *(METRIC_ABBREV[m] for m in METRICS)],
        rows,
        _caption(report),
        ["IA SF CC = interaction; SN PC EA = expressiveness; PersC KC = fidelity"],
    )


def detail_table(report: ScoreReport) -> TextTable:
    """Ratio of means and win/tie/loss, which tell whether a mean of ratios is carried by a few samples."""
    rows = []
    for s in report.systems:
        summ = s.summary()
        assert summ is not None
        for m in METRICS:
            ms = summ.metrics[m]
            rows.append(
                [
                    s.name,
                    METRIC_ABBREV[m],
                    fmt(ms.score.value),
                    fmt(ms.ratio_of_means.value),
                    f"{fmt(ms.win, 2)}/{fmt(ms.tie, 2)}/{fmt(ms.loss, 2)}",
                    str(ms.n),
                    str(ms.n_unscored),
                    str(ms.n_ratio_above_1),
                ]
            )
    return TextTable(
        "Per metric detail (all modes, all languages)",
        ["system", "metric", "mean ratio", "ratio of means", "win/tie/loss", "n", "unscored", "ratio > 1"],
        rows,
    )


def _split_name(split: Split) -> str:
    parts = [p for p in (split.mode, split.language) if p != ALL]
    return "·".join(parts)


def splits_table(report: ScoreReport, sep: str = " ") -> TextTable | None:
    splits: list[Split] = []
    for s in report.systems:
        for summ in s.summaries:
            plain = summ.split.role is None and summ.split.category is None and summ.split != Split()
            if plain and summ.split not in splits:
                splits.append(summ.split)
    if not splits:
        return None
    rows = []
    for s in report.systems:
        cells = []
        for split in splits:
            summ = s.summary(split)
            cells.append("–" if summ is None else f"{fmt_ci(summ.overall, sep)} (n={summ.n_samples})")
        rows.append([s.name, *cells])
    return TextTable(
        "Overall score by mode and language", ["system", *map(_split_name, splits)], rows, _caption(report)
    )


def _by_table(report: ScoreReport, attr: str, title: str, sep: str) -> TextTable | None:
    values: list[str] = []
    for s in report.systems:
        for summ in s.summaries:
            v = getattr(summ.split, attr)
            if v is not None and v not in values:
                values.append(v)
    if not values:
        return None
    defect_roles = {r for s in report.systems for r in s.flags.defect_roles}
    rows = []
    for v in sorted(values):
        split = Split(**{attr: v})
        label = f"{v} (!)" if attr == "role" and v in defect_roles else v
        cells = []
        for s in report.systems:
            summ = s.summary(split)
            cells.append("–" if summ is None else f"{fmt_ci(summ.overall, sep)} (n={summ.n_samples})")
        rows.append([label, *cells])
    notes = ["(!) role with known data defects, see flags"] if attr == "role" and defect_roles else []
    return TextTable(title, [attr, *(s.name for s in report.systems)], rows, _caption(report), notes)


def comparison_table(report: ScoreReport, sep: str = " ") -> TextTable | None:
    comps: list[Comparison] = [c for c in report.comparisons if c.split == Split()]
    if not comps:
        return None

    def cell(d) -> str:  # type: ignore[no-untyped-def]
        ci = "" if d.estimate.low is None else f"{sep}[{d.estimate.low:+.3f}, {d.estimate.high:+.3f}]"
        return f"{fmt_diff(d.estimate.value)}{ci}"

    rows = [
        [
            c.system,
            c.baseline,
            str(c.overall.n_shared),
            cell(c.overall),
            "–" if c.overall.p_value is None else f"{c.overall.p_value:.3f}",
            *(cell(c.groups[g]) for g in GROUPS),
        ]
        for c in comps
    ]
    return TextTable(
        "Paired difference against the baseline (on shared samples)",
        ["system", "baseline", "shared samples", "overall diff", "p", *GROUPS],
        rows,
        _caption(report),
    )


def order_effects_tables(report: ScoreReport, sep: str = " ") -> list[TextTable]:
    """One table per system judged in both orders (`score.order.order_effects`); none for the others."""
    tables = []
    for s in report.systems:
        e = s.order_effects
        if e is None:
            continue
        rows = [
            [
                label,
                fmt_ci(st.first, sep),
                fmt_ci(st.second, sep),
                fmt_ci(st.tie, sep),
                fmt_ci(st.first_minus_second, sep),
                str(st.n_comparisons),
                fmt_ci(st.flip_rate, sep),
                fmt_ci(st.mean_abs_diff, sep),
                str(st.n_paired),
            ]
            for label, st in [("overall", e.overall), *((METRIC_ABBREV[m], e.by_metric[m]) for m in METRICS)]
        ]
        notes = [
            f"{e.n_paired_samples} of {e.n_samples} samples judged in both orders (flip rate, |AB−BA|); "
            f"{e.n_one_order_samples} in one order only (preference only)"
        ]
        tables.append(
            TextTable(
                f"Order effects: {s.name}",
                [
                    "metric",
                    "first heard wins",
                    "second heard wins",
                    "tie",
                    "first − second",
                    "comparisons",
                    "flip rate",
                    "mean |AB−BA|",
                    "samples in both orders",
                ],
                rows,
                "shares of comparisons (judgment × metric) where the answer heard first (AB: agent, BA: "
                "reference) or second scored higher; flip: the preferred side (sign of s_test − s_ref, a tie "
                "its own side) differs between AB and BA; |AB−BA|: per sample |r_AB − r_BA|, r = "
                "s_test/s_ref; overall pools all metrics · "
                f"[{e.confidence:.0%} CI: bootstrap over samples, {e.replicates} replicates, seed {e.seed}]",
                notes,
            )
        )
    return tables


def flags_table(report: ScoreReport) -> TextTable:
    rows = []
    notes: list[str] = []
    for s in report.systems:
        f = s.flags
        kinds = ", ".join(f"{k} {v}" for k, v in f.problem_kinds.items()) or "none"
        rows.append(
            [
                s.name,
                str(len(f.agent_failures)),
                str(len(f.unscored_samples)),
                str(sum(f.unscored_metrics.values())),
                str(sum(f.stale_judgments.values())),
                str(sum(f.stale_measures.values())),
                kinds,
                str(len(f.unreadable_files)),
                str(sum(f.ratio_above_1.values())),
                ", ".join(f.defect_roles) or "none",
                "–" if report.benchmark is None else f"{len(f.missing_samples)}/{len(f.extra_samples)}",
                "–"
                if s.order_consistency is None
                else f"{fmt(s.order_consistency.rate, 2)} (n={s.order_consistency.n_samples})",
            ]
        )
        for role, reasons in f.defect_roles.items():
            notes += [f"data defect, {role}: {r}" for r in reasons]
        for why, n in f.stale_judgments.items():
            notes.append(f"{s.name}: {n} stale judgment(s) skipped: {why}")
        for why, n in f.stale_measures.items():
            notes.append(f"{s.name}: {n} stale measure(s) skipped: {why}")
        shown = list(f.agent_failures.items())[:MAX_PROBLEMS_SHOWN]
        notes += [f"{s.name}: agent failure {key}: {why}" for key, why in shown]
        if f.unknown_language_roles:
            notes.append(
                f"{s.name}: language unknown for {', '.join(f.unknown_language_roles)} (pass --bench or --language)"
            )
        errors = [p for p in s.problems if p.severity == "error"]
        notes += [f"{s.name}: {p}" for p in errors[:MAX_PROBLEMS_SHOWN]]
        if len(errors) > MAX_PROBLEMS_SHOWN:
            notes.append(
                f"{s.name}: ... {len(errors) - MAX_PROBLEMS_SHOWN} more problems (see --format json)"
            )
    return TextTable(
        "Flags",
        [
            "system",
            "agent failures",
            "judge errors (samples)",
            "unscored scores",
            "stale judgments",
            "stale measures",
            "problems",
            "unreadable files",
            "ratios > 1",
            "defect roles",
            "missing/extra vs bench",
            "order consistency",
        ],
        rows,
        "agent failures score 0 (or are excluded with --failures exclude); judge errors and stale judgments "
        "are left out of every mean and never counted as 0",
        sorted(set(notes), key=notes.index),
    )


def objective_table(report: ScoreReport, sep: str = " ") -> TextTable | None:
    rows = []
    notes: list[str] = []
    for s in report.systems:
        obj = s.objective
        if not obj:
            continue
        first = obj["splits"][0]  # type: ignore[index]
        for m in first["measures"]:
            est = {
                k: Estimate(m[k]["value"], m[k]["ci_low"], m[k]["ci_high"])
                for k in ("agent", "reference", "ratio")
            }
            rows.append(
                [
                    s.name,
                    m["measure"],
                    {"higher": "↑", "lower": "↓"}.get(m["direction"], ""),
                    fmt_ci(est["agent"], sep),
                    fmt_ci(est["reference"], sep),
                    fmt_ci(est["ratio"], sep),
                    str(m["n"]),
                ]
            )
        if obj["errors"]:  # type: ignore[index]
            notes.append(
                f"{s.name}: clips without a value: " + ", ".join(f"{k} {v}" for k, v in obj["errors"].items())
            )  # type: ignore[union-attr]
        if obj["flags"]:  # type: ignore[index]
            notes.append(
                f"{s.name}: flagged agent clips: " + ", ".join(f"{k} {v}" for k, v in obj["flags"].items())
            )  # type: ignore[union-attr]
    if not rows:
        return None
    return TextTable(
        "Objective metrics (all modes, all languages; per sample, mean over its turns)",
        ["system", "measure", "better", "agent", "reference", "agent / reference", "samples"],
        rows,
        f"[{report.spec.confidence:.0%} CI: bootstrap over roles] · ↑ higher is better, ↓ lower is better",
        notes,
    )


#: The measures shown per role: (measure, column title, show the reference beside the agent).
HEADLINE_MEASURES = (
    ("speaker.similarity", "voice similarity ↑", False),
    ("dnsmos.ovrl", "DNSMOS OVRL ↑ (agent / ref)", True),
    ("intelligibility.error_rate", "ASR error ↓ (agent / ref)", True),
    ("duration.seconds", "seconds (agent / ref)", True),
    ("latency.first_audio_s", "first audio s ↓", False),
)


def objective_role_table(report: ScoreReport) -> TextTable | None:
    """The headline objective measures of each role (needs `role` among the splits), one row per role."""
    rows = []
    for s in report.systems:
        for split in (s.objective or {}).get("splits", []):  # type: ignore[union-attr]
            if split.get("role") is None:
                continue
            found = {m["measure"]: m for m in split["measures"]}
            cells = []
            for measure, _, with_ref in HEADLINE_MEASURES:
                m = found.get(measure)
                agent = fmt(m["agent"]["value"], 2) if m else "–"
                cells.append(f"{agent} / {fmt(m['reference']['value'], 2)}" if m and with_ref else agent)
            rows.append([s.name, str(split["role"]), *cells])
    if not rows:
        return None
    return TextTable(
        "Objective metrics by role (per sample, mean over its turns)",
        ["system", "role", *(title for _, title, _ in HEADLINE_MEASURES)],
        rows,
        "voice similarity: agent's clips against the role's reference voice (cosine) · all measures: "
        "speechrole score RUN --by role",
    )


def correlation_table(report: ScoreReport, sep: str = " ") -> TextTable | None:
    rows = []
    for s in report.systems:
        for c in (s.objective or {}).get("correlations", []):  # type: ignore[union-attr]
            rho = Estimate(c["spearman"]["value"], c["spearman"]["ci_low"], c["spearman"]["ci_high"])
            rows.append(
                [s.name, METRIC_ABBREV[c["judge_metric"]], c["measure"], fmt_ci(rho, sep), str(c["n"])]
            )
    if not rows:
        return None
    return TextTable(
        "Judge metrics against their objective counterparts (Spearman's rho, per sample)",
        ["system", "judge metric", "objective measure", "rho", "samples"],
        rows,
        "rho between the judge's score of the agent and the agent's measured value · CI: bootstrap over roles",
    )


def judge_checks_tables(report: ScoreReport) -> list[TextTable]:
    """Per system, the probes and the last canary check recorded in its run (`speechrole probe`,
    `judge --canary`), for its judge configuration only."""
    tables = []
    for s in report.systems:
        checks = s.judge_checks or {}
        probes = [p for p in checks.get("probes", []) if p.get("expected")]
        canaries = checks.get("canaries", [])
        if not probes and not canaries:
            continue
        rows = [
            [
                str(p["probe"]),
                str(p["kind"]),
                str(p["metric"]),
                str(p["n"]),
                fmt_diff(p.get("shift")),
                "–" if p.get("low") is None else f"[{p['low']:+.3f}, {p['high']:+.3f}]",
                str(p["verdict"]),
            ]
            for p in probes
        ]
        notes = []
        for c in canaries:
            moved = [d["metric"] for d in c.get("drift", []) if d.get("drifted")]
            state = (
                "first answers recorded"
                if c.get("recorded")
                else f"drifted on {', '.join(moved)}"
                if moved
                else f"no drift above {c.get('threshold')} points"
            )
            notes.append(f"drift canaries ({c.get('created', '')}): {state}")
        tables.append(
            TextTable(
                f"Judge checks: {s.name}",
                ["probe", "kind", "metric", "n", "shift", "95% CI", "verdict"],
                rows,
                "shift of the sample ratio under each probe (reference-self: against a tie); "
                "from probes.jsonl and canary.jsonl in the run",
                notes,
            )
        )
    return tables


def all_tables(report: ScoreReport, sep: str = " ", detail: bool = False) -> list[TextTable]:
    judged = any(s.n_judgments for s in report.systems) or not any(s.objective for s in report.systems)
    builders: list[Callable[[], TextTable | None]] = [
        lambda: leaderboard(report, sep) if judged else None,
        lambda: metric_table(report, sep) if judged else None,
        lambda: splits_table(report, sep) if judged else None,
        lambda: _by_table(report, "role", "Overall score by role", sep) if judged else None,
        lambda: _by_table(report, "category", "Overall score by category", sep) if judged else None,
        lambda: comparison_table(report, sep),
        lambda: objective_table(report, sep),
        lambda: objective_role_table(report),
        lambda: correlation_table(report, sep),
        lambda: detail_table(report) if detail else None,
    ]
    tables = [
        *(t for t in (b() for b in builders) if t is not None),
        *order_effects_tables(report, sep),
        *judge_checks_tables(report),
    ]
    return [*tables, flags_table(report)] if judged else tables


def render_terminal(report: ScoreReport, console: object | None = None, detail: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    out = console if console is not None else Console()
    for t in all_tables(report, sep="\n", detail=detail):
        table = Table(title=t.title, caption=t.caption or None, show_lines=True, title_justify="left")
        for i, col in enumerate(t.columns):
            table.add_column(col, justify="left" if i == 0 else "right", overflow="fold")
        for row in t.rows:
            table.add_row(*row)
        out.print(table)  # type: ignore[attr-defined]
        for note in t.notes:
            out.print(f"  {note}", markup=False, highlight=False)  # type: ignore[attr-defined]
        out.print()  # type: ignore[attr-defined]


def render_markdown(report: ScoreReport, detail: bool = False) -> str:
    from tabulate import tabulate

    parts = []
    for t in all_tables(report, detail=detail):
        parts.append(f"### {t.title}\n")
        parts.append(tabulate(t.rows, headers=t.columns, tablefmt="github", disable_numparse=True))
        if t.caption:
            parts.append(f"\n_{t.caption}_")
        parts += [f"\n- {n}" for n in t.notes]
        parts.append("\n")
    return "\n".join(parts)


CSV_COLUMNS = [
    "kind",
    "system",
    "baseline",
    "mode",
    "language",
    "role",
    "category",
    "measure",
    "value",
    "ci_low",
    "ci_high",
    "ratio_of_means",
    "win",
    "tie",
    "loss",
    "n",
    "n_unscored",
    "p_value",
]


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6f}"


def _est_csv(est: Estimate) -> dict[str, str]:
    return {"value": _num(est.value), "ci_low": _num(est.low), "ci_high": _num(est.high)}


def render_csv(report: ScoreReport) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for s in report.systems:
        for summ in s.summaries:
            base = {"kind": "score", "system": s.name, **summ.split.to_dict()}
            for m, ms in summ.metrics.items():
                writer.writerow(
                    {
                        **base,
                        "measure": m,
                        **_est_csv(ms.score),
                        "ratio_of_means": _est_csv(ms.ratio_of_means)["value"],
                        "win": _num(ms.win),
                        "tie": _num(ms.tie),
                        "loss": _num(ms.loss),
                        "n": ms.n,
                        "n_unscored": ms.n_unscored,
                    }
                )
            for g, est in [*summ.groups.items(), ("overall", summ.overall)]:
                writer.writerow({**base, "measure": g, **_est_csv(est), "n": summ.n_samples})
    for c in report.comparisons:
        base = {"kind": "difference", "system": c.system, "baseline": c.baseline, **c.split.to_dict()}
        for name, d in [*c.metrics.items(), *c.groups.items(), ("overall", c.overall)]:
            writer.writerow(
                {
                    **base,
                    "measure": name,
                    **_est_csv(d.estimate),
                    "n": d.n_shared,
                    "p_value": "" if d.p_value is None else f"{d.p_value:.6f}",
                }
            )
    return buf.getvalue()


def render_json(report: ScoreReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
