"""The `released` protocol: requests rebuilt from a copy of the released judge script, never run by us.

The scripts in tests/released/ have the released judge's shape with our own sentences. Here each one is
also *run* (it is our file) against a fake OpenAI client, a fake pydub and a benchmark laid out as the
script expects, and every request it would send must equal, text for text and clip for clip, the
request speechrole builds for the same sample.
"""

from __future__ import annotations

import io
import json
import runpy
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechrole.bench import load_benchmark
from speechrole.judge.config import JudgeConfig, JudgeTarget
from speechrole.judge.log import read_judgments
from speechrole.judge.parse import AnswerError
from speechrole.judge.released import SOURCE_URL, load_released
from speechrole.judge.runner import JudgeRun, judge
from speechrole.problems import DataError
from speechrole.run import Run
from speechrole.schema import METRICS
from tests.factory import make_benchmark, make_outputs
from tests.judge_server import JudgeServer

SCRIPTS = Path(__file__).parent / "released"
V1, V2 = SCRIPTS / "judge_v1.py", SCRIPTS / "judge_v2.py"


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    bench_root = make_benchmark(tmp_path / "bench")
    run = make_outputs(tmp_path / "run", bench_root)
    bench, _ = load_benchmark(bench_root)
    return bench, bench_root, run, tmp_path


class _AudioSegment:
    """Just enough of pydub's AudioSegment for the v2 script: decode, cut by milliseconds, export WAV."""

    def __init__(self, data: np.ndarray, rate: int) -> None:
        self.data, self.rate = data, rate

    @classmethod
    def from_file(cls, path: str) -> _AudioSegment:
        data, rate = sf.read(path, dtype="int16", always_2d=True)
        return cls(data, rate)

    def __len__(self) -> int:
        return int(1000 * len(self.data) / self.rate)

    def __getitem__(self, cut: slice) -> _AudioSegment:
        return _AudioSegment(self.data[: int(cut.stop * self.rate / 1000)], self.rate)

    def export(self, out: io.BytesIO, format: str) -> None:
        sf.write(out, self.data, self.rate, format="WAV", subtype="PCM_16")


def _fake_modules(monkeypatch: pytest.MonkeyPatch, calls: list[dict[str, Any]]) -> None:
    def answer(kwargs: dict[str, Any]) -> str:
        text = kwargs["messages"][1]["content"][-1]["text"]
        if "[Scores]" in text:
            return "Both are fine.\n\n[Scores]: (6, 8)"
        return json.dumps({m: {"reason": "ok", "score_a": 6, "score_b": 8} for m in METRICS})

    class Completions:
        def create(self, **kwargs: Any) -> Any:
            calls.append(kwargs)
            message = types.SimpleNamespace(content=answer(kwargs))
            return types.SimpleNamespace(choices=[types.SimpleNamespace(message=message)])

    class OpenAI:
        def __init__(self, api_key: str, base_url: str) -> None:
            self.chat = types.SimpleNamespace(completions=Completions())

    monkeypatch.setitem(sys.modules, "openai", types.SimpleNamespace(OpenAI=OpenAI))
    monkeypatch.setitem(sys.modules, "pydub", types.SimpleNamespace(AudioSegment=_AudioSegment))


def _script_requests(
    script: Path, bench_root: Path, run: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """Run the stand-in script as its authors would, in a folder laid out as it expects."""
    work.mkdir()
    for name in ("test_data", "role_profiles"):
        (work / name).symlink_to(bench_root / name)
    for folder in ("raw_data", "model_output"):  # v1 reads raw_data/, v2 model_output/
        for file in (run / "model_output").glob("*_result/json/*.json"):
            data = json.loads(file.read_text(encoding="utf-8"))
            for key, turns in data.items():
                if key.startswith("dialogue_"):
                    for t in turns:
                        t["model_output"]["audio_path"] = str(run / t["model_output"]["audio_path"])
            target = work / folder / "speechrole" / file.relative_to(run / "model_output")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(data), encoding="utf-8")
    calls: list[dict[str, Any]] = []
    _fake_modules(monkeypatch, calls)
    monkeypatch.chdir(work)
    namespace = runpy.run_path(str(script), run_name="stand_in_judge")
    for mode in ("single", "multi"):
        namespace["main"](mode, "speechrole")
    return calls


def _our_requests(
    bench: Any, run: Path, script: Path, tmp: Path, samples_order: list[str]
) -> list[dict[str, Any]]:
    config = JudgeConfig(
        model=load_released(script).model,
        base_url="http://127.0.0.1:9/v1",
        protocol="released",
        released_judge=script,
        cache_path=tmp / "cache.sqlite",
    )
    judge_run = JudgeRun(bench, JudgeTarget.for_run(run), config)
    by_key = {s.key: s for s in bench.samples}
    bodies = []
    for key in samples_order:
        (job,) = judge_run.planner.jobs([by_key[key]])
        for task in judge_run.planner.tasks(job):
            assert task.request is not None, task.error
            messages = task.request.messages(judge_run.planner.clip_base64(job))
            bodies.append(
                {"model": config.model, "messages": messages}
                | {k: v for k, v in judge_run.sampling.items() if v is not None}
            )
    return bodies


