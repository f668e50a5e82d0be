"""Agents with real components: the bundled offline cascade, remote agents over loopback, an audio chat
model against a local server, and clear errors for real-tier models whose weights are absent."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from speechrole.agents.base import TurnRequest, create_agent
from speechrole.agents.remote import serve_agent
from speechrole.agents.tts import DEFAULT_BANK, synthesize_with
from speechrole.bench import load_benchmark
from speechrole.cli import app
from speechrole.generate import GenerateConfig, generate
from speechrole.models import SMOLLM2_GGUF, WHISPER_TINY_EN, ModelMissingError
from speechrole.outputs import find_output_tree, read_role_output
from speechrole.registry import Registry
from speechrole.schema import Mode
from speechrole.validate import validate_outputs
from tests.factory import make_benchmark
from tests.fakes import FakeAgent
from tests.judge_server import JudgeServer

ROOT = Path(__file__).resolve().parents[1]


def _bundled_missing() -> str | None:
    from speechrole.agents import load_builtin
    from speechrole.agents.asr import ASRS
    from speechrole.agents.llm import LLMS
    from speechrole.agents.tts import TTSS

    load_builtin()
    registries: list[tuple[Registry, str]] = [
        (ASRS, "whisper-tiny-en"),
        (LLMS, "smollm2"),
        (TTSS, "voicebank"),
    ]
    return next((why for reg, name in registries if (why := reg.get(name).availability())), None)


needs_models = pytest.mark.skipif(
    bool(_bundled_missing()), reason=f"bundled models missing: {_bundled_missing()}"
)


@pytest.fixture(scope="module")
def speech_bench(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if _bundled_missing():
        pytest.skip("bundled models missing")
    root = make_benchmark(tmp_path_factory.mktemp("speech") / "bench", speech=True)
    return load_benchmark(root)[0]


@needs_models
def test_offline_cascade_answers_a_multi_turn_sample_in_its_assigned_voice(
    speech_bench, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "agent.yaml"
    spec.write_text("agent: offline\nllm: {name: smollm2, max_new_tokens: 24}\n", encoding="utf-8")
    agent = create_agent(str(spec))
    config = GenerateConfig(roles=("Ada",), modes=(Mode.MULTI,))
    outcome = generate(
        speech_bench, agent, tmp_path / "run", config, agent_spec=str(spec), bench_spec=str(speech_bench.root)
    )
    assert (outcome.generated, outcome.failed_samples) == (5, [])
    assert validate_outputs(
        speech_bench, find_output_tree(tmp_path / "run"), roles=["Ada"], modes=[Mode.MULTI]
    ).ok
    # run.json names every backend and the hashes of the bundled weights.
    described = json.loads((tmp_path / "run/run.json").read_text(encoding="utf-8"))["agent"]
    assert (
        described["asr"]["sha256"] == WHISPER_TINY_EN.sha256
        and described["llm"]["sha256"] == SMOLLM2_GGUF.sha256
    )
    assigned = described["tts"]["assignment"]["Ada"]
    assert assigned["how"] == "nearest to the reference clip"
    # The reference clip of Ada was spoken by flite:slt, so that is the voice the bank must pick...
    assert assigned["voice"] == "flite:slt"
    # ...and the answer is spoken in it: nearer to that voice than to any other bank voice.
    from speechrole.speakers import default_encoder

    enc = default_encoder()
    out, _ = read_role_output(tmp_path / "run/model_output/multi_result/json/Ada.json")
    answer = enc.embed_file(tmp_path / "run" / out.dialogues[0][1].audio_path)  # type: ignore[operator]
    sims = {
        v.id: float(enc.embed(*synthesize_with(v, out.dialogues[0][1].text or "Hello.")) @ answer)
        for v in DEFAULT_BANK
        if v.language.value == "en"
    }
    assert max(sims, key=sims.get) == "flite:slt", sims  # type: ignore[arg-type]
    lines = [
        json.loads(x) for x in (tmp_path / "run/generations.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert "drives your work" in lines[0]["intermediates"]["asr"].lower()  # whisper heard the user
    assert set(lines[0]["latency_s"]) >= {"asr", "llm", "tts", "first_audio", "total"}


@needs_models
def test_streaming_cascade_speaks_before_it_has_finished(speech_bench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent = create_agent("cascaded:asr=gold,llm=smollm2,tts=voicebank,streaming=true")
    sample = speech_bench.samples_of("Bram", Mode.SINGLE)[0]
    request = TurnRequest(
        speech_bench.roles["Bram"], sample, 0, (), sample.turns[0].user_text, None, tmp_path / "a.wav"
    )
    reply = agent.reply(request)
    assert reply.text and (tmp_path / "a.wav").is_file()
    assert reply.latency_s["first_audio"] <= reply.latency_s["total"]
    assert agent.describe()["streaming"] is True and agent.describe()["asr"]["backend"] == "gold"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cascaded:asr=gold,llm=openai:m@http://127.0.0.1:9/v1,tts=f5-tts", "F5-TTS"),
        ("cascaded:asr=gold,llm=openai:m@http://127.0.0.1:9/v1,tts=cosyvoice2", "CosyVoice"),
        (
            "cascaded:asr=whisper:/no/such/model,llm=openai:m@http://127.0.0.1:9/v1,tts=voicebank",
            "whisper model",
        ),
        ("qwen-omni:model=/no/such/Qwen2.5-Omni-7B", "Qwen2.5-Omni"),
    ],
)
def test_a_missing_real_model_fails_with_one_clear_line(spec: str, message: str, tmp_path: Path) -> None:
    with pytest.raises((ModelMissingError, ValueError)) as info:
        create_agent(spec)
    assert message in str(info.value) and "\n" not in str(info.value)
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--bench",
            str(make_benchmark(tmp_path / "b", audio=False)),
            "--agent",
            spec,
            "--run-dir",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 2 and message in result.output
    assert result.output.strip().count("\n") == 0 or "error:" in result.output.splitlines()[0]


def test_remote_http_agent_over_loopback(tmp_path: Path) -> None:
    bench = load_benchmark(make_benchmark(tmp_path / "bench"))[0]
    server = serve_agent(FakeAgent(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        agent = create_agent(f"remote:url={url}")
        outcome = generate(
            bench,
            agent,
            tmp_path / "run",
            GenerateConfig(roles=("Ada",)),
            agent_spec="remote",
            bench_spec="b",
        )
    finally:
        server.shutdown()
    assert outcome.generated == 7 and not outcome.failed_samples
    assert validate_outputs(bench, find_output_tree(tmp_path / "run"), roles=["Ada"]).ok
    assert agent.describe()["remote"]["description"]["agent"] == "fake"
    out, _ = read_role_output(tmp_path / "run/model_output/multi_result/json/Ada.json")
    assert "history:" in (out.dialogues[1][2].text or "")  # the history went over the wire


def test_remote_stdio_agent(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        from speechrole.agents.remote import answer
        from tests.fakes import FakeAgent
        agent = FakeAgent()
        for line in sys.stdin:
            print(json.dumps(answer(agent, json.loads(line))), flush=True)
    """),
        encoding="utf-8",
    )
    bench = load_benchmark(make_benchmark(tmp_path / "bench"))[0]
    agent = create_agent(f"remote-stdio:command={sys.executable} {script}")
    outcome = generate(
        bench, agent, tmp_path / "run", GenerateConfig(roles=("libai",)), agent_spec="stdio", bench_spec="b"
    )
    agent.close()
    assert (
        outcome.generated == 7
        and validate_outputs(bench, find_output_tree(tmp_path / "run"), roles=["libai"]).ok
    )


