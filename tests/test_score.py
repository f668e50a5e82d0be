from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from speechrole.bench import load_benchmark
from speechrole.results import read_system
from speechrole.schema import GROUPS, METRICS
from speechrole.score import BootstrapSpec, Split, load_systems, score_systems
from speechrole.score.render import render_csv, render_json, render_markdown
from tests.factory import result_entry, write_results

ROLES = {"Ada": "en", "Bram": "en", "Cleo": "en", "hutao": "zh", "zhongli": "zh"}


def random_system(
    base: Path, seed: int, roles=ROLES
) -> dict[tuple[str, str, int], dict[str, tuple[int, int]]]:
    """Write a random result tree and return its scores for an independent computation."""
    rng = random.Random(seed)
    truth = {}
    for role in roles:
        for mode in ("single", "multi"):
            entries = []
            for i in range(2):
                scores = {m: (rng.randint(3, 10), rng.randint(6, 10)) for m in METRICS}
                truth[(mode, role, i)] = scores
                entries.append(result_entry(i, scores))
            write_results(base, mode, role, entries)
    return truth


def mean_ratio(truth, metric: str, keep=lambda k: True) -> float:
    ratios = [s[metric][0] / s[metric][1] for k, s in truth.items() if keep(k)]
    return sum(ratios) / len(ratios)


def test_scores_equal_an_independent_computation(tmp_path: Path) -> None:
    truth = random_system(tmp_path / "sys", 1)
    report = score_systems([read_system(tmp_path / "sys", "sys")])
    summary = report.systems[0].summary()
    assert summary is not None and summary.n_samples == 20 and summary.n_roles == 5
    for metric in METRICS:
        ms = summary.metrics[metric]
        assert ms.score.value == pytest.approx(mean_ratio(truth, metric))
        t = sum(s[metric][0] for s in truth.values())
        r = sum(s[metric][1] for s in truth.values())
        assert ms.ratio_of_means.value == pytest.approx(t / r)
        wins = sum(s[metric][0] > s[metric][1] for s in truth.values())
        ties = sum(s[metric][0] == s[metric][1] for s in truth.values())
        assert (ms.win, ms.tie) == (pytest.approx(wins / 20), pytest.approx(ties / 20))
        assert ms.score.low is not None and ms.score.low <= ms.score.value <= ms.score.high
    for group, members in GROUPS.items():
        assert summary.groups[group].value == pytest.approx(np.mean([mean_ratio(truth, m) for m in members]))
    assert summary.overall.value == pytest.approx(np.mean([mean_ratio(truth, m) for m in METRICS]))
    # Splits: the official role list makes hutao and zhongli Chinese; the rest are unknown -> not en.
    zh = report.systems[0].summary(Split(language="zh"))
    assert zh is not None and zh.n_samples == 8
    assert zh.metrics["Speech_Fluency"].score.value == pytest.approx(
        mean_ratio(truth, "Speech_Fluency", lambda k: k[1] in ("hutao", "zhongli"))
    )
    single_zh = report.systems[0].summary(Split(mode="single", language="zh"))
    assert single_zh is not None and single_zh.n_samples == 4
    assert report.systems[0].flags.unknown_language_roles == ["Ada", "Bram", "Cleo"]


def test_unscored_metrics_are_left_out_not_zero(tmp_path: Path) -> None:
    good = {m: (8, 10) for m in METRICS}
    broken = dict(good, Speech_Fluency=(0, 10), Emotion_Appropriateness=("9", 10))
    write_results(tmp_path / "s", "single", "Ada", [result_entry(0, good), result_entry(1, broken)])
    write_results(tmp_path / "s", "single", "Bram", [result_entry(0, good), result_entry(1, good)])
    report = score_systems([read_system(tmp_path / "s", "s")])
    s = report.systems[0].summary()
    assert s is not None
    assert s.metrics["Speech_Fluency"].score.value == pytest.approx(0.8)  # not (0.8*3 + 0)/4
    assert s.metrics["Speech_Fluency"].n == 3 and s.metrics["Speech_Fluency"].n_unscored == 1
    flags = report.systems[0].flags
    assert flags.unscored_metrics == {"Speech_Fluency": 1, "Emotion_Appropriateness": 1}
    assert flags.problem_kinds == {"not_integer": 1, "zero": 1}
    assert flags.unscored_samples == []


def test_ratios_above_one_and_defect_roles_are_flagged(tmp_path: Path) -> None:
    write_results(
        tmp_path / "s", "single", "Raylan Givens", [result_entry(0, (10, 9)), result_entry(1, (9, 9))]
    )
    flags = score_systems([read_system(tmp_path / "s", "s")]).systems[0].flags
    assert flags.ratio_above_1 == {m: 1 for m in METRICS}
    assert "Blair Waldorf" in flags.defect_roles["Raylan Givens"][0]


