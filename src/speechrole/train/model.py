"""Loading Qwen2.5-Omni's thinker, LoRA on its language model only, adapters and merging.

The thinker (audio encoder, vision tower, text decoder) is the part that is trained: the talker cannot
be (its waveform-to-codec tokenizer was never released). LoRA targets are found by walking the model
to its text decoder, so they never touch the audio encoder's `q_proj/k_proj/v_proj`, whatever the
module paths of the installed transformers version (`model.language_model.layers` in 5.x,
`model.layers` in 4.x).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from speechrole.models import WEIGHTS_MISSING, ModelMissingError

#: The language model's linear layers (attention and MLP), LoRA's usual targets.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: Files of a checkpoint folder that are not the weights: carried over by `merge`.
WEIGHT_FILES = re.compile(r"(model.*\.safetensors|model\.safetensors\.index\.json|pytorch_model.*\.bin)$")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def quiet_transformers() -> None:
    """Keep transformers' loading bars and config warnings (harmless for Omni checkpoints) off our display."""
    import warnings

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    # renamed-argument notices raised inside transformers (and through peft), not about our code
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")


def model_folder(path: str | Path) -> Path:
    """A local Qwen2.5-Omni checkpoint folder, or `ModelMissingError` saying what is missing (one line)."""
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelMissingError(
            f"{WEIGHTS_MISSING}: {folder} has no config.json (a Qwen2.5-Omni checkpoint folder, e.g. "
            "Qwen/Qwen2.5-Omni-7B downloaded, or `speechrole train tiny-model DIR`)"
        )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") not in {"qwen2_5_omni", "qwen2_5_omni_thinker"}:
        raise ModelMissingError(
            f"{folder}: model_type {config.get('model_type')!r} is not Qwen2.5-Omni (qwen2_5_omni)"
        )
    if not any(WEIGHT_FILES.match(p.name) for p in folder.iterdir()):
        raise ModelMissingError(f"{WEIGHTS_MISSING}: {folder} has a config but no weight files")
    return folder


def model_digest(folder: Path) -> str:
    """sha256 of the base checkpoint's config and its weight files' names and sizes."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for f in sorted(folder.iterdir()):
        if WEIGHT_FILES.match(f.name):
            digest.update(f"{f.name}:{f.stat().st_size}".encode())
    return digest.hexdigest()


def is_full_omni(folder: Path) -> bool:
    """Whether the checkpoint holds the whole Omni model (thinker, talker, token2wav), not the thinker alone."""
    return (
        json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == "qwen2_5_omni"
    )


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_for(device: str, precision: str = "auto") -> Any:
    """bf16 on a GPU, fp32 on a CPU (unless `precision` says bf16/fp16/fp32)."""
    import torch

    if precision == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def load_thinker(path: str | Path, *, device: str | None = None, precision: str = "auto") -> Any:
    """The thinker of a Qwen2.5-Omni checkpoint (full or thinker-only), on `device`."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    quiet_transformers()
    folder = model_folder(path)
    device = device or default_device()
    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        folder, dtype=dtype_for(device, precision)
    )
    return thinker.to(device)


def load_omni(path: str | Path, *, device: str | None = None, precision: str = "auto") -> Any:
    """The whole Qwen2.5-Omni model (thinker, talker, token2wav and the speaker file), on `device`."""
    from transformers import Qwen2_5OmniForConditionalGeneration

    quiet_transformers()
    folder = model_folder(path)
    if not is_full_omni(folder):
        raise ModelMissingError(
            f"{folder} holds a thinker only: the talker's voices need a full Qwen2.5-Omni"
        )
    if not (folder / "spk_dict.pt").is_file():
        raise ModelMissingError(f"{WEIGHTS_MISSING}: {folder / 'spk_dict.pt'} (the talker's speaker file)")
    device = device or default_device()
    model = Qwen2_5OmniForConditionalGeneration.from_pretrained(folder, dtype=dtype_for(device, precision))
    return model.to(device)


def decoder_prefix(thinker: Any) -> str:
    """The module path of the thinker's text decoder (e.g. `model.language_model`)."""
    decoder = thinker.get_decoder()
    for name, module in thinker.named_modules():
        if module is decoder and name:
            return name
    raise RuntimeError("the thinker's text decoder was not found among its modules")


