"""The `omni` agent: a (fine-tuned) Qwen2.5-Omni thinker answers the user's speech in the role.

    omni:model=/models/Qwen2.5-Omni-7B,adapter=runs/agent            # LoRA adapter + base
    omni:model=runs/agent-merged                                      # a merged checkpoint
    omni:model=...,tts=talker,speaker=Chelsie                         # the talker's built-in voices

The conversation is encoded exactly as in training (`speechrole.train.encode`): the sample's system
prompt, earlier user turns as their audio (text when a turn has none) with the remembered answers, and
the current turn's audio. The thinker answers greedily. The role's voice comes from the `tts` backend
(default `voicebank`: the bank voice nearest the role's reference clip, offline; a cloning backend such
as `f5-tts` clones the reference), or `tts=talker` speaks with the talker's fixed speakers (Chelsie,
Ethan: not the role's voice). `describe()` records the base model, the adapter and its sha256.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from speechrole.agents.base import AGENTS, Agent, TurnRequest, parse_backend
from speechrole.agents.cascaded import speakable
from speechrole.agents.tts import TTSS
from speechrole.audio import write_wav
from speechrole.fileio import resolve_inside
from speechrole.models import ModelMissingError, needs_module, weights_problem
from speechrole.schema import AgentReply, Benchmark
from speechrole.train.encode import AUDIO_PLACEHOLDER, ChatEncoder, collate

TALKER_RATE = 24000


class OmniAgent(Agent):
    def __init__(
        self,
        model: str = "",
        adapter: str = "",
        tts: str | dict[str, Any] = "voicebank",
        speaker: str = "Ethan",
        device: str = "auto",
        max_new_tokens: int | str = 128,
        talker_max_new_tokens: int | str = 4096,
        **options: Any,
    ) -> None:
        try:
            import peft  # noqa: F401
            import torch
        except ImportError as exc:
            raise ModelMissingError(
                f"the omni agent needs {exc.name} (pip install 'speechrole[train]')"
            ) from None
        from speechrole.train.model import (
            adapter_digest,
            default_device,
            load_omni,
            load_thinker,
            model_digest,
            model_folder,
            with_adapter,
        )

        if not model:
            raise ValueError("omni needs model=PATH (a Qwen2.5-Omni checkpoint folder)")
        unknown = [k for k in options if not k.startswith("tts.")]
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} (TTS options go as tts.X)")
        self.folder = model_folder(model)
        self.device = default_device() if device == "auto" else device
        self.max_new_tokens = int(max_new_tokens)
        self.talker_max_new_tokens = int(talker_max_new_tokens)
        self.encoder = ChatEncoder.from_pretrained(self.folder)
        self.talker = tts == "talker"
        self.speaker = speaker
        self.omni = load_omni(self.folder, device=self.device) if self.talker else None
        thinker = (
            self.omni.thinker if self.omni is not None else load_thinker(self.folder, device=self.device)
        )
        self.adapter = adapter
        self.adapter_sha256 = adapter_digest(adapter) if adapter else None
        if adapter:
            thinker = with_adapter(thinker, adapter)
            if self.omni is not None:
                self.omni.thinker = thinker
        self.thinker = thinker.eval()
        self.model_sha256 = model_digest(self.folder)
        self.tts_spec = tts
        self.tts = None
        if not self.talker:
            name, tts_options = parse_backend(tts)
            extra = {k.removeprefix("tts."): v for k, v in options.items()}
            self.tts = TTSS.create(name, **{**tts_options, **extra})
        self.dtype = str(next(self.thinker.parameters()).dtype).removeprefix("torch.")
        self.root: Path | None = None
        self._lock = threading.Lock()
        self._torch = torch

    def prepare(self, bench: Benchmark) -> None:
        self.root = bench.root
        if self.tts is not None:
            self.tts.prepare(bench.roles.values())

    def conversation(self, request: TurnRequest) -> tuple[list[dict[str, str]], list[Path]]:
        """Messages in the training format and their clips (earlier user turns as audio when they have it)."""
        if request.user_audio is None:
            raise ValueError("this turn has no user audio")
        messages = [{"role": "system", "content": request.system_prompt()}]
        clips: list[Path] = []
        for i, exchange in enumerate(request.history):
            turn = request.sample.turns[i] if i < len(request.sample.turns) else None
            if turn is not None and turn.user_audio and self.root is not None:
                clips.append(
                    resolve_inside(
                        self.root,
                        turn.user_audio,
                        file=request.sample.source,
                        field=f"turns[{i}].user_speech_path",
                    )
                )
                messages.append({"role": "user", "content": AUDIO_PLACEHOLDER})
            else:
                messages.append({"role": "user", "content": exchange.user})
            messages.append({"role": "assistant", "content": exchange.assistant})
        clips.append(request.user_audio)
        messages.append({"role": "user", "content": AUDIO_PLACEHOLDER})
        return messages, clips

    def inputs(self, request: TurnRequest) -> dict[str, Any]:
        """The thinker's inputs for this turn, on its device."""
        messages, clips = self.conversation(request)
        encoded = self.encoder.encode(
            messages,
            [self.encoder.load_clip(c, field="user_audio") for c in clips],
            train_on=None,
            generation_prompt=True,
        )
        batch = collate([encoded], self.encoder.pad)
        batch.pop("labels")
        return {k: v.to(self.device) for k, v in batch.items()}

    def answer(self, inputs: dict[str, Any]) -> tuple[str, Any]:
        """Greedy text answer (and the talker's waveform when it speaks)."""
        torch = self._torch
        common = {"do_sample": False, "eos_token_id": self.encoder.im_end, "pad_token_id": self.encoder.pad}
        with self._lock, torch.inference_mode():
            if self.omni is not None:
                ids, audio = self.omni.generate(
                    **inputs,
                    speaker=self.speaker,
                    thinker_max_new_tokens=self.max_new_tokens,
                    talker_max_new_tokens=self.talker_max_new_tokens,
                    thinker_do_sample=False,
                )
            else:
                ids, audio = (
                    self.thinker.generate(**inputs, max_new_tokens=self.max_new_tokens, **common),
                    None,
                )
        new = ids[0, inputs["input_ids"].shape[1] :]
        return self.encoder.tokenizer.decode(new, skip_special_tokens=True).strip(), audio

    def reply(self, request: TurnRequest) -> AgentReply:
        started = time.perf_counter()
        text, audio = self.answer(self.inputs(request))
        t_text = time.perf_counter()
        if self.talker:
            samples = (
                audio.reshape(-1).float().cpu().numpy() if audio is not None else np.zeros(0, np.float32)
            )
            if samples.size == 0:
                raise RuntimeError("the talker produced no audio")
            write_wav(request.audio_out, samples, TALKER_RATE)
        else:
            spoken = speakable(text)
            if not spoken or not any(ch.isalnum() for ch in spoken):
                raise RuntimeError(f"the model's answer has nothing to say aloud: {text[:80]!r}")
            assert self.tts is not None
            wave, rate = self.tts.synthesize(spoken, request.role)
            write_wav(request.audio_out, wave, rate)
        total = time.perf_counter() - started
        return AgentReply(
            text=text,
            audio=str(request.audio_out),
            intermediates={"thinker": text},
            latency_s={
                "thinker": round(t_text - started, 4),
                "total": round(total, 4),
                "first_audio": round(total, 4),
            },
        )

    def describe(self) -> dict[str, Any]:
        return {
            "agent": "omni",
            "model": str(self.folder.resolve()),
            "model_sha256": self.model_sha256,
            "adapter": str(Path(self.adapter).resolve()) if self.adapter else None,
            "adapter_sha256": self.adapter_sha256,
            "voice": f"talker speaker {self.speaker} (not the role's voice)"
            if self.talker
            else self.tts.describe(),  # type: ignore[union-attr]
            "decoding": f"greedy, at most {self.max_new_tokens} new tokens",
            "history": "earlier user turns as their audio, answers as text",
            "device": self.device,
            "dtype": self.dtype,
        }


def _weights(options: dict[str, Any]) -> None:
    """The model folder (and adapter) a spec names, checked before a long run starts."""
    from speechrole.train.model import adapter_folder, model_folder

    if not options.get("model"):
        raise ModelMissingError("omni needs model=PATH (a Qwen2.5-Omni checkpoint folder)")
    model_folder(options["model"])
    if options.get("adapter"):
        adapter_folder(options["adapter"])


@AGENTS.register(
    "omni",
    summary="a (fine-tuned) Qwen2.5-Omni thinker + a TTS voice: omni:model=PATH[,adapter=TRAIN_OUT][,tts=voicebank|talker]",
    check=lambda: needs_module("peft", "pip install 'speechrole[train]'"),
    weights=lambda options: weights_problem(_weights, options),
)
def _omni(**options: Any) -> Agent:
    return OmniAgent(**options)
