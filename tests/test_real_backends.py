"""Real-tier backends given what their libraries expect, and availability that tells a missing library
from missing weights. The libraries are stood in for by modules with the real call signatures; no
weights and no network are needed."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml

from speechrole.models import (
    ModelMissingError,
    needs_module,
    pyannote_local_config,
    write_pyannote_config,
)
from speechrole.schema import Language, Role

COMMIT = "0123456789abcdef0123456789abcdef01234567"


# --- helpers -----------------------------------------------------------------------------------------


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> types.ModuleType:
    """Install `name` (and its parents) in sys.modules so that find_spec and imports see it."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        dotted = ".".join(parts[:i])
        if dotted not in sys.modules or not getattr(sys.modules[dotted], "_speechrole_fake", False):
            module = types.ModuleType(dotted)
            module.__spec__ = importlib.machinery.ModuleSpec(dotted, None, is_package=i < len(parts))
            module.__path__ = []  # type: ignore[attr-defined]
            module._speechrole_fake = True  # type: ignore[attr-defined]
            monkeypatch.setitem(sys.modules, dotted, module)
            if i > 1:
                monkeypatch.setattr(
                    sys.modules[".".join(parts[: i - 1])], parts[i - 1], module, raising=False
                )
    leaf = sys.modules[name]
    for key, value in attrs.items():
        setattr(leaf, key, value)
    return leaf


def cache_repo(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face hub cache entry as a download leaves it (refs/main -> snapshots/<commit>/...)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    for name, data in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(data)
    return snapshot


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache (and pyannote cache): nothing was ever downloaded."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("PYANNOTE_CACHE", str(tmp_path / "pyannote-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no modelscope cache either
    return cache


def role_with_clip(tmp_path: Path, seconds: float, rate: int = 24000, channels: int = 2) -> Role:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    clip = tmp_path / "ref.wav"
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    import soundfile as sf

    clip.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(clip), data, rate, subtype="PCM_16")
    return Role(
        id="r1",
        name="Role",
        language=Language.EN,
        reference_audio=str(clip),
        reference_transcript="I have been thinking about it.",
    )


# --- 1. CosyVoice2 gets the prompt its release takes ---------------------------------------------------


def cosyvoice_folder(root: Path) -> Path:
    from speechrole.agents.cloning import COSYVOICE_FILES

    for name in COSYVOICE_FILES:
        path = root / name.rstrip("/")
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    return root


class CosyVoice2Tensor:
    """Stands in for CosyVoice2 releases until late 2025: the prompt is a 16 kHz [1, T] tensor."""

    sample_rate = 24000
    seen: ClassVar[list[Any]] = []

    def __init__(
        self, model_dir: str, load_jit: bool = False, load_trt: bool = False, fp16: bool = False
    ) -> None:
        self.model_dir = model_dir

    def inference_zero_shot(
        self,
        tts_text: str,
        prompt_text: str,
        prompt_speech_16k: Any,
        zero_shot_spk_id: str = "",
        stream: bool = False,
        speed: float = 1.0,
        text_frontend: bool = True,
    ) -> Iterator[dict[str, Any]]:
        import torch

        assert isinstance(prompt_speech_16k, torch.Tensor), f"got {type(prompt_speech_16k).__name__}"
        assert prompt_speech_16k.dtype == torch.float32 and prompt_speech_16k.dim() == 2
        assert stream is False
        type(self).seen.append(prompt_speech_16k)
        for n in (2400, 1200):  # the real one yields a piece per sentence
            yield {"tts_speech": torch.full((1, n), 0.1)}


class CosyVoice2Path(CosyVoice2Tensor):
    """Stands in for CosyVoice releases from December 2025: the prompt is a file (`prompt_wav`)."""

    def inference_zero_shot(  # type: ignore[override]
        self,
        tts_text: str,
        prompt_text: str,
        prompt_wav: str,
        zero_shot_spk_id: str = "",
        stream: bool = False,
        speed: float = 1.0,
        text_frontend: bool = True,
    ) -> Iterator[dict[str, Any]]:
        import torch

        assert isinstance(prompt_wav, str) and Path(prompt_wav).is_file()
        type(self).seen.append(prompt_wav)
        yield {"tts_speech": torch.full((1, 2400), 0.1)}


