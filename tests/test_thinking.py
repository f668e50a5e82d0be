"""Thinking models (Qwen3, DeepSeek-R1, ...) in a cascaded agent: thinking is asked off, `<think>` blocks
never reach the voice (also when split across streamed pieces), and an answer cut by the token limit
is flagged. Against a Qwen3-like OpenAI-compatible server on loopback (real HTTP, real client), and a
tiny transformers model built here (no hub)."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import speechrole.agents.cascaded as cascaded
from speechrole.agents.base import Agent, TurnRequest, create_agent
from speechrole.agents.llm import (
    DEFAULT_MAX_TOKENS,
    AnswerStream,
    OpenAIChatLLM,
    ThinkingFilter,
    strip_thinking,
)
from speechrole.agents.tts import TTS
from speechrole.bench import load_benchmark
from speechrole.generate import GenerateConfig, generate
from speechrole.registry import Registry
from speechrole.schema import AgentReply, Benchmark, Mode, Role
from tests.factory import make_benchmark

THINKING = "The user asks what drives Ada. She would say curiosity, and mention the engine."
ANSWER = "Curiosity drives my work. The engine can weave algebra like a loom weaves flowers!"
QWEN3_THINKS = f"<think>\n{THINKING}\n</think>\n\n{ANSWER}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Qwen3StandIn

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.server.bodies.append(body)
        if self.server.refuse_template_kwargs and "chat_template_kwargs" in body:
            # What OpenAI's API says to a field it does not know.
            error = {"error": {"message": "Unrecognized request argument supplied: chat_template_kwargs"}}
            self._send(400, json.dumps(error).encode(), "application/json")
            return
        thinking_off = (body.get("chat_template_kwargs") or {}).get("enable_thinking") is False
        text = self.server.content or (ANSWER if thinking_off else QWEN3_THINKS)
        finish = self.server.finish_reason
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            self._send(
                200, json.dumps({"choices": [choice], "model": body["model"]}).encode(), "application/json"
            )
            return
        n = self.server.piece_chars  # small pieces, so that tags arrive split
        events = [
            {"choices": [{"index": 0, "delta": {"content": text[i : i + n]}}]} for i in range(0, len(text), n)
        ]
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send(200, sse.encode(), "text/event-stream")


class Qwen3StandIn(ThreadingHTTPServer):
    """An OpenAI-compatible chat server that thinks like Qwen3: `<think>...</think>` before the answer,
    unless the request says `chat_template_kwargs: {enable_thinking: false}` (vLLM's field)."""

    daemon_threads = True

    def __init__(
        self,
        content: str = "",
        finish_reason: str = "stop",
        refuse_template_kwargs: bool = False,
        piece_chars: int = 3,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.content, self.finish_reason, self.piece_chars = content, finish_reason, piece_chars
        self.refuse_template_kwargs = refuse_template_kwargs
        self.bodies: list[dict[str, Any]] = []
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> Qwen3StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class RecordingTTS:
    """Records what it is asked to say (a tone stands in for the voice)."""

    thread_safe = True

    def __init__(self) -> None:
        self.spoken: list[str] = []

    def prepare(self, roles: Iterable[Role]) -> None:
        pass

    def synthesize(self, text: str, role: Role) -> tuple[np.ndarray, int]:
        self.spoken.append(text)
        return (0.1 * np.sin(np.arange(1600) / 8)).astype(np.float32), 16000

    def describe(self) -> dict[str, Any]:
        return {"backend": "recorder"}


@pytest.fixture
def voice(monkeypatch: pytest.MonkeyPatch) -> RecordingTTS:
    """`tts=recorder` in an agent spec: a registry of its own, so the real one is left as it is."""
    recorder = RecordingTTS()
    voices: Registry[TTS] = Registry("TTS backend")
    voices.register("recorder", summary="records what is said")(lambda: recorder)
    monkeypatch.setattr(cascaded, "TTSS", voices)
    return recorder


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Benchmark:
    return load_benchmark(make_benchmark(tmp_path_factory.mktemp("thinking") / "bench", audio=False))[0]


def _agent(server: Qwen3StandIn, streaming: bool, extra: str = "") -> Agent:
    return create_agent(
        f"cascaded:asr=gold,llm=openai:qwen3-8b@{server.base_url},tts=recorder,streaming={streaming}{extra}"
    )


def _reply(agent: Agent, bench: Benchmark, out: Path) -> AgentReply:
    sample = bench.samples_of("Ada", Mode.SINGLE)[0]
    request = TurnRequest(bench.roles["Ada"], sample, 0, (), sample.turns[0].user_text, None, out)
    return agent.reply(request)


@pytest.mark.parametrize("streaming", [False, True])
def test_qwen3_thinking_is_not_spoken(
    bench: Benchmark, voice: RecordingTTS, tmp_path: Path, streaming: bool
) -> None:
    with Qwen3StandIn() as server:
        agent = _agent(server, streaming)
        reply = _reply(agent, bench, tmp_path / "a.wav")
    assert server.bodies[0]["chat_template_kwargs"] == {"enable_thinking": False}  # asked off
    assert server.bodies[0]["max_tokens"] == DEFAULT_MAX_TOKENS == 512
    assert reply.text == ANSWER and " ".join(voice.spoken) == ANSWER
    assert set(reply.intermediates) == {"asr", "llm"}  # nothing stripped, nothing cut
    assert agent.describe()["llm"]["thinking"] == "off" and (tmp_path / "a.wav").is_file()


@pytest.mark.parametrize("streaming", [False, True])
def test_thinking_on_keeps_the_think_block_out_of_speech_but_records_it(
    bench: Benchmark, voice: RecordingTTS, tmp_path: Path, streaming: bool
) -> None:
    with Qwen3StandIn() as server:
        agent = _agent(server, streaming, ",llm.thinking=on")
        reply = _reply(agent, bench, tmp_path / "a.wav")
    assert server.bodies[0]["chat_template_kwargs"] == {"enable_thinking": True}
    assert reply.text == ANSWER and " ".join(voice.spoken) == ANSWER
    assert reply.intermediates["thinking"] == THINKING and reply.intermediates["llm"] == ANSWER
    assert agent.describe()["llm"]["thinking"] == "on"


def test_stripped_thinking_is_written_to_generations_jsonl(
    bench: Benchmark, voice: RecordingTTS, tmp_path: Path
) -> None:
    with Qwen3StandIn() as server:
        agent = _agent(server, True, ",llm.thinking=on")
        config = GenerateConfig(roles=("Ada",), modes=(Mode.SINGLE,), limit=1)
        outcome = generate(bench, agent, tmp_path / "run", config, agent_spec="t", bench_spec="b")
    assert outcome.generated >= 1 and not outcome.failed_samples
    line = json.loads((tmp_path / "run/generations.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert line["text"] == ANSWER and line["intermediates"]["thinking"] == THINKING
    assert "<think>" not in json.dumps(line)


def test_an_unknown_thinking_value_is_refused() -> None:
    with pytest.raises(ValueError, match="thinking='maybe'"):
        OpenAIChatLLM(model="m", thinking="maybe")


def _pieces(text: str, cuts: tuple[int, ...]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize(
    ("text", "answer", "thinking", "opened"),
    [
        (QWEN3_THINKS, ANSWER, THINKING, False),
        (f"  <think>{THINKING}</think>{ANSWER}<think>again</think>", ANSWER, THINKING + "again", False),
        (f"</think>\n\n{ANSWER}", ANSWER, "", False),  # a bare closing tag first, as some templates emit
        (f"{THINKING}</think>{ANSWER}", ANSWER, THINKING, True),  # the prompt opened the block
        (f"<think>{THINKING}", "", THINKING, False),  # never closed: all of it is thinking
        ("a < b and c <thin ice", "a < b and c <thin ice", "", False),  # look-alikes are kept
    ],
)
def test_think_tags_split_across_stream_pieces_are_stripped(
    text: str, answer: str, thinking: str, opened: bool
) -> None:
    assert strip_thinking(text) == (answer, thinking)
    splits = [(i,) for i in range(1, len(text))] + [(i, i + 3) for i in range(1, len(text) - 3)]
    for cuts in splits:
        pieces = _pieces(text, cuts)
        tags = ThinkingFilter(opened)
        said = "".join(tags.feed(p) for p in pieces) + tags.close()
        assert (said.strip(), tags.thinking) == (answer, thinking), pieces
        assert "<think" not in said and "</think" not in said


def test_streamed_pieces_never_carry_a_tag_and_a_cut_stream_is_flagged() -> None:
    def raw() -> Iterator[str]:
        yield from _pieces(QWEN3_THINKS, tuple(range(1, len(QWEN3_THINKS))))  # one character a piece
        return "max_tokens 9 reached"

    stream = AnswerStream(raw(), "m")  # type: ignore[arg-type]
    said = list(stream)
    assert "".join(said).strip() == ANSWER and all("<" not in p and ">" not in p for p in said)
    assert stream.answer.notes() == {"thinking": THINKING, "truncated": "max_tokens 9 reached"}


@pytest.mark.parametrize("streaming", [False, True])
def test_an_answer_that_is_all_thinking_is_an_error_not_spoken(
    bench: Benchmark, voice: RecordingTTS, tmp_path: Path, streaming: bool
) -> None:
    with Qwen3StandIn(content=f"<think>{THINKING} Hmm, but then", finish_reason="length") as server:
        agent = _agent(server, streaming, ",llm.thinking=on")
        with pytest.raises(RuntimeError, match=r"all thinking .*max_tokens 512 reached"):
            _reply(agent, bench, tmp_path / "a.wav")
    assert voice.spoken == [] and not (tmp_path / "a.wav").exists()


@pytest.mark.parametrize("streaming", [False, True])
def test_answer_cut_by_max_tokens_is_flagged_and_its_fragment_not_spoken(
    bench: Benchmark, voice: RecordingTTS, tmp_path: Path, streaming: bool
) -> None:
    with Qwen3StandIn(content=f"{ANSWER} And then I went to", finish_reason="length") as server:
        reply = _reply(_agent(server, streaming), bench, tmp_path / "a.wav")
    assert reply.intermediates["truncated"] == "max_tokens 512 reached"
    assert reply.text == ANSWER and " ".join(voice.spoken) == ANSWER


@pytest.mark.parametrize("streaming", [False, True])
def test_a_server_that_refuses_chat_template_kwargs_still_answers_without_thinking_aloud(
    bench: Benchmark, voice: RecordingTTS, tmp_path: Path, streaming: bool
) -> None:
    with Qwen3StandIn(refuse_template_kwargs=True) as server:
        agent = _agent(server, streaming)
        reply = _reply(agent, bench, tmp_path / "a.wav")
        _reply(agent, bench, tmp_path / "b.wav")
    # Refused once, asked again without the field, and never sent it again.
    assert ["chat_template_kwargs" in b for b in server.bodies] == [True, False, False]
    assert reply.text == ANSWER and reply.intermediates["thinking"] == THINKING
    assert " ".join(voice.spoken) == f"{ANSWER} {ANSWER}"


# The transformers backend, on a tiny random model built here: token 0 ("word") always wins.

QWEN3_LIKE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}assistant: "
    "{% if enable_thinking is defined and not enable_thinking %}<think> </think> {% endif %}{% endif %}"
)
THINKING_ONLY = "{% for m in messages %}{{ m['content'] }} {% endfor %}assistant: <think>"
PLAIN = "{% for m in messages %}{{ m['content'] }} {% endfor %}assistant:"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["word", "[UNK]", "<eos>", "user:", "system:", "assistant:", "hi", "<think>", "</think>"]
    vocab = {w: i for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder = tmp_path_factory.mktemp("tiny-llm")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", eos_token="<eos>", pad_token="<eos>"
    )
    tokenizer.chat_template = QWEN3_LIKE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        eos_token_id=vocab["<eos>"],
        pad_token_id=vocab["<eos>"],
    )
    model = LlamaForCausalLM(config)
    model.lm_head.weight.data.zero_()  # all logits equal: greedy decoding picks token 0, never <eos>
    model.save_pretrained(folder)
    return folder


def _hf(folder: Path, template: str, **options: Any) -> Any:
    from speechrole.agents.llm import TransformersLLM

    llm = TransformersLLM(str(folder), temperature=0, **options)
    llm.tokenizer.chat_template = template
    return llm


def _prompt(llm: Any) -> tuple[str, bool]:
    inputs, _, opened = llm._inputs([{"role": "user", "content": "hi"}])
    return llm.tokenizer.decode(inputs["input_ids"][0]), opened


def test_hf_backend_passes_enable_thinking_false_to_a_template_that_reads_it(tiny_model: Path) -> None:
    from speechrole.agents.llm import TransformersLLM

    off = TransformersLLM(str(tiny_model), temperature=0)  # its saved template reads enable_thinking
    assert off.describe()["thinking"] == "off" and off.describe()["thinking_switch"] == "enable_thinking"
    assert _prompt(off) == ("user: hi assistant: <think> </think>", False)  # Qwen3's thinking-off prompt
    on = _hf(tiny_model, QWEN3_LIKE, thinking="on")
    assert _prompt(on) == ("user: hi assistant:", False)
    plain = _hf(tiny_model, PLAIN)  # a template without the switch gets no extra variable, and works
    assert plain.describe()["thinking_switch"] == "none in the chat template"
    assert _prompt(plain) == ("hi assistant:", False) and plain.answer([{"role": "user", "content": "hi"}])


def test_hf_answer_cut_by_max_new_tokens_is_flagged(tiny_model: Path) -> None:
    llm = _hf(tiny_model, QWEN3_LIKE, max_new_tokens=3)
    messages = [{"role": "user", "content": "hi"}]
    assert llm.answer(messages).notes() == {"truncated": "max_new_tokens 3 reached"}
    stream = llm.answer_stream(messages)
    assert "".join(stream).strip() == "word word word"
    assert stream.answer.truncated == "max_new_tokens 3 reached"


def test_hf_thinking_only_template_cut_inside_its_think_block_is_an_error_not_spoken(
    tiny_model: Path,
) -> None:
    llm = _hf(tiny_model, THINKING_ONLY, max_new_tokens=3)
    messages = [{"role": "user", "content": "hi"}]
    assert _prompt(llm)[1] is True  # the prompt opened the block: what comes is thinking
    with pytest.raises(RuntimeError, match=r"all thinking \(14 chars, cut: max_new_tokens 3 reached\)"):
        llm.answer(messages)
    said: list[str] = []
    with pytest.raises(RuntimeError, match="all thinking"):
        said.extend(llm.answer_stream(messages))
    assert said == []