@pytest.mark.parametrize("script", [V1, V2], ids=["v1", "v2"])
def test_released_requests_equal_what_the_script_sends(
    setup, script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    bench, bench_root, run, tmp = setup
    sent = _script_requests(script, bench_root, run, tmp / "work", monkeypatch)
    roles = ["Ada", "Bram", "libai"]  # the order of the scripts' `roles`
    order = [
        s.key
        for mode in ("single", "multi")
        for role in roles
        for s in sorted(bench.samples, key=lambda s: s.index)
        if s.role == role and s.mode.value == mode
    ]
    ours = _our_requests(bench, run, script, tmp, order)
    per_sample = 8 if script == V1 else 1
    assert len(sent) == len(ours) == per_sample * len(order) == per_sample * 12
    for theirs, mine in zip(sent, ours, strict=True):
        theirs = {k: v for k, v in theirs.items() if k != "timeout"}  # a client setting, not sent
        assert theirs == mine  # texts, clip data URLs (the same bytes), options: all equal


def test_the_script_is_parsed_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    hostile = V2.read_text(encoding="utf-8").replace(
        "client = get_client()", f"client = get_client()\nopen({str(marker)!r}, 'w').write('x')"
    )
    script = tmp_path / "gemini_judge.py"
    script.write_text(hostile, encoding="utf-8")
    judge_script = load_released(script)
    assert judge_script.version == 2 and not marker.exists()


def test_what_is_read_from_each_version() -> None:
    v1, v2 = load_released(V1), load_released(V2)
    assert (v1.version, v1.per_metric, v1.options, v1.audio.raw) == (1, True, {"n": 1}, True)
    assert (v2.version, v2.per_metric, v2.options, v2.audio.max_seconds) == (
        2,
        False,
        {"temperature": 0},
        60.0,
    )
    assert v1.metrics["Speech_Fluency"].startswith("Speech Fluency: is the talk smooth")
    assert v1.sha256 != v2.sha256 and v1.label.startswith("v1/script-")


def test_v1_answers_are_read_with_the_scripts_pattern_and_validated() -> None:
    v1 = load_released(V1)
    template = "{Qualitative Evaluation}, [Scores]: ({the score of Model A}, {the score of Model B})\n"
    scores = v1.parse(template + "A is flat.\n\n[Scores]: (4, 9)", ("Speech_Fluency",), "AB")
    assert (scores["Speech_Fluency"].test, scores["Speech_Fluency"].ref) == (4, 9)
    for bad in ("no scores at all", "[Scores]: (0, 7)", "[Scores]: (7, 11)"):
        with pytest.raises(AnswerError):
            v1.parse(bad, ("Speech_Fluency",), "AB")


@pytest.mark.parametrize("script", [V1, V2], ids=["v1", "v2"])
def test_released_protocol_end_to_end(setup, script: Path) -> None:  # type: ignore[no-untyped-def]
    bench, _, run, tmp = setup
    per_sample = 8 if script == V1 else 1

    def config(server: JudgeServer, path: Path) -> JudgeConfig:
        return JudgeConfig(
            model="judge-x",
            base_url=server.base_url,
            protocol="released",
            released_judge=path,
            cache_path=tmp / "cache.sqlite",
            timeout_s=2.0,
        )

    with JudgeServer() as server:
        outcome = judge(bench, JudgeTarget.for_run(run), config(server, script))
        assert (outcome.scored, outcome.unscored) == (12 * per_sample, 0)
        judgments, _ = read_judgments(run / "judgments.jsonl")
        sha = load_released(script).sha256
        assert {j.protocol_version for j in judgments} == {f"{2 - (script == V1)}/script-{sha[:12]}"}
        recorded = json.loads((run / "run.json").read_text(encoding="utf-8"))["judge"]
        assert recorded["released_judge_sha256"] == sha and recorded["protocol"] == "released"
        # One changed sentence is another judge configuration: asked again, never answered from cache.
        edited = tmp / "edited.py"
        edited.write_text(
            script.read_text(encoding="utf-8").replace("You grade", "You judge"), encoding="utf-8"
        )
        before = server.state.requests
        again = judge(bench, JudgeTarget.for_run(run), config(server, edited))
        assert again.from_cache == 0 and server.state.requests - before == 12 * per_sample
    systems = Run.open(run).systems()
    assert len(systems) == 2 and all(s.judge and s.judge.protocol == "released" for s in systems)


def test_missing_or_foreign_script_is_one_clear_error(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="--released-judge"):
        load_released(None)
    with pytest.raises(DataError, match="not the released judge's shape"):
        load_released(Path(__file__))
    _bench, bench_root, run, _ = setup
    from speechrole.cli import app

    result = CliRunner().invoke(
        app,
        [
            "judge", str(run), "--judge", "judge-x", "--base-url", "http://127.0.0.1:9/v1",
            "--bench", str(bench_root), "--protocol", "released",
        ],
        env={"SPEECHROLE_RELEASED_JUDGE": ""},
    )  # fmt: skip
    assert result.exit_code != 0
    assert "--released-judge" in result.output and SOURCE_URL.split(" ")[0] in result.output
    assert not (run / "judgments.jsonl").exists()


def test_script_copy_elsewhere_gives_the_same_requests(tmp_path: Path) -> None:
    copy = tmp_path / "copy.py"
    shutil.copy(V1, copy)
    assert load_released(copy).sha256 == load_released(V1).sha256
