"""What a judge run is told (`JudgeConfig`) and what it works on (`JudgeTarget`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechrole.fileio import read_json
from speechrole.outputs import OutputTree, find_output_tree
from speechrole.problems import DataError
from speechrole.schema import Mode


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
    rubric_path: Path | None = None
    prices_path: Path | None = None
    cache_path: Path | None = None
    use_cache: bool = True

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
