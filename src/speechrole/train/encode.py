"""Chat -> Qwen2.5-Omni thinker inputs, one encoding for training and for the `omni` agent.

A conversation is a list of `{"role", "content"}` messages whose text may hold `<audio>` placeholders,
one per clip, in order (the chat JSONL `speechrole data run` exports). It is rendered in Qwen's ChatML
(`<|im_start|>role\\n...<|im_end|>\\n`), each placeholder becoming `<|audio_bos|>`, one `<|AUDIO|>` per
frame the audio encoder outputs, and `<|audio_eos|>`. The count comes from the same arithmetic as the
encoder's (two stride-2 reductions of the log-mel frames: 25 tokens per second), and `check_audio_tokens`
compares it with the encoder itself. Clips are read with our audio loader and resampled to 16 kHz; a clip
longer than the encoder's 30 s window would be cut by the feature extractor, so it is refused instead.

Labels: the tokens of assistant answers and their `<|im_end|>` (every answer, or only the last);
everything else is -100. Messages are tokenized one piece at a time, so a label boundary never falls
inside a token, and an audio span is never split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from speechrole.audio import load_audio, resample

AUDIO_PLACEHOLDER = "<audio>"
SAMPLE_RATE = 16000
HOP = 160  # log-mel hop: 100 frames per second
MAX_FRAMES = 3000  # the feature extractor's 30 s window
MAX_AUDIO_SECONDS = MAX_FRAMES * HOP / SAMPLE_RATE
IGNORE = -100
TrainOn = Literal["all", "last"]


def feature_frames(samples: int) -> int:
    """Log-mel frames the feature extractor marks as real for a 16 kHz clip of `samples` samples."""
    return min(math.ceil(samples / HOP), MAX_FRAMES)


def audio_tokens(frames: int) -> int:
    """Audio-encoder outputs (placeholder tokens) for `frames` log-mel frames: conv stride 2, then pooling 2."""
    after_conv = (frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


@dataclass
class Encoded:
    """One conversation as thinker inputs: token ids, labels, and per clip its log-mel features [128, frames]."""

    input_ids: list[int]
    labels: list[int]
    features: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


class ClipTooLongError(ValueError):
    """A clip longer than the audio encoder's window."""