def target_pattern(thinker: Any, names: tuple[str, ...] | list[str] = DEFAULT_TARGETS) -> str:
    """A regular expression (peft matches it against whole module names) selecting the linear layers
    called `names` inside the text decoder only."""
    prefix = re.escape(decoder_prefix(thinker))
    return rf"{prefix}\..*\.({'|'.join(re.escape(n) for n in names)})"


def lora_targets(thinker: Any, pattern: str) -> list[str]:
    """The module names `pattern` selects (what LoRA will wrap); an empty selection is an error."""
    import torch

    found = [
        name
        for name, module in thinker.named_modules()
        if isinstance(module, torch.nn.Linear) and re.fullmatch(pattern, name)
    ]
    if not found:
        raise ValueError(f"no linear layer of the language model matches the LoRA targets ({pattern})")
    return found


def add_lora(
    thinker: Any, *, r: int, alpha: int, dropout: float, targets: list[str] | tuple[str, ...]
) -> Any:
    """Wrap the thinker with fresh LoRA adapters on its language model; everything else stays frozen."""
    from peft import LoraConfig, get_peft_model

    pattern = target_pattern(thinker, tuple(targets))
    lora_targets(thinker, pattern)  # fail early, naming the pattern, when nothing matches
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, bias="none")
    return get_peft_model(thinker, config)


def adapter_folder(path: str | Path) -> Path:
    """An adapter folder: the folder itself, or a training output's `adapter/`."""
    folder = Path(path).expanduser()
    if (folder / "adapter" / ADAPTER_FILES[0]).is_file():
        folder = folder / "adapter"
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelMissingError(f"{folder}: not a LoRA adapter folder (missing {', '.join(missing)})")
    return folder


def adapter_base(path: str | Path) -> str | None:
    """The base checkpoint an adapter was trained on, as peft recorded it."""
    config = json.loads((adapter_folder(path) / ADAPTER_FILES[0]).read_text(encoding="utf-8"))
    return config.get("base_model_name_or_path") or None


def adapter_digest(path: str | Path) -> str:
    """sha256 over the adapter's config and weights: what `run.json` and `merge.json` record."""
    folder = adapter_folder(path)
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        digest.update(name.encode())
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def with_adapter(thinker: Any, adapter: str | Path) -> Any:
    """The thinker with a trained adapter applied (not merged), ready for inference."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(thinker, adapter_folder(adapter), is_trainable=False)
    model.eval()
    return model


def merge(base: str | Path, adapter: str | Path, output: Path) -> dict[str, Any]:
    """Fold the adapter into the thinker and write a full checkpoint the `omni` agent loads: for a full
    Omni base, the talker, token2wav and the speaker file are carried over unchanged; the tokenizer and
    feature extractor files are copied. Returns what `merge.json` records."""
    import torch

    folder, adapter_dir = model_folder(base), adapter_folder(adapter)
    if output.resolve() == folder.resolve():
        raise ValueError("merge would overwrite the base model: give another --output")
    full = is_full_omni(folder)
    model = (
        load_omni(folder, device="cpu", precision="fp32")
        if full
        else load_thinker(folder, device="cpu", precision="fp32")
    )
    dtype = _saved_dtype(folder)
    thinker = model.thinker if full else model
    merged = with_adapter(thinker, adapter_dir).merge_and_unload()
    if full:
        model.thinker = merged
    else:
        model = merged
    if dtype is not None and dtype != torch.float32:
        model.to(dtype)
        if full:
            model.token2wav.float()  # token2wav runs in fp32, as the Omni model keeps it
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    for item in folder.iterdir():  # tokenizer, feature extractor, chat template, speaker file, ...
        if (
            item.is_file()
            and not WEIGHT_FILES.match(item.name)
            and item.name not in {"config.json", "generation_config.json"}
        ):
            shutil.copy2(item, output / item.name)
    record = {
        "base": str(folder.resolve()),
        "adapter": str(adapter_dir.resolve()),
        "adapter_sha256": adapter_digest(adapter_dir),
        "talker": "carried over" if full else "none (thinker-only base)",
    }
    (output / "merge.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _saved_dtype(folder: Path) -> Any:
    import torch

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    name = config.get("dtype") or config.get("torch_dtype")
    return getattr(torch, str(name), None) if name else None
