"""Token prices, the cost of a call from its reported usage, and a cost estimate before a run."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from speechrole.problems import DataError

#: Rough output size of one judged aspect (reason + two scores), for estimates only.
OUTPUT_TOKENS_PER_METRIC = 150
#: Rough token count of the prompt text per character, for estimates only.
TOKENS_PER_CHAR = 0.3


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    audio_input_per_mtok: float | None = None
    audio_tokens_per_second: float = 32.0

    def cost(self, usage: dict[str, int]) -> float:
        """USD for one call from the provider's usage (audio tokens billed apart when priced apart)."""
        prompt = usage.get("prompt_tokens", 0)
        audio = (
            usage.get("prompt_tokens_details.audio_tokens", 0) if self.audio_input_per_mtok is not None else 0
        )
        completion = usage.get("completion_tokens", 0)
        audio_rate = self.audio_input_per_mtok or 0.0
        return (
            (prompt - audio) * self.input_per_mtok + audio * audio_rate + completion * self.output_per_mtok
        ) / 1e6

    def estimate(self, text_chars: int, audio_seconds: float, n_metrics: int) -> float:
        """USD for one call before making it: text and audio tokens in, one reason and scores per metric out."""
        audio_tokens = audio_seconds * self.audio_tokens_per_second
        audio_rate = (
            self.audio_input_per_mtok if self.audio_input_per_mtok is not None else self.input_per_mtok
        )
        text_in = text_chars * TOKENS_PER_CHAR * self.input_per_mtok
        out = n_metrics * OUTPUT_TOKENS_PER_METRIC * self.output_per_mtok
        return (text_in + audio_tokens * audio_rate + out) / 1e6


def load_prices(path: Path | None = None) -> dict[str, Price]:
    if path is None:
        text = resources.files("speechrole.data").joinpath("prices.yaml").read_text(encoding="utf-8")
        origin = "speechrole/data/prices.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(path, "", f"cannot read price table: {exc}") from None
        origin = str(path)
    try:
        models = yaml.safe_load(text)["models"]
        return {str(name): Price(**fields) for name, fields in models.items()}
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise DataError(origin, "models", f"invalid price table: {exc}") from None


def price_for(model: str, prices: dict[str, Price]) -> Price | None:
    """Exact name first, then the longest key that prefixes the name (e.g. dated model versions)."""
    if model in prices:
        return prices[model]
    name = model.rsplit("/", 1)[-1]
    matches = [k for k in prices if name.startswith(k)]
    return prices[max(matches, key=len)] if matches else None