class ChatEncoder:
    """Tokenizer + log-mel feature extractor + the thinker's special-token ids."""

    def __init__(self, tokenizer: Any, feature_extractor: Any, audio_token_id: int | None = None) -> None:
        self.tokenizer, self.feature_extractor = tokenizer, feature_extractor
        ids = tokenizer.convert_tokens_to_ids
        self.im_start, self.im_end = ids("<|im_start|>"), ids("<|im_end|>")
        self.audio_bos, self.audio_eos = ids("<|audio_bos|>"), ids("<|audio_eos|>")
        self.audio_token = ids("<|AUDIO|>")
        if audio_token_id is not None and audio_token_id != self.audio_token:
            raise ValueError(
                f"the tokenizer's <|AUDIO|> is {self.audio_token} but the model expects {audio_token_id}"
            )
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.im_end

    @classmethod
    def from_pretrained(cls, folder: Path) -> ChatEncoder:
        """The encoder of a checkpoint folder (its tokenizer and preprocessor_config.json)."""
        import json

        from transformers import AutoTokenizer, WhisperFeatureExtractor

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        thinker = config.get("thinker_config", config)
        return cls(
            AutoTokenizer.from_pretrained(folder),
            WhisperFeatureExtractor.from_pretrained(folder),
            thinker.get("audio_token_index"),
        )

    # -- audio ------------------------------------------------------------------------------------
    @staticmethod
    def load_clip(path: Path, *, field: str = "audio") -> np.ndarray:
        """A clip as 16 kHz mono float32; `ClipTooLongError` past the encoder's window."""
        data, rate = load_audio(path, field=field)
        mono = resample(data, rate, SAMPLE_RATE).mean(axis=1).astype(np.float32)
        if len(mono) > MAX_AUDIO_SECONDS * SAMPLE_RATE:
            raise ClipTooLongError(
                f"{path}: {len(mono) / SAMPLE_RATE:.1f} s is longer than the audio encoder's "
                f"{MAX_AUDIO_SECONDS:.0f} s window"
            )
        return mono

    def features(self, clip: np.ndarray) -> np.ndarray:
        """Log-mel features [128, frames] of a 16 kHz clip, cut to its real frames (no padding)."""
        out = self.feature_extractor(
            clip,
            sampling_rate=SAMPLE_RATE,
            padding="max_length",
            return_attention_mask=True,
            return_tensors="np",
        )
        frames = int(out["attention_mask"][0].sum())
        if frames != feature_frames(len(clip)):
            raise RuntimeError(f"feature extractor gave {frames} frames for {len(clip)} samples")
        return np.asarray(out["input_features"][0][:, :frames], dtype=np.float32)

    # -- text -------------------------------------------------------------------------------------
    def _text(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _content(self, content: str, clip_frames: Sequence[int], first_clip: int) -> tuple[list[int], int]:
        """Token ids of one message's content; its `<audio>` placeholders take clips from `first_clip` on."""
        ids: list[int] = []
        pieces = content.split(AUDIO_PLACEHOLDER)
        used = 0
        for i, piece in enumerate(pieces):
            ids += self._text(piece)
            if i < len(pieces) - 1:
                if first_clip + used >= len(clip_frames):
                    raise ValueError("more <audio> placeholders than audio clips")
                ids += [self.audio_bos, *[self.audio_token] * audio_tokens(clip_frames[first_clip + used])]
                ids.append(self.audio_eos)
                used += 1
        return ids, used

    def encode_frames(
        self,
        messages: Sequence[dict[str, Any]],
        clip_frames: Sequence[int],
        *,
        train_on: TrainOn | None = "all",
        generation_prompt: bool = False,
    ) -> Encoded:
        """Ids and labels for messages whose clips have `clip_frames` log-mel frames (no features)."""
        ids: list[int] = []
        labels: list[int] = []
        answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        trained = set() if train_on is None else set(answers if train_on == "all" else answers[-1:])
        clip = 0
        for i, message in enumerate(messages):
            head = [self.im_start, *self._text(f"{message['role']}\n")]
            body, used = self._content(str(message["content"]), clip_frames, clip)
            clip += used
            body.append(self.im_end)
            tail = self._text("\n")
            ids += head + body + tail
            labels += (
                [IGNORE] * len(head) + (body if i in trained else [IGNORE] * len(body)) + [IGNORE] * len(tail)
            )
        if clip != len(clip_frames):
            raise ValueError(f"{len(clip_frames)} audio clips for {clip} <audio> placeholders")
        if generation_prompt:
            prompt = [self.im_start, *self._text("assistant\n")]
            ids += prompt
            labels += [IGNORE] * len(prompt)
        return Encoded(ids, labels)

    def encode(
        self,
        messages: Sequence[dict[str, Any]],
        clips: Sequence[np.ndarray],
        *,
        train_on: TrainOn | None = "all",
        generation_prompt: bool = False,
    ) -> Encoded:
        """Ids, labels and features for messages and their 16 kHz clips."""
        features = [self.features(clip) for clip in clips]
        encoded = self.encode_frames(
            messages, [f.shape[1] for f in features], train_on=train_on, generation_prompt=generation_prompt
        )
        encoded.features = features
        return encoded


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded ids, mask and labels, and every clip's features in one [clips, 128, frames] tensor
    padded to the longest clip, with its frame mask (what the thinker's forward takes)."""
    import torch

    width = max(len(e) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        input_ids[row, : len(e)] = torch.tensor(e.input_ids)
        labels[row, : len(e)] = torch.tensor(e.labels)
        mask[row, : len(e)] = 1
    out: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    clips = [f for e in batch for f in e.features]
    if clips:
        frames = max(f.shape[1] for f in clips)
        features = torch.zeros((len(clips), clips[0].shape[0], frames), dtype=torch.float32)
        feature_mask = torch.zeros((len(clips), frames), dtype=torch.long)
        for i, f in enumerate(clips):
            features[i, :, : f.shape[1]] = torch.from_numpy(f)
            feature_mask[i, : f.shape[1]] = 1
        out |= {"input_features": features, "feature_attention_mask": feature_mask}
    return out


def check_audio_tokens(thinker: Any, encoder: ChatEncoder, clip: np.ndarray) -> tuple[int, int]:
    """(placeholders we insert, vectors the thinker's audio encoder outputs) for one clip: they must match."""
    import torch

    features = encoder.features(clip)
    batch = collate([Encoded([], [], [features])], encoder.pad)
    with torch.no_grad():
        out = thinker.get_audio_features(
            batch["input_features"].to(thinker.device, thinker.dtype),
            batch["feature_attention_mask"].to(thinker.device),
        )
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
    return audio_tokens(features.shape[1]), int(hidden.shape[0])
