"""Judge against judge (`speechrole agreement A B`, `--judges`): known relationships between two synthetic
judges, the pairing of systems, the command, and the two released results trees."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechrole.cli import app
from speechrole.judge_agreement import (
    JudgeAgreement,
    compare_judges,
    load_side,
    pair_systems,
    parse_map,
)
from speechrole.schema import METRICS, Judgment, MetricScore
from tests.factory import make_benchmark, make_outputs, result_entry, write_results

runner = CliRunner()
REPLICATES = 100
FAST = ["--replicates", "100", "--format", "json"]  # the command, quickly, as JSON
FILES = [(mode, role) for mode in ("single", "multi") for role in ("Ada", "Bram", "libai")]
N_SAMPLES = 4 * len(FILES)  # 4 entries per file

Scores = Callable[[str, str, int, str], tuple[int, int]]  # (system, mode/role, idx, metric) -> (test, ref)


def _base(where: str, idx: int, metric: str) -> tuple[int, int]:
    """A judge's scores that vary over samples and metrics (test 2..7, reference 7..10)."""
    h = zlib.crc32(f"{where}/{idx}/{metric}".encode())
    return 2 + h % 6, 7 + (h >> 8) % 4


def _tree(root: Path, systems: dict[str, int], scores: Scores) -> Path:
    """A results tree `root/<system>/{single,multi}/<role>.json` of the given systems."""
    for system in systems:
        for mode, role in FILES:
            entries = [
                result_entry(i, {m: scores(system, f"{mode}/{role}", i, m) for m in METRICS})
                for i in range(4)
            ]
            write_results(root / system, mode, role, entries)
    return root


def _judge_a(system: str, where: str, idx: int, metric: str) -> tuple[int, int]:
    return _base(f"{system}/{where}", idx, metric)


def _compare(a: Path, b: Path, mapping: dict[str, str] | None = None) -> JudgeAgreement:
    side_a, side_b = load_side(a), load_side(b)
    pairing = pair_systems(list(side_a.systems), list(side_b.systems), mapping)
    return compare_judges(side_a, side_b, pairing, replicates=REPLICATES, seed=3)


def test_identical_judges_agree_perfectly(tmp_path: Path) -> None:
    systems = {"sysA": 0, "sysB": 0}
    a = _tree(tmp_path / "a", systems, _judge_a)
    b = _tree(tmp_path / "b", systems, _judge_a)
    report = _compare(a, b)
    assert [s.system for s in report.systems] == ["sysA", "sysB"]
    for s in report.systems:
        assert [m.metric for m in s.metrics] == [*METRICS, "overall"]
        for m in s.metrics:
            assert m.n == N_SAMPLES and m.n_agent_failures == 0
            assert m.spearman.value == pytest.approx(1.0) and m.kendall.value == pytest.approx(1.0)
            assert m.alpha.value == pytest.approx(1.0)
            assert m.shift.value == pytest.approx(0.0)
            assert m.shift.low is not None and m.shift.high is not None
            assert m.shift.low <= 0 <= m.shift.high
    assert report.judge_a.label.startswith(f"released results at {a}") and report.judge_a.model is None
    assert report.ranking is not None and report.ranking.kendall.value == pytest.approx(1.0)
    assert not report.ranking.changes and report.ranking.order_a == report.ranking.order_b
    again = _compare(a, b)  # seeded: the same numbers twice
    assert again.records() == report.records()


def test_a_judge_one_point_kinder_to_the_agent_shifts_every_metric_up(tmp_path: Path) -> None:
    def kinder(system: str, where: str, idx: int, metric: str) -> tuple[int, int]:
        test, ref = _judge_a(system, where, idx, metric)
        return test + 1, ref

    a = _tree(tmp_path / "a", {"sys": 0}, _judge_a)
    b = _tree(tmp_path / "b", {"sys": 0}, kinder)
    (system,) = _compare(a, b).systems
    for m in system.metrics:
        assert m.shift.value is not None and m.shift.value > 0
        assert m.shift.low is not None and m.shift.low > 0, m  # the interval excludes 0
        assert m.mean_b is not None and m.mean_a is not None and m.mean_b > m.mean_a
        assert m.spearman.value is not None and m.spearman.value > 0.8  # the same order, nearly