def test_bootstrap_is_reproducible_and_seeded(tmp_path: Path) -> None:
    random_system(tmp_path / "sys", 2)
    systems = [read_system(tmp_path / "sys", "sys")]
    a = render_json(score_systems(systems, spec=BootstrapSpec(seed=7)))
    b = render_json(score_systems(systems, spec=BootstrapSpec(seed=7)))
    c = render_json(score_systems(systems, spec=BootstrapSpec(seed=8)))
    assert a == b and a != c


def test_single_role_split_falls_back_to_sample_clusters(tmp_path: Path) -> None:
    random_system(tmp_path / "sys", 3)
    report = score_systems([read_system(tmp_path / "sys", "sys")], by=("role",))
    ada = report.systems[0].summary(Split(role="Ada"))
    assert ada is not None and ada.ci_cluster == "sample" and ada.n_samples == 4
    assert report.systems[0].summary().ci_cluster == "role"  # type: ignore[union-attr]


def test_paired_comparison_uses_shared_samples_only(tmp_path: Path) -> None:
    truth_a = random_system(tmp_path / "A", 4)
    truth_b = random_system(tmp_path / "B", 5, roles={"Ada": "en", "Bram": "en", "Cleo": "en"})
    systems = load_systems([tmp_path / "A", tmp_path / "B"])
    report = score_systems(systems, baseline="B")
    (comp,) = [c for c in report.comparisons if c.split == Split()]
    assert (comp.system, comp.baseline, comp.overall.n_shared) == ("A", "B", 12)
    shared = set(truth_b)
    for metric in METRICS:
        expected = mean_ratio(truth_a, metric, lambda k: k in shared) - mean_ratio(truth_b, metric)
        assert comp.metrics[metric].estimate.value == pytest.approx(expected)
    expected_overall = np.mean([comp.metrics[m].estimate.value for m in METRICS])
    assert comp.overall.estimate.value == pytest.approx(expected_overall)
    assert comp.overall.p_value is not None and 0 <= comp.overall.p_value <= 1
    with pytest.raises(ValueError, match="baseline"):
        score_systems(systems, baseline="nobody")


def test_identical_systems_differ_by_zero(tmp_path: Path) -> None:
    random_system(tmp_path / "A", 6)
    random_system(tmp_path / "B", 6)
    report = score_systems(load_systems([tmp_path / "A", tmp_path / "B"]), baseline="A")
    (comp,) = [c for c in report.comparisons if c.split == Split()]
    assert comp.overall.estimate.value == pytest.approx(0.0)
    assert comp.overall.estimate.low == pytest.approx(0.0) and comp.overall.estimate.high == pytest.approx(
        0.0
    )


def test_bench_gives_categories_languages_and_coverage(tmp_path: Path, bench_root: Path) -> None:
    bench, _ = load_benchmark(bench_root)
    base = tmp_path / "sys"
    write_results(base, "single", "Ada", [result_entry(0, (8, 9)), result_entry(1, (9, 9))])
    write_results(
        base, "single", "libai", [result_entry(0, (6, 9)), result_entry(1, (7, 9)), result_entry(2, (7, 9))]
    )
    report = score_systems([read_system(base, "sys")], bench=bench, by=("language", "category"))
    system = report.systems[0]
    assert system.summary(Split(language="zh")).n_samples == 3  # type: ignore[union-attr]
    assert system.summary(Split(category="Reasoning and Motivation")).n_samples == 2  # type: ignore[union-attr]
    assert system.flags.extra_samples == ["single/libai/2"]
    assert "multi/Bram/0" in system.flags.missing_samples
    assert system.flags.unknown_language_roles == []


def test_renderers_agree(tmp_path: Path) -> None:
    random_system(tmp_path / "A", 7)
    random_system(tmp_path / "B", 8)
    report = score_systems(
        load_systems([tmp_path / "A", tmp_path / "B"]), baseline="A", by=("mode", "language", "role")
    )
    md = render_markdown(report)
    overall = report.systems[0].summary().overall.value  # type: ignore[union-attr]
    assert f"{overall:.3f}" in md and "### Leaderboard" in md and "Paired difference" in md
    rows = render_csv(report).splitlines()
    assert rows[0].startswith("kind,system,baseline,mode")
    assert any(r.startswith("score,A,,all,all,,,overall,") for r in rows)
    assert any(r.startswith("difference,B,A,all,all,,,overall,") for r in rows)
