"""End-to-end speech agents: speech in, speech out, one model.

- `openai-audio`: OpenAI-style chat models with audio input and output (e.g. gpt-4o-audio-preview),
  over the judge's client (retries, backoff, key from the environment).
- `qwen-omni`: Qwen2.5-Omni through transformers, on the GPU when there is one. Its talker has two
  voices only (Chelsie, Ethan) and speaks only under its default system prompt, so the role's
  instructions go into the first user message; both limits are recorded in `describe()`.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from speechrole.agents.base import AGENTS, Agent, TurnRequest
from speechrole.audio import AudioPolicy, load_audio, prepare_clip, write_wav
from speechrole.chat import CallError, SyncChatClient
from speechrole.models import (
    WEIGHTS_MISSING,
    ModelMissingError,
    cached_file,
    hf_cache_dir,
    needs_module,
    safetensors_missing,
    weights_problem,
)
from speechrole.schema import AgentReply

#: User audio is sent as 16-bit WAV at 24 kHz mono (what OpenAI's audio models take natively).
USER_AUDIO = AudioPolicy(max_seconds=None, sample_rate=24000, mono=True)


class OpenAIAudioAgent(Agent):
    thread_safe = True

    def __init__(
        self,
        model: str = "gpt-4o-audio-preview",
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        voice: str = "alloy",
        temperature: float | str = 0.7,
        timeout_s: float | str = 180.0,
    ) -> None:
        self.model, self.base_url, self.api_key_env, self.voice = model, base_url, api_key_env, voice
        self.temperature = float(temperature)
        self._client = SyncChatClient(base_url, os.environ.get(api_key_env), timeout_s=float(timeout_s))

    def reply(self, request: TurnRequest) -> AgentReply:
        if request.user_audio is None:
            raise ValueError("this turn has no user audio")
        started = time.perf_counter()
        messages: list[dict[str, Any]] = [{"role": "system", "content": request.system_prompt()}]
        for ex in request.history:  # earlier rounds as text: what both sides said
            messages += [{"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.assistant}]
        clip = prepare_clip(request.user_audio, USER_AUDIO)
        messages.append(
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": clip.base64(), "format": "wav"}}],
            }
        )
        body = {
            "model": self.model,
            "modalities": ["text", "audio"],
            "audio": {"voice": self.voice, "format": "wav"},
            "messages": messages,
            "temperature": self.temperature,
        }
        try:
            result = self._client.complete(body)
        except CallError as exc:
            raise RuntimeError(f"{self.model} at {self.base_url}: {exc}") from None
        audio = result.message.get("audio") if isinstance(result.message.get("audio"), dict) else None
        if not audio or not audio.get("data"):
            raise RuntimeError(f"{self.model} answered without audio (is it an audio-output model?)")
        raw = base64.b64decode(audio["data"])
        tmp = request.audio_out.with_name(f".{request.audio_out.name}.download")
        request.audio_out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(raw)
        data, rate = load_audio(tmp)  # refuse anything that is not decodable audio
        tmp.unlink()
        write_wav(request.audio_out, data.mean(axis=1), rate)
        text = str(audio.get("transcript") or result.text).strip()
        total = time.perf_counter() - started
        return AgentReply(
            text=text,
            audio=str(request.audio_out),
            intermediates={"transcript": text},
            latency_s={"total": round(total, 4), "first_audio": round(total, 4)},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "agent": "openai-audio",
            "model": self.model,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "voice": self.voice,
            "temperature": self.temperature,
            "history": "earlier rounds are sent as text",
        }

    def close(self) -> None:
        self._client.close()


@AGENTS.register(
    "openai-audio",
    summary="OpenAI-style audio chat model, speech in and out: openai-audio:model=gpt-4o-audio-preview",
)
def _openai_audio(**options: Any) -> Agent:
    return OpenAIAudioAgent(**options)


#: Qwen2.5-Omni speaks only under this system prompt (model card); the role goes in the user message.
QWEN_OMNI_SYSTEM = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech."
)


class QwenOmniAgent(Agent):
    def __init__(
        self,
        model: str = "Qwen/Qwen2.5-Omni-7B",
        speaker: str = "Ethan",
        device: str = "auto",
        max_new_tokens: int | str = 256,
    ) -> None:
        try:
            import torch
            from transformers import Qwen2_5OmniForConditionalGeneration, Qwen2_5OmniProcessor
        except ImportError as exc:
            raise ModelMissingError(
                f"Qwen2.5-Omni needs {exc.name} (pip install 'speechrole[agents]')"
            ) from None
        self.model_name, self.speaker, self.max_new_tokens = model, speaker, int(max_new_tokens)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        try:
            self.processor = Qwen2_5OmniProcessor.from_pretrained(model)
            self.model = Qwen2_5OmniForConditionalGeneration.from_pretrained(
                model, dtype=torch.bfloat16 if self.device == "cuda" else torch.float32
            ).to(self.device)
        except (OSError, ValueError) as exc:
            raise ModelMissingError(
                f"Qwen2.5-Omni {model!r} could not be loaded ({type(exc).__name__}): download it (about 22 GB) and "
                "pass qwen-omni:model=/path/to/Qwen2.5-Omni-7B"
            ) from None
        self.model.eval()
        self._lock = threading.Lock()

    def conversation(self, request: TurnRequest) -> list[dict[str, Any]]:
        role_text = f"{request.system_prompt()}\n\nStay in this role, and answer aloud as the character."
        turns: list[dict[str, Any]] = [
            {"role": "system", "content": [{"type": "text", "text": QWEN_OMNI_SYSTEM}]},
            {"role": "user", "content": [{"type": "text", "text": role_text}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Understood."}]},
        ]
        for ex in request.history:
            turns += [
                {"role": "user", "content": [{"type": "text", "text": ex.user}]},
                {"role": "assistant", "content": [{"type": "text", "text": ex.assistant}]},
            ]
        if request.user_audio is None:
            raise ValueError("this turn has no user audio")
        return [*turns, {"role": "user", "content": [{"type": "audio", "path": str(request.user_audio)}]}]

    def reply(self, request: TurnRequest) -> AgentReply:
        import torch

        started = time.perf_counter()
        inputs = self.processor.apply_chat_template(
            self.conversation(request),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        ).to(self.device)
        with self._lock, torch.inference_mode():
            text_ids, audio = self.model.generate(
                **inputs, speaker=self.speaker, thinker_max_new_tokens=self.max_new_tokens
            )
        text = self.processor.batch_decode(
            text_ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
        )[0]
        samples = (
            audio.reshape(-1).float().cpu().numpy()
            if hasattr(audio, "cpu")
            else np.asarray(audio, np.float32)
        )
        write_wav(request.audio_out, samples, 24000)
        total = time.perf_counter() - started
        return AgentReply(
            text=text.strip(),
            audio=str(request.audio_out),
            intermediates={"text": text.strip()},
            latency_s={"total": round(total, 4), "first_audio": round(total, 4)},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "agent": "qwen-omni",
            "model": self.model_name,
            "speaker": self.speaker,
            "device": self.device,
            "max_new_tokens": self.max_new_tokens,
            "limits": "two voices only (Chelsie, Ethan): not the role's voice; role prompt in the first user turn",
        }


QWEN_OMNI_REPO = "Qwen/Qwen2.5-Omni-7B"


def qwen_omni_weights(options: Mapping[str, Any]) -> Path:
    """The Qwen2.5-Omni folder a spec's `model` names: the folder, or a hub id's download in the Hugging
    Face cache; `ModelMissingError` naming the first missing file (config, shard index, shards)."""
    model = str(options.get("model") or QWEN_OMNI_REPO)
    folder = Path(model).expanduser()
    if not folder.exists():
        cached = cached_file(model, "config.json") if model.count("/") == 1 else None
        if cached is None:
            raise ModelMissingError(
                f"{WEIGHTS_MISSING}: Qwen2.5-Omni {model!r} is not a local folder nor in the Hugging Face cache "
                f"({hf_cache_dir()}); download {QWEN_OMNI_REPO} (about 22 GB) and pass "
                "qwen-omni:model=/path/to/Qwen2.5-Omni-7B"
            )
        folder = cached.parent
    if (missing := safetensors_missing(folder)) is not None:
        raise ModelMissingError(f"{WEIGHTS_MISSING}: Qwen2.5-Omni file {missing}")
    return folder


@AGENTS.register(
    "qwen-omni",
    summary="Qwen2.5-Omni via transformers (GPU when present): qwen-omni:model=/path/to/Qwen2.5-Omni-7B "
    "(or that repo in the HF cache)",
    check=lambda: needs_module("transformers", "pip install 'speechrole[agents]'"),
    weights=lambda options: weights_problem(qwen_omni_weights, options),
)
def _qwen_omni(**options: Any) -> Agent:
    return QwenOmniAgent(**options)