def test_example_remote_server_speaks_the_contract(tmp_path: Path) -> None:
    import shutil
    import socket
    import time

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples/remote_agent_server.py"), "--port", str(port)]
    )
    try:
        for _ in range(50):
            try:
                agent = create_agent(f"remote:url=http://127.0.0.1:{port}")
                break
            except RuntimeError:
                time.sleep(0.1)
        bench = load_benchmark(make_benchmark(tmp_path / "bench"))[0]
        outcome = generate(
            bench, agent, tmp_path / "run", GenerateConfig(limit=2), agent_spec="example", bench_spec="b"
        )
    finally:
        proc.terminate()
    assert outcome.generated == 2 and not outcome.failed_samples


def test_openai_audio_agent_against_a_local_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_benchmark(make_benchmark(tmp_path / "bench"))[0]
    monkeypatch.setenv("TEST_AUDIO_KEY", "sk-audio")
    with JudgeServer() as server:
        agent = create_agent(
            f"openai-audio:model=gpt-4o-audio-preview,base_url={server.base_url},api_key_env=TEST_AUDIO_KEY"
        )
        outcome = generate(
            bench,
            agent,
            tmp_path / "run",
            GenerateConfig(roles=("Bram",), modes=(Mode.MULTI,)),
            agent_spec="oa",
            bench_spec="b",
        )
    assert outcome.generated == 5 and server.state.auth == {"Bearer sk-audio"}
    out, _ = read_role_output(tmp_path / "run/model_output/multi_result/json/Bram.json")
    assert out.dialogues[1][2].text.endswith("I heard 3 user turns.")  # type: ignore[union-attr]  # history + this turn
    assert validate_outputs(bench, find_output_tree(tmp_path / "run"), roles=["Bram"], modes=[Mode.MULTI]).ok


