"""What a judge run is told (`JudgeConfig`) and what it works on (`JudgeTarget`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechrole.fileio import read_json
from speechrole.outputs import OutputTree, find_output_tree
from speechrole.problems import DataError
from speechrole.schema import Mode

#: Where a judge model is served when no base URL is given, and the variable holding its key.
PROVIDERS: tuple[tuple[str, str, str], ...] = (
    ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY"),
    ("gpt-", "https://api.openai.com/v1", "OPENAI_API_KEY"),
)
#: The key's variable for any other endpoint.
DEFAULT_KEY_ENV = "SPEECHROLE_JUDGE_API_KEY"


def resolve_endpoint(
    model: str, base_url: str | None = None, api_key_env: str | None = None
) -> tuple[str, str]:
    """The judge's base URL and API-key variable: as given, or the provider's for gemini-* and gpt-*
    models. ValueError when neither is known."""
    for prefix, url, env in PROVIDERS:
        if model.startswith(prefix):
            return base_url or url, api_key_env or env
    if base_url is None:
        raise ValueError(f"--base-url is needed for judge model {model!r} (an OpenAI-compatible endpoint)")
    return base_url, api_key_env or DEFAULT_KEY_ENV


def is_loopback(url: str) -> bool:
    from urllib.parse import urlparse

    return (urlparse(url).hostname or "") in {"127.0.0.1", "localhost", "::1"}


@dataclass
class JudgeConfig:
    model: str
    base_url: str
    api_key_env: str | None = None
    protocol: str = "official"
    concurrency: int = 8
    timeout_s: float = 300.0
    max_retries: int = 4
    max_reasks: int = 2
    temperature: float = 0.0
    seed: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    limit: int | None = None
    roles: tuple[str, ...] | None = None
    modes: tuple[Mode, ...] | None = None
    samples: tuple[str, ...] | None = None  # only these sample keys (probes and canaries)
    orders: tuple[str, ...] | None = None  # instead of the protocol's orders (the swap-positions probe)
    canary: bool = False  # ask the benchmark's drift canaries first; stop if the judge moved
    canary_threshold: float = 0.5  # mean absolute change of the canary scores, points, per metric
    rubric_path: Path | None = None
    released_judge: Path | None = None  # the user's copy of the released judge script (`released`)
    prices_path: Path | None = None
    cache_path: Path | None = None
    use_cache: bool = True

    @classmethod
    def for_model(
        cls, model: str, base_url: str | None = None, api_key_env: str | None = None, **options: Any
    ) -> JudgeConfig:
        """A configuration with the provider's endpoint and key variable filled in (see `resolve_endpoint`)."""
        url, key_env = resolve_endpoint(model, base_url, api_key_env)
        return cls(model=model, base_url=url, api_key_env=key_env, **options)

    def key_problem(self) -> str | None:
        """Why the judge cannot be called (its key is not set and the endpoint is not on this machine)."""
        import os

        if self.api_key_env and not os.environ.get(self.api_key_env) and not is_loopback(self.base_url):
            return f"set the judge's API key in ${self.api_key_env} (keys are read from the environment only)"
        return None

    def sampling(self) -> dict[str, float | int | None]:
        return {"temperature": self.temperature, "seed": self.seed, "max_tokens": self.max_tokens}

    def describe(self) -> dict[str, Any]:
        """What run.json records: everything but the key itself (only the variable's name)."""
        return {
            "model": self.model,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "protocol": self.protocol,
            "sampling": self.sampling(),
            "max_retries": self.max_retries,
            "max_reasks": self.max_reasks,
            "rubric": str(self.rubric_path) if self.rubric_path else "bundled",
            **({"released_judge": str(self.released_judge)} if self.released_judge else {}),
        }


@dataclass(frozen=True)
class JudgeTarget:
    """Whose outputs are judged and where the judge writes."""

    system: str
    tree: OutputTree
    state_dir: Path  # judgments.jsonl, summary.json, run.json
    results_dir: Path  # the official test_results layout: {single,multi}/{role}.json

    @classmethod
    def for_run(cls, run_dir: Path, model: str | None = None) -> JudgeTarget:
        """A run directory (`model_output/{mode}_result`), or an official tree with `model_output/<model>/`."""
        tree = find_output_tree(run_dir, model)
        run_dir = Path(run_dir).absolute()
        if tree.base == run_dir / "model_output":
            name = _run_name(run_dir)
            return cls(name, tree, run_dir, run_dir / "test_results")
        name = tree.base.name
        return cls(name, tree, tree.root / "speechrole_judge" / name, tree.root / "test_results" / name)


def _run_name(run_dir: Path) -> str:
    try:
        data = read_json(run_dir / "run.json")
        return str(data.get("name") or run_dir.name) if isinstance(data, dict) else run_dir.name
    except DataError:
        return run_dir.name