def make_cosyvoice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, standin: type) -> Any:
    from speechrole.agents.cloning import CosyVoice2Backend

    standin.seen = []
    fake_module(monkeypatch, "cosyvoice.cli.cosyvoice", CosyVoice2=standin)
    return CosyVoice2Backend(model=str(cosyvoice_folder(tmp_path / "CosyVoice2-0.5B")))


def test_cosyvoice2_gets_16k_tensor_not_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    backend = make_cosyvoice(monkeypatch, tmp_path, CosyVoice2Tensor)
    role = role_with_clip(tmp_path, seconds=1.5, rate=24000, channels=2)  # stereo 24 kHz on disk
    audio, rate = backend.synthesize("Hello there.", role)
    (prompt,) = CosyVoice2Tensor.seen
    assert isinstance(prompt, torch.Tensor) and prompt.dtype == torch.float32
    assert prompt.shape[0] == 1 and abs(prompt.shape[1] - 1.5 * 16000) <= 1  # [1, T] at 16 kHz, mono
    assert 0.15 < float(prompt.abs().max()) < 0.35  # the clip's samples, not a scaled int16 copy
    assert rate == 24000 and audio.dtype == np.float32 and audio.shape == (3600,)  # every piece kept
    assert backend.describe()["prompt"] == "tensor"


def test_cosyvoice2_after_dec_2025_gets_the_clip_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    backend = make_cosyvoice(monkeypatch, tmp_path, CosyVoice2Path)
    role = role_with_clip(tmp_path, seconds=1.0)
    backend.synthesize("Hello there.", role)
    assert CosyVoice2Path.seen == [role.reference_audio]
    assert backend.describe()["prompt"] == "path"


def test_cosyvoice2_refuses_a_prompt_over_30s_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    backend = make_cosyvoice(monkeypatch, tmp_path, CosyVoice2Tensor)
    role = role_with_clip(tmp_path, seconds=31.0, rate=16000, channels=1)
    with pytest.raises(ValueError, match=r"31\.0 s; CosyVoice2 takes at most 30 s") as info:
        backend.synthesize("Hello.", role)
    assert "\n" not in str(info.value) and CosyVoice2Tensor.seen == []


def test_cosyvoice2_missing_model_file_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hf_cache: Path
) -> None:
    from speechrole.agents.cloning import CosyVoice2Backend

    fake_module(monkeypatch, "cosyvoice.cli.cosyvoice", CosyVoice2=CosyVoice2Tensor)
    folder = cosyvoice_folder(tmp_path / "CosyVoice2-0.5B")
    (folder / "flow.pt").unlink()
    with pytest.raises(ModelMissingError, match=r"^weights not found: CosyVoice2 file .*flow\.pt"):
        CosyVoice2Backend(model=str(folder))


# --- F5-TTS loads local files only ------------------------------------------------------------------------


def test_f5tts_default_weights_come_from_the_hf_cache_not_the_hub(
    monkeypatch: pytest.MonkeyPatch, hf_cache: Path
) -> None:
    from speechrole.agents.cloning import F5_CKPT, F5_REPO, VOCOS_REPO, F5TTSBackend

    made: dict[str, Any] = {}

    class F5TTS:
        def __init__(self, **kwargs: Any) -> None:
            made.update(kwargs)

    fake_module(monkeypatch, "f5_tts.api", F5TTS=F5TTS)
    with pytest.raises(ModelMissingError, match=r"^weights not found: no F5-TTS ckpt given"):
        F5TTSBackend()
    ckpt = cache_repo(hf_cache, F5_REPO, {F5_CKPT: b"x"}) / F5_CKPT
    vocos = cache_repo(hf_cache, VOCOS_REPO, {"config.yaml": b"x", "pytorch_model.bin": b"x"})
    F5TTSBackend()
    assert Path(made["ckpt_file"]) == ckpt
    assert Path(made["vocoder_local_path"]) == vocos  # a local vocoder: F5-TTS never downloads one


# --- 2. pyannote pipelines from local folders ---------------------------------------------------------------


