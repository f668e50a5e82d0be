"""Order effects of the `swap` judge: does the judge prefer the answer it heard first?

Judgments are built here, so the truth is known: a fair judge gives the same (test, reference) in both
orders; a biased one adds 2 points to whichever answer it heard first. `speechrole score` (JSON and
tables), the judge's `summary.json` and the HTML report must all show the numbers of the one function,
`speechrole.score.order.order_effects`, per judge configuration, and nothing for a one-order protocol.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechrole.bench import load_benchmark
from speechrole.cli import app
from speechrole.judge.report import write_summary
from speechrole.results import SystemResults
from speechrole.run import Run
from speechrole.schema import METRICS, SCORE_MAX, Judgment, MetricScore
from speechrole.score import BootstrapSpec, order_effects, score_systems
from speechrole.score.render import fmt_ci, render_markdown
from speechrole.score.table import split_key
from tests.factory import make_benchmark, make_outputs

SPEC = BootstrapSpec(replicates=500)
BIAS = 2


def base_scores(n: int) -> list[tuple[int, int]]:
    """(test, reference) a fair judge gives sample i: close calls (|test - ref| <= 1), ties included."""
    return [(5 + i % 2, 5 + (i // 2) % 2) for i in range(n)]


def heard(order: str, test: int, ref: int, bias: int) -> MetricScore:
    """The score of a judge that adds `bias` to the answer heard first, mapped back to (test, ref)."""
    if order == "AB":
        return MetricScore(test=min(SCORE_MAX, test + bias), ref=ref)
    return MetricScore(test=test, ref=min(SCORE_MAX, ref + bias))


def swap_judgments(keys: list[str], bias: int, **fields: object) -> list[Judgment]:
    out = []
    for key, (test, ref) in zip(keys, base_scores(len(keys)), strict=True):
        for order in ("AB", "BA"):
            scores = {m: heard(order, test, ref, bias) for m in METRICS}
            out.append(
                Judgment(sample=key, status="scored", order=order, protocol="swap", scores=scores, **fields)  # type: ignore[arg-type]
            )
    return out


KEYS = [f"single/R{i % 5}/{i}" for i in range(20)]


def test_a_fair_judge_has_no_order_effect() -> None:
    effects = order_effects(swap_judgments(KEYS, bias=0), SPEC)
    assert effects is not None
    assert (effects.n_samples, effects.n_paired_samples, effects.n_one_order_samples) == (20, 20, 0)
    for stat in [effects.overall, *effects.by_metric.values()]:
        assert stat.first.value == pytest.approx(stat.second.value)
        assert stat.first_minus_second.value == pytest.approx(0.0)
        low, high = stat.first_minus_second.low, stat.first_minus_second.high
        assert low is not None and high is not None and low <= 0.0 <= high
        assert stat.flip_rate.value == 0.0 and stat.n_flips == 0
        assert stat.mean_abs_diff.value == 0.0 and stat.mean_abs_diff.high == 0.0
    assert effects.overall.n_comparisons == 20 * 2 * len(METRICS)
    assert effects.by_metric[METRICS[0]].n_paired == 20
    assert effects.flipped_samples == []


def test_a_judge_favouring_the_first_answer_is_measured() -> None:
    judgments = swap_judgments(KEYS, bias=BIAS)
    effects = order_effects(judgments, SPEC)
    assert effects is not None
    for stat in [effects.overall, *effects.by_metric.values()]:
        assert stat.first.value == pytest.approx(1.0) and stat.second.value == 0.0
        assert stat.first_minus_second.low is not None and stat.first_minus_second.low > 0.5
        assert stat.flip_rate.value == pytest.approx(1.0)  # close calls: +2 always turns them around
        abs_diff = stat.mean_abs_diff
        assert abs_diff.value is not None and abs_diff.value > 0.2
        assert abs_diff.low is not None and abs_diff.low > 0.0  # the interval excludes 0
    assert effects.flipped_samples == sorted(KEYS, key=split_key)
    # The order-consistency rate of `score` is the same measurement, seen the other way round.
    system = score_systems([SystemResults("biased", Path(), judgments)], spec=SPEC).systems[0]
    assert system.order_consistency is not None and system.order_consistency.rate == pytest.approx(0.0)
    assert system.order_effects == effects


def test_one_order_samples_count_in_the_preference_only_and_repeats_use_the_latest() -> None:
    judgments = swap_judgments(KEYS[:4], bias=BIAS)
    lonely = Judgment(
        sample="single/R9/9",
        status="scored",
        order="AB",
        protocol="swap",
        scores={m: MetricScore(test=6, ref=5) for m in METRICS},
    )
    # An earlier, superseded AB judgment of the first sample (a fair one) must not count.
    stale = swap_judgments(KEYS[:1], bias=0)[0]
    unscored = Judgment(sample=KEYS[1], status="unscored", order="BA", protocol="swap", error="timeout")
    effects = order_effects([stale, *judgments, lonely, unscored], SPEC)
    assert effects is not None
    assert (effects.n_samples, effects.n_paired_samples, effects.n_one_order_samples) == (5, 4, 1)
    assert effects.n_judgments == 9
    assert effects.overall.n_comparisons == 9 * len(METRICS)
    assert effects.overall.n_paired == 4 and effects.overall.flip_rate.value == pytest.approx(1.0)
    assert effects.overall.first.value == pytest.approx(1.0)


def test_the_numbers_are_deterministic() -> None:
    judgments = swap_judgments(KEYS, bias=1)
    first = order_effects(judgments, SPEC)
    assert first is not None and first.to_dict() == order_effects(judgments, SPEC).to_dict()  # type: ignore[union-attr]


def test_a_one_order_protocol_has_no_order_effects(tmp_path: Path) -> None:
    official = [
        j.model_copy(update={"protocol": "official"}) for j in swap_judgments(KEYS, BIAS) if j.order == "AB"
    ]
    assert order_effects(official) is None
    report = score_systems([SystemResults("official", tmp_path, official)], spec=SPEC)
    assert report.systems[0].order_effects is None
    assert report.to_dict()["systems"][0]["order_effects"] is None  # type: ignore[index]
    assert "Order effects" not in render_markdown(report)


# --- one function, three places ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run judged by two configurations: `swap` with a first-position bias, and `official` (AB only)."""
    tmp = tmp_path_factory.mktemp("order-effects")
    bench_root = make_benchmark(tmp / "bench")
    run = make_outputs(tmp / "run", bench_root)
    (run / "run.json").write_text(
        json.dumps({"name": "r", "benchmark": {"spec": str(bench_root)}}), encoding="utf-8"
    )
    opened = Run.open(run)
    keys = [s.key for s in opened.bench.samples]
    inputs = {s.key: opened.judge_inputs(s) for s in opened.bench.samples}
    swap = swap_judgments(keys, BIAS, judge_model="judge-x", protocol_version="swap/1")
    official = [
        j.model_copy(update={"protocol": "official", "protocol_version": "official/1"})
        for j in swap_judgments(keys, 0, judge_model="judge-x")
        if j.order == "AB"
    ]
    lines = [j.model_copy(update={"inputs": inputs[j.sample]}).model_dump_json() for j in swap + official]
    (run / "judgments.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run


def test_score_json_summary_and_report_show_the_numbers_of_the_one_function(
    run_dir: Path, tmp_path: Path
) -> None:
    from speechrole.report import build_report

    systems = {s.protocol: s for s in Run.open(run_dir).systems()}
    assert set(systems) == {"swap", "official"}  # judge configurations are never pooled
    expected = order_effects(systems["swap"].judgments)  # the default spec, as score and judge use
    assert expected is not None and expected.overall.flip_rate.value == pytest.approx(1.0)
    assert order_effects(systems["official"].judgments) is None

    result = CliRunner().invoke(app, ["score", str(run_dir), "--format", "json"])
    assert result.exit_code == 0, result.output
    scored = {s["protocol"]: s for s in json.loads(result.stdout)["systems"]}
    assert scored["swap"]["order_effects"] == expected.to_dict()
    assert scored["official"]["order_effects"] is None

    bench, _ = load_benchmark(Path(json.loads((run_dir / "run.json").read_text())["benchmark"]["spec"]))
    for protocol, want in (("swap", expected.to_dict()), ("official", None)):
        written = write_summary(tmp_path / f"{protocol}.json", systems[protocol], bench, {}, 24)
        on_disk = json.loads((tmp_path / f"{protocol}.json").read_text(encoding="utf-8"))
        assert written["order_effects"] == on_disk["order_effects"] == want
        assert on_disk["scores"]["order_effects"] == want

    md = CliRunner().invoke(app, ["score", str(run_dir), "--format", "md"])
    assert md.exit_code == 0, md.output
    assert md.stdout.count("### Order effects") == 1 and "Order effects: r [swap" in md.stdout

    html = build_report([run_dir], tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count("Order effects: ") == 1
    overall = expected.overall
    for est in (overall.first, overall.second, overall.flip_rate, overall.mean_abs_diff):
        assert f'<td class="num">{fmt_ci(est)}</td>' in html
    assert f'<td class="num">{overall.n_comparisons}</td>' in html