def test_a_reversed_system_ranking(tmp_path: Path) -> None:
    levels = {"best": 4, "middle": 2, "worst": 0}

    def ranked(reverse: bool) -> Scores:
        def scores(system: str, where: str, idx: int, metric: str) -> tuple[int, int]:
            test, _ = _base(where, idx, metric)
            level = levels[system] if not reverse else 4 - levels[system]
            return min(10, test // 2 + 1 + level), 10

        return scores

    a = _tree(tmp_path / "a", levels, ranked(False))
    b = _tree(tmp_path / "b", levels, ranked(True))
    ranking = _compare(a, b).ranking
    assert ranking is not None
    assert ranking.order_a == ["best", "middle", "worst"] and ranking.order_b == ["worst", "middle", "best"]
    assert ranking.kendall.value == pytest.approx(-1.0) and ranking.changes
    assert ranking.kendall.high is not None and ranking.kendall.high < 0
    assert ranking.n == dict.fromkeys(levels, N_SAMPLES)


def test_mapping_pairs_names_and_reports_the_rest(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", {"x1": 0, "x2": 0, "x3": 0}, _judge_a)
    b = _tree(tmp_path / "b", {"y1": 0, "y2": 0, "z": 0}, _judge_a)
    pairing = pair_systems(["x1", "x2", "x3"], ["y1", "y2", "z"], parse_map(["x1=y1", "x2 = y2", "q=r"]))
    assert pairing.pairs == [("x1", "y1"), ("x2", "y2")]
    assert pairing.only_a == ["x3"] and pairing.only_b == ["z"] and pairing.unknown_map == ["q"]
    single = pair_systems(["x1"], ["y1"])  # one system on each side (two runs of one agent): paired
    assert single.pairs == [("x1", "y1")] and single.implicit
    assert pair_systems(["x1", "x2"], ["y1"]).pairs == []
    with pytest.raises(ValueError, match="NAME_A=NAME_B"):
        parse_map(["x1"])
    with pytest.raises(ValueError, match="several systems of A"):
        pair_systems(["x1", "x2"], ["y1"], {"x1": "y1", "x2": "y1"})
    result = runner.invoke(
        app,
        ["agreement", str(a), str(b), "--map", "x1=y1", "--map", "x2=y2", "--map", "q=r", *FAST],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["compared"] == [["x1", "y1"], ["x2", "y2"]]
    assert data["only_a"] == ["x3"] and data["only_b"] == ["z"]
    assert "only in A: x3" in result.stderr and "only in B: z" in result.stderr
    assert "A has no system 'q'" in result.stderr
    assert {r["system"] for r in data["records"] if r["record"] == "metric"} == {"x1 = y1", "x2 = y2"}
    none = runner.invoke(app, ["agreement", str(a), str(b)])
    assert none.exit_code == 2 and "--map" in none.stderr


def test_command_writes_one_record_per_system_and_metric_and_one_per_ranking(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", {"s1": 0, "s2": 0, "s3": 0}, _judge_a)
    b = _tree(tmp_path / "b", {"s1": 0, "s2": 0, "s3": 0}, _judge_a)
    out = tmp_path / "agreement.jsonl"
    args = ["agreement", str(a), str(b), "--replicates", "100", "--seed", "7", "--output", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Spearman" in result.stdout and "the ranking is the same" in result.stdout
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 3 * 9 + 1
    assert [r["record"] for r in records].count("ranking") == 1
    for r in records:
        assert r["judge_a"]["source"] == str(a) and r["judge_b"]["source"] == str(b)
        assert r["judge_a"]["model"] is None and "released results at" in r["judge_a"]["label"]
        assert r["replicates"] == 100 and r["seed"] == 7
    metric = records[0]
    assert {"system_a", "system_b", "metric", "n", "spearman", "kendall", "alpha", "shift"} <= set(metric)
    assert metric["shift"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    first = out.read_text(encoding="utf-8")
    assert runner.invoke(app, args).exit_code == 0 and out.read_text(encoding="utf-8") == first
    bad = runner.invoke(app, ["agreement", str(a), str(b), "--format", "csv"])
    assert bad.exit_code == 2 and "table or json" in bad.stderr


def test_human_mode_is_unchanged_and_refuses_judge_options(tmp_path: Path) -> None:
    result = runner.invoke(app, ["agreement", str(tmp_path)])
    assert result.exit_code == 2 and "no ratings yet" in result.stderr
    mapped = runner.invoke(app, ["agreement", str(tmp_path), "--map", "a=b"])
    assert mapped.exit_code == 2 and "judge vs judge" in mapped.stderr


# --- runs: two judge configurations of one run, and two runs --------------------------------------------


def _judged_run(root: Path, run_dir: Path, judges: dict[str, int], name: str = "agent") -> Path:
    """A run of the 3-role fixture benchmark judged by `judges` (model -> points added to the agent's
    score); judgments are written as `speechrole judge` records them, with their inputs."""
    from speechrole.run import Run

    bench_root = root / "bench"
    if not bench_root.is_dir():
        make_benchmark(bench_root)
    make_outputs(run_dir, bench_root)
    info = {"name": name, "benchmark": {"spec": str(bench_root)}}
    (run_dir / "run.json").write_text(json.dumps(info), encoding="utf-8")
    run = Run.open(run_dir)
    lines = []
    for model, bonus in judges.items():
        for sample in run.bench.samples:
            scores = {}
            for m in METRICS:
                test, ref = _base(sample.key, 0, m)
                scores[m] = MetricScore(test=test + bonus, ref=ref)
            inputs = run.judge_inputs(sample)
            assert inputs is not None
            judgment = Judgment(
                sample=sample.key,
                status="scored",
                scores=scores,
                judge_model=model,
                protocol="official",
                protocol_version=f"rubric-{model}",
                inputs=inputs,
            )
            lines.append(judgment.model_dump_json())
    (run_dir / "judgments.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run_dir


def test_two_judge_configurations_of_one_run(tmp_path: Path) -> None:
    run = _judged_run(tmp_path, tmp_path / "runs" / "run", {"j1": 0, "j2": 1})
    result = runner.invoke(app, ["agreement", str(run), "--judges", *FAST])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["judge_a"]["model"] == "j1" and data["judge_b"]["model"] == "j2"
    assert data["judge_a"]["protocol"] == "official" and data["judge_a"]["version"] == "rubric-j1"
    assert data["judge_a"]["label"] == "official · j1 · rubric-j1"
    overall = next(r for r in data["records"] if r["metric"] == "overall")
    assert overall["system"] == "agent" and overall["n"] == 12
    assert overall["shift"]["low"] > 0  # j2 is a point kinder to the agent
    assert not any(r["record"] == "ranking" for r in data["records"])  # one system: no ranking
    _judged_run(tmp_path, tmp_path / "runs" / "other", {"j1": 0, "j3": 2}, name="other-agent")
    three = runner.invoke(app, ["agreement", str(tmp_path / "runs"), "--judges", "--replicates", "100"])
    assert three.exit_code == 2 and "--config" in three.stderr
    chosen = runner.invoke(
        app,
        ["agreement", str(tmp_path / "runs"), "--judges", "--config", "j1", "--config", "rubric-j3", *FAST],
    )
    assert chosen.exit_code == 0, chosen.output
    picked = json.loads(chosen.stdout)
    assert picked["judge_b"]["model"] == "j3" and picked["compared"] == [["other-agent", "other-agent"]]
    assert picked["only_a"] == ["agent"]  # `run` was not judged by j3
    assert "B: not under this judge: agent" in chosen.stderr and "only in A: agent" in chosen.stderr


def test_two_runs_of_one_agent(tmp_path: Path) -> None:
    one = _judged_run(tmp_path, tmp_path / "one", {"j1": 0})
    two = _judged_run(tmp_path, tmp_path / "two", {"j2": 1, "j3": 0})
    unchosen = runner.invoke(app, ["agreement", str(one), str(two)])
    assert unchosen.exit_code == 2 and "choose one with --config" in unchosen.stderr
    config = ["--config", "j1", "--config", "j2"]
    result = runner.invoke(app, ["agreement", str(one), str(two), *config, *FAST])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["compared"] == [["agent", "agent"]]
    assert data["judge_a"]["source"] == str(one) and data["judge_b"]["label"] == "official · j2 · rubric-j2"
    assert all(r["shift"]["value"] > 0 for r in data["records"])


# --- the released results ---------------------------------------------------------------------------------

MAPPING = {
    "gpt4o_audio": "GPT-4o Audio",
    "qwen_omni": "Qwen2.5-Omni",
    "qwen_omni_speechrole": "SpeechRole-Agent",
    "ali_cloud": "Alibaba Cloud API",
}


@pytest.mark.official
def test_the_earlier_released_judge_against_the_forks(official_dir: Path) -> None:
    """The same agents' answers judged twice (official/test_results/README.md): they agree moderately,
    and rank the four systems the same way."""
    official = official_dir / "official" / "test_results"
    fork = official_dir / "fork" / "SpeechRole-Eval" / "test_results"
    side_a, side_b = load_side(official), load_side(fork)
    pairing = pair_systems(list(side_a.systems), list(side_b.systems), MAPPING)
    assert sorted(pairing.pairs) == sorted(MAPPING.items())
    assert pairing.only_a == ["cosyvoice2", "f5tts"]
    assert pairing.only_b == ["Llama-3.1-8B", "Mistral-7B", "Qwen3-8B"]
    report = compare_judges(side_a, side_b, pairing, replicates=100)
    assert side_a.identity.model is None and side_a.identity.protocol == "official/v1"
    for s in report.systems:
        overall = s.metrics[-1]
        assert overall.n >= 51  # 13 roles x 2 modes x 2 entries, less one unscored in qwen_omni
        assert overall.spearman.value is not None and 0.3 < overall.spearman.value < 0.95
    assert report.ranking is not None and not report.ranking.changes
    assert [name.split(" = ")[0] for name in report.ranking.order_a] == [
        "gpt4o_audio",
        "ali_cloud",
        "qwen_omni_speechrole",
        "qwen_omni",
    ]
