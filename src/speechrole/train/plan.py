"""The training plan: one YAML file (or flags) saying what to train on, from which base, and how.

    model: /models/Qwen2.5-Omni-7B          # or a folder from `speechrole train tiny-model`
    data: [work/export/chat/chat.jsonl]      # chat JSONL exports and/or official-layout folders
    output: runs/speechrole-agent
    exclude_roles: official                  # the 98 SpeechRole-Eval roles (default); [] keeps all
    exclude_dialogues_of: null               # a benchmark whose dialogues must not be trained on
    split: {by: dialogue, fraction: 0.05}    # or by: role; eval_roles: [...]
    lora: {r: 8, alpha: 16, dropout: 0.05}
    train_on: all                            # every assistant turn, or last
    max_length: 4096                         # longer samples are dropped (counted), never cut
    epochs: 2
    lr: 1.0e-4

Every field has a default; `digest()` covers everything that changes the result, so a resumed run can
refuse an output folder trained under another plan.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speechrole.problems import DataError
from speechrole.train.model import DEFAULT_TARGETS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraPlan(_Strict):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    #: linear layers of the language model (never the audio encoder or vision tower)
    targets: tuple[str, ...] = DEFAULT_TARGETS


class SplitPlan(_Strict):
    by: Literal["dialogue", "role"] = "dialogue"
    fraction: float = Field(0.1, ge=0, lt=1)
    eval_roles: tuple[str, ...] = ()


class TrainPlan(_Strict):
    model: str
    data: tuple[str, ...] = Field(min_length=1)
    output: str
    exclude_roles: Literal["official"] | tuple[str, ...] = "official"
    exclude_dialogues_of: str | None = None
    split: SplitPlan = SplitPlan()
    lora: LoraPlan = LoraPlan()
    train_on: Literal["all", "last"] = "all"
    max_length: int = Field(4096, ge=16)
    epochs: float = Field(2.0, gt=0)
    max_steps: int = -1  # stop after this many optimizer steps (-1: run the epochs)
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(8, ge=1)
    lr: float = Field(1e-4, gt=0)
    optimizer: str = "adamw_torch"
    scheduler: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    gradient_checkpointing: bool = False
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 on a GPU, fp32 on a CPU
    save_steps: int = Field(100, ge=1)
    save_total_limit: int = Field(2, ge=1)
    logging_steps: int = Field(1, ge=1)
    workers: int = Field(0, ge=0)  # data-loading processes
    seed: int = 0

    def digest(self) -> str:
        """sha256 of everything that changes the trained adapter (the output folder excluded)."""
        data = self.model_dump(mode="json", exclude={"output", "logging_steps", "workers"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def output_dir(self) -> Path:
        return Path(self.output).expanduser()


def load_plan(path: Path | None, **overrides: object) -> TrainPlan:
    """A plan from YAML (relative paths resolved beside it) with flag overrides (None = not given)."""
    raw: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise DataError(path, "", f"cannot read the plan: {exc}") from None
        if not isinstance(loaded, dict):
            raise DataError(path, "", "expected a mapping")
        raw = loaded
        base = path.parent
        for key in ("model", "output", "exclude_dialogues_of"):
            if isinstance(raw.get(key), str) and not Path(str(raw[key])).is_absolute() and raw[key] != "mini":
                raw[key] = str(base / str(raw[key]))
        if isinstance(raw.get("data"), str):
            raw["data"] = [raw["data"]]
        if isinstance(raw.get("data"), list):
            raw["data"] = [str(d) if Path(str(d)).is_absolute() else str(base / str(d)) for d in raw["data"]]
    raw |= {k: v for k, v in overrides.items() if v is not None}
    try:
        return TrainPlan.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise DataError(path or "flags", field, first["msg"]) from None