PYANNOTE31 = {
    "version": "3.1.0",
    "pipeline": {
        "name": "pyannote.audio.pipelines.SpeakerDiarization",
        "params": {
            "clustering": "AgglomerativeClustering",
            "embedding": "models/wespeaker",  # a folder holding pytorch_model.bin
            "embedding_batch_size": 32,
            "segmentation": "models/segmentation-3.0.bin",
            "segmentation_batch_size": 32,
        },
    },
    "params": {"clustering": {"method": "centroid", "threshold": 0.70}},
}

COMMUNITY1 = {
    "dependencies": {"pyannote.audio": "4.0.0"},
    "pipeline": {
        "name": "pyannote.audio.pipelines.SpeakerDiarization",
        "params": {
            "clustering": "VBxClustering",
            "segmentation": "$model/segmentation",
            "embedding": "$model/embedding",
            "plda": "$model/plda",
            "embedding_exclude_overlap": True,
        },
    },
    "params": {"clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}},
}


def pyannote31_folder(root: Path) -> Path:
    (root / "models" / "wespeaker").mkdir(parents=True)
    (root / "models" / "wespeaker" / "pytorch_model.bin").write_bytes(b"x")
    (root / "models" / "segmentation-3.0.bin").write_bytes(b"x")
    (root / "config.yaml").write_text(yaml.safe_dump(PYANNOTE31))
    return root


def community1_folder(root: Path) -> Path:
    for name in ("segmentation/pytorch_model.bin", "embedding/pytorch_model.bin", "plda/plda.npz"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "plda" / "xvec_transform.npz").write_bytes(b"x")
    (root / "config.yaml").write_text(yaml.safe_dump(COMMUNITY1))
    return root


def test_pyannote31_relative_model_paths_become_absolute(tmp_path: Path, hf_cache: Path) -> None:
    folder = pyannote31_folder(tmp_path / "diarization-3.1")
    for given in (folder, folder / "config.yaml"):  # the folder or its config.yaml
        params = pyannote_local_config(str(given))["pipeline"]["params"]
        assert params["segmentation"] == str((folder / "models" / "segmentation-3.0.bin").resolve())
        assert params["embedding"] == str((folder / "models" / "wespeaker" / "pytorch_model.bin").resolve())
        assert params["clustering"] == "AgglomerativeClustering" and params["segmentation_batch_size"] == 32
    out = write_pyannote_config(str(folder), tmp_path / "copy")
    assert (
        out.parent == tmp_path / "copy" and yaml.safe_load(out.read_text())["params"] == PYANNOTE31["params"]
    )
    assert yaml.safe_load((folder / "config.yaml").read_text()) == PYANNOTE31  # the original is untouched


def test_pyannote4_model_subfolders_become_absolute(tmp_path: Path, hf_cache: Path) -> None:
    folder = community1_folder(tmp_path / "speaker-diarization-community-1")
    config = pyannote_local_config(str(folder))
    params = config["pipeline"]["params"]
    assert params["segmentation"] == str((folder / "segmentation" / "pytorch_model.bin").resolve())
    assert params["embedding"] == str((folder / "embedding" / "pytorch_model.bin").resolve())
    assert params["plda"] == str((folder / "plda").resolve())  # PLDA.from_pretrained takes its folder
    assert not any(str(v).startswith("$model/") for v in params.values())
    assert config["dependencies"] == COMMUNITY1["dependencies"]


@pytest.mark.parametrize(
    ("layout", "remove", "named"),
    [
        ("3.1", "models/segmentation-3.0.bin", "segmentation-3.0.bin"),
        ("3.1", "models/wespeaker/pytorch_model.bin", "wespeaker/pytorch_model.bin"),
        ("4", "embedding/pytorch_model.bin", "embedding/pytorch_model.bin"),
        ("4", "plda/xvec_transform.npz", "plda/xvec_transform.npz"),
    ],
)
def test_pyannote_missing_model_file_fails_with_one_line_naming_it(
    tmp_path: Path, hf_cache: Path, layout: str, remove: str, named: str
) -> None:
    folder = (pyannote31_folder if layout == "3.1" else community1_folder)(tmp_path / "pipe")
    (folder / remove).unlink()
    with pytest.raises(ModelMissingError) as info:
        pyannote_local_config(str(folder))
    message = str(info.value)
    assert message.startswith("weights not found: ") and named in message and "\n" not in message
    assert "config.yaml pipeline.params." in message  # and where it was asked for


def test_pyannote_hub_id_is_local_only_when_cached(tmp_path: Path, hf_cache: Path) -> None:
    folder = pyannote31_folder(tmp_path / "pipe")
    hub = {**PYANNOTE31, "pipeline": {**PYANNOTE31["pipeline"]}}
    hub["pipeline"]["params"] = {
        **PYANNOTE31["pipeline"]["params"],
        "segmentation": "pyannote/segmentation-3.0",
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(hub))
    with pytest.raises(ModelMissingError, match=r"^weights not found: .*'pyannote/segmentation-3.0'.*cache"):
        pyannote_local_config(str(folder))
    snapshot = cache_repo(hf_cache, "pyannote/segmentation-3.0", {"pytorch_model.bin": b"x"})
    params = pyannote_local_config(str(folder))["pipeline"]["params"]
    assert params["segmentation"] == str((snapshot / "pytorch_model.bin").resolve())


def test_pyannote_without_a_folder_says_what_to_download(hf_cache: Path) -> None:
    with pytest.raises(
        ModelMissingError, match=r"^weights not found: no pyannote pipeline given.*pass diarize"
    ):
        pyannote_local_config(None)


def test_diarize_loads_pyannote_from_the_rewritten_local_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hf_cache: Path
) -> None:
    from speechrole.pipeline.stage import Context
    from speechrole.pipeline.stages.audio import Diarize

    loaded: list[dict[str, Any]] = []

    def from_pretrained(checkpoint: str, **kwargs: Any) -> str:
        assert Path(checkpoint).is_file() and Path(checkpoint).name == "config.yaml"
        loaded.append(yaml.safe_load(Path(checkpoint).read_text()))
        return "pipeline"

    if needs_module("pyannote.audio", "") is None and not getattr(
        sys.modules.get("pyannote.audio"), "_speechrole_fake", False
    ):
        from pyannote.audio import Pipeline  # the real library: only its loader is replaced

        monkeypatch.setattr(Pipeline, "from_pretrained", staticmethod(from_pretrained))
    else:
        fake_module(
            monkeypatch, "pyannote.audio", Pipeline=types.SimpleNamespace(from_pretrained=from_pretrained)
        )
    folder = community1_folder(tmp_path / "work" / "models" / "community-1")
    stage = Diarize(backend="pyannote", model="models/community-1")  # relative to the pipeline file
    config = {"base_dir": str(tmp_path / "work")}
    assert stage.check(config) is None
    stage.setup(Context(work_dir=tmp_path / "run", config=config))
    assert stage.pyannote == "pipeline"
    assert loaded[0]["pipeline"]["params"]["plda"] == str((folder / "plda").resolve())
    (folder / "segmentation" / "pytorch_model.bin").unlink()
    assert str(stage.check(config)).startswith("weights not found: ")


