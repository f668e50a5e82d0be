"""Speaker similarity: does the answer sound like the role's reference voice?

Cosine between speaker embeddings of the clip and of the role's reference clip. Bundled tier:
resemblyzer (GE2E). Real tier: a CAM++ or WeSpeaker ONNX model from a local path (80-dim Kaldi
fbank features in, embedding out), the family the paper used to pick reference clips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from speechrole.metrics.base import METRICS, RATE, Clip, Metric, MetricError, MetricValues
from speechrole.models import ModelMissingError, local_dir, needs_module


class OnnxSpeakerEncoder:
    """CAM++ / WeSpeaker exported to ONNX: input (1, frames, 80) Kaldi fbank, output an embedding."""

    name = "onnx"

    def __init__(self, path: str) -> None:
        if (why := needs_module("kaldi_native_fbank", "pip install kaldi-native-fbank")) is not None:
            raise ModelMissingError(f"ONNX speaker encoder: {why}")
        self.path = local_dir(
            path, "speaker embedding ONNX model", "export CAM++ or WeSpeaker to ONNX and pass its path"
        )
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def embed(self, audio: np.ndarray, rate: int) -> np.ndarray:
        import kaldi_native_fbank as knf

        opts = knf.FbankOptions()
        opts.frame_opts.dither = 0.0
        opts.frame_opts.samp_freq = rate
        opts.mel_opts.num_bins = 80
        fbank = knf.OnlineFbank(opts)
        fbank.accept_waveform(rate, (audio * 32768.0).astype(np.float32).tolist())
        fbank.input_finished()
        feats = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]).astype(np.float32)
        feats -= feats.mean(axis=0, keepdims=True)  # cepstral mean normalisation, as both toolkits do
        vector = self._session.run(None, {self._input: feats[None]})[0].reshape(-1)
        return vector / (np.linalg.norm(vector) or 1.0)


class SpeakerSimilarity(Metric):
    name = "speaker"
    fields: ClassVar[dict[str, Literal["higher", "lower"]]] = {"similarity": "higher"}
    needs_reference_clip = True

    def __init__(self, model: str = "", **_: Any) -> None:
        self.model = model
        self._encoder: Any = None
        self._cache: dict[str, np.ndarray] = {}

    @property
    def version(self) -> str:  # type: ignore[override]
        return "1" if not self.model else f"1-onnx-{Path(self.model).name}"

    def load(self) -> None:
        if self._encoder is None:
            if self.model:
                self._encoder = OnnxSpeakerEncoder(self.model)
            else:
                from speechrole.speakers import default_encoder

                self._encoder = default_encoder()

    def _embedding(self, clip: Clip) -> np.ndarray:
        if clip.sha256 not in self._cache:
            self._cache[clip.sha256] = self._encoder.embed(clip.audio, RATE)
        return self._cache[clip.sha256]

    def measure(self, clips: list[Clip]) -> list[MetricValues | MetricError]:
        self.load()
        out: list[MetricValues | MetricError] = []
        for clip in clips:
            if clip.reference is None:
                out.append(MetricError("the role has no reference voice clip"))
            elif {"silent", "too_short"} & set(clip.flags + clip.reference.flags):
                out.append(MetricError("silent or too short for a speaker embedding"))
            else:
                out.append({"similarity": float(self._embedding(clip) @ self._embedding(clip.reference))})
        return out

    def describe(self) -> dict[str, Any]:
        encoder = "resemblyzer 0.1.4 (GE2E)" if not self.model else f"ONNX {self.model}"
        return {**super().describe(), "encoder": encoder}


METRICS.register(
    "speaker",
    summary="speaker similarity to the role's reference clip (resemblyzer; speaker:model=PATH.onnx for CAM++/WeSpeaker)",
    check=lambda: needs_module("resemblyzer", "pip install --no-deps resemblyzer==0.1.4"),
)(SpeakerSimilarity)
