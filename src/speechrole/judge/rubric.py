"""The judge's rubric and prompt texts, as data (a YAML file a user can replace)."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, field_validator

from speechrole.problems import DataError
from speechrole.schema import METRICS


class Rubric(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    system: str
    metrics: dict[str, str]
    question: str
    response_start: str
    response_end: str
    round_label: str
    instruction: str
    reask: str
    sha256: str = ""

    @field_validator("metrics")
    @classmethod
    def _all_metrics(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [m for m in METRICS if m not in value]
        extra = sorted(set(value) - set(METRICS))
        if missing or extra:
            raise ValueError(
                f"metrics must be exactly the 8 SpeechRole metrics (missing {missing}, unknown {extra})"
            )
        return {m: value[m] for m in METRICS}


def load_rubric(path: Path | None = None) -> Rubric:
    """The bundled rubric, or the one at `path`; a malformed file is one clear error naming it."""
    if path is None:
        text = resources.files("speechrole.data").joinpath("judge_rubric.yaml").read_text(encoding="utf-8")
        origin = "speechrole/data/judge_rubric.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(path, "", f"cannot read rubric: {exc}") from None
        origin = str(path)
    try:
        data = yaml.safe_load(text)
        return Rubric(**data, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())
    except (yaml.YAMLError, TypeError, ValueError) as exc:
        raise DataError(origin, "", f"invalid rubric: {exc}") from None