def test_real_pyannote_takes_a_config_file_path() -> None:
    """With the real library present, its loader takes a local config.yaml (what we hand it)."""
    pytest.importorskip("pyannote.audio")
    import inspect

    from pyannote.audio import Pipeline

    assert "checkpoint" in inspect.signature(Pipeline.from_pretrained).parameters


# --- 3. availability: library missing vs weights missing ---------------------------------------------------


def entries() -> dict[str, Any]:
    from speechrole.agents import load_builtin
    from speechrole.agents.asr import ASRS
    from speechrole.agents.base import AGENTS
    from speechrole.agents.tts import TTSS

    load_builtin()
    return {
        "f5-tts": TTSS.get("f5-tts"),
        "cosyvoice2": TTSS.get("cosyvoice2"),
        "whisper": ASRS.get("whisper"),
        "qwen-omni": AGENTS.get("qwen-omni"),
    }


@pytest.fixture
def libraries_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cloning libraries importable (stand-ins); faster-whisper and transformers as installed."""
    fake_module(monkeypatch, "f5_tts.api")
    fake_module(monkeypatch, "cosyvoice.cli.cosyvoice")


@pytest.mark.parametrize("name", ["f5-tts", "cosyvoice2", "whisper", "qwen-omni"])
def test_library_without_weights_is_weights_not_found_never_usable(
    name: str, hf_cache: Path, libraries_present: None
) -> None:
    entry = entries()[name]
    if (library := entry.check()) is not None:
        pytest.skip(f"its library is not installed here: {library}")
    why = entry.availability()
    assert why is not None and why.startswith("weights not found: "), why
    assert "pass " in why and "\n" not in why  # it says what to pass


def test_missing_library_is_library_not_installed(hf_cache: Path) -> None:
    entry = entries()["f5-tts"]
    if needs_module("f5_tts", "") is None:
        pytest.skip("f5-tts is installed here")
    assert entry.availability() == "library not installed: pip install f5-tts (needs f5_tts)"


def test_whisper_weights_from_the_spec_or_the_cache(tmp_path: Path, hf_cache: Path) -> None:
    from speechrole.agents.asr import ASRS
    from speechrole.agents.base import backend_problem

    entry = entries()["whisper"]
    if entry.check() is not None:
        pytest.skip("faster-whisper is not installed here")
    folder = tmp_path / "faster-whisper-large-v3-turbo"
    folder.mkdir()
    for name in ("model.bin", "config.json"):
        (folder / name).write_bytes(b"x")
    assert str(backend_problem(ASRS, f"whisper:{folder}")).endswith("tokenizer.json")
    (folder / "tokenizer.json").write_bytes(b"x")
    assert backend_problem(ASRS, f"whisper:{folder}") is None  # the spec's path is what counts
    assert str(backend_problem(ASRS, "whisper:/nowhere/large")).startswith("weights not found: ")
    cache_repo(
        hf_cache,
        "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
        {"model.bin": b"x", "config.json": b"x", "tokenizer.json": b"x"},
    )
    assert entry.availability() is None  # the default size, downloaded before


def test_qwen_omni_shards_are_checked(tmp_path: Path, hf_cache: Path) -> None:
    import json

    entry = entries()["qwen-omni"]
    if entry.check() is not None:
        pytest.skip("transformers is not installed here")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    snapshot = cache_repo(
        hf_cache,
        "Qwen/Qwen2.5-Omni-7B",
        {
            "config.json": b"{}",
            "model.safetensors.index.json": json.dumps(index).encode(),
            "model-00001-of-00002.safetensors": b"x",
        },
    )
    assert str(entry.availability()).endswith("model-00002-of-00002.safetensors")
    (snapshot / "model-00002-of-00002.safetensors").write_bytes(b"x")
    assert entry.availability() is None
    assert entry.availability({"model": str(tmp_path / "nowhere")}).startswith("weights not found: ")


def test_registry_weights_check_sees_the_spec_options() -> None:
    from speechrole.registry import Registry

    seen: ClassVar[list[Any]] = []
    registry: Registry[object] = Registry("thing")

    def weights(options: Any) -> str | None:
        seen.append(dict(options))
        return None if options.get("model") else "weights not found: pass model=PATH"

    registry.register("x", summary="x", weights=weights)(lambda **_: object())
    registry.register("broken", summary="b", check=lambda: None, weights=_raise)(lambda **_: object())
    assert registry.get("x").availability() == "weights not found: pass model=PATH"
    assert registry.problem("x", {"model": "/m"}) is None and seen == [{}, {"model": "/m"}]
    assert registry.get("broken").availability() == "check failed: boom"


def _raise(options: Any) -> str | None:
    raise RuntimeError("boom")


def test_hf_llm_without_weights_is_not_reported_usable(tmp_path: Path) -> None:
    """`speechrole agents` said "yes" for the hf LLM when only transformers was installed."""
    from speechrole.agents import load_builtin
    from speechrole.agents.llm import LLMS

    load_builtin()
    entry = LLMS.get("hf")
    assert (entry.availability() or "").startswith("weights not found")
    assert "config.json" in (entry.availability({"model": str(tmp_path)}) or "")
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert entry.availability({"model": str(tmp_path)}) is None