def test_qwen_omni_conversation_keeps_the_required_system_prompt(tmp_path: Path) -> None:
    from speechrole.agents.base import Exchange
    from speechrole.agents.e2e import QWEN_OMNI_SYSTEM, QwenOmniAgent

    bench = load_benchmark(make_benchmark(tmp_path / "bench"))[0]
    sample = bench.samples_of("Ada", Mode.MULTI)[0]
    agent = QwenOmniAgent.__new__(QwenOmniAgent)  # plumbing only: no weights here
    request = TurnRequest(
        bench.roles["Ada"], sample, 1, (Exchange("q", "a"),), "q2", tmp_path / "u.wav", tmp_path / "o.wav"
    )
    conversation = agent.conversation(request)
    assert conversation[0]["content"][0]["text"] == QWEN_OMNI_SYSTEM
    assert sample.system_prompt in conversation[1]["content"][0]["text"]
    assert conversation[-1]["content"] == [{"type": "audio", "path": str(tmp_path / "u.wav")}]
    assert [m["role"] for m in conversation] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_agents_command_lists_everything() -> None:
    result = CliRunner().invoke(app, ["agents"])
    assert result.exit_code == 0
    for name in (
        "offline",
        "cascaded",
        "remote",
        "remote-stdio",
        "openai-audio",
        "qwen-omni",
        "python",
        "whisper-tiny-en",
        "smollm2",
        "voicebank",
        "f5-tts",
        "cosyvoice2",
        "gold",
    ):
        assert name in result.stdout


def test_voice_bank_voices_are_distinct() -> None:
    if _bundled_missing():
        pytest.skip("bundled models missing")
    from speechrole.speakers import default_encoder

    enc = default_encoder()
    en = [v for v in DEFAULT_BANK if v.language.value == "en"]
    vectors = np.stack(
        [enc.embed(*synthesize_with(v, "The birch canoe slid on the smooth planks.")) for v in en]
    )
    sims = vectors @ vectors.T
    assert (sims[~np.eye(len(en), dtype=bool)] < 0.95).all()  # no two bank voices are the same speaker


@pytest.mark.parametrize("streaming", [False, True])
def test_cascade_with_an_openai_compatible_llm(tmp_path: Path, streaming: bool) -> None:
    if _bundled_missing():
        pytest.skip("bundled models missing")
    bench = load_benchmark(make_benchmark(tmp_path / "bench"))[0]
    with JudgeServer() as server:
        agent = create_agent(
            f"cascaded:asr=gold,llm=openai:role-model@{server.base_url},tts=voicebank,streaming={streaming}"
        )
        sample = bench.samples_of("Ada", Mode.SINGLE)[0]
        request = TurnRequest(
            bench.roles["Ada"], sample, 0, (), sample.turns[0].user_text, None, tmp_path / "a.wav"
        )
        reply = agent.reply(request)
    assert reply.text.startswith("You ask me: What drives your work?") and reply.text.endswith(
        "The answer is no!"
    )
    assert (tmp_path / "a.wav").is_file() and server.state.models == {"role-model"}
    if streaming:
        assert reply.latency_s["first_audio"] < reply.latency_s["total"]


def test_backend_options_go_beside_the_backend_and_unknown_options_are_refused() -> None:
    from speechrole.agents.base import parse_backend

    with pytest.raises(ValueError, match=r"as llm\.quantize=int8"):
        parse_backend("smollm2:quantize=int8")
    with pytest.raises(ValueError, match="unknown option 'hnit'"):
        create_agent("cascaded:asr=gold,hnit=short")
    with pytest.raises(TypeError, match="quantise"):
        create_agent("cascaded:asr=gold,asr.quantise=int8")  # a typo in a backend option is an error too
