"""The Agent interface: answer one user turn, in the role's voice, given the role and the history.

An agent is created from a spec string (`cascaded:asr=whisper-tiny-en,llm=smollm2,tts=voicebank`) or
a YAML file, through the agent registry. Everything it depends on is recorded by `describe()` in the
run's `run.json` (backends, model files and their hashes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from speechrole.registry import Registry, T
from speechrole.schema import AgentReply, Benchmark, Role, Sample

History = Literal["gold", "own"]


@dataclass(frozen=True)
class Exchange:
    """One earlier round as the agent remembers it."""

    user: str
    assistant: str


@dataclass(frozen=True)
class TurnRequest:
    role: Role
    sample: Sample
    turn: int
    history: tuple[Exchange, ...]
    user_text: str  # the benchmark's question (an ASR-based agent listens to `user_audio` instead)
    user_audio: Path | None
    audio_out: Path  # where the agent writes its spoken answer (WAV)

    def system_prompt(self) -> str:
        return self.sample.system_prompt or self.role.profile


class Agent(ABC):
    """Answers user turns. `thread_safe` agents may be called from several worker threads at once."""

    thread_safe: ClassVar[bool] = False

    def prepare(self, bench: Benchmark) -> None:  # noqa: B027 - optional hook
        """Called once before a run (assign voices, load models)."""

    @abstractmethod
    def reply(self, request: TurnRequest) -> AgentReply: ...

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What produced the answers, for run.json: backends, models, file hashes, settings."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


AGENTS: Registry[Agent] = Registry("agent")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`NAME[:key=value,...]` or a YAML file `{agent: NAME, ...options}` -> (name, options)."""
    if spec.endswith((".yaml", ".yml")) and Path(spec).is_file():
        data = yaml.safe_load(Path(spec).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict) or "agent" not in data:
            raise ValueError(f"{spec}: expected a mapping with an 'agent' key")
        options = dict(data)
        return str(options.pop("agent")), options
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"agent spec {spec!r}: expected key=value, got {part!r}")
        options[key.strip()] = value.strip()
    return name.strip(), options


def parse_backend(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A backend as `NAME[:MODEL][@BASE_URL]` (e.g. `openai:qwen3-8b@http://127.0.0.1:8000/v1`,
    `whisper:/models/large-v3-turbo`) or a mapping `{name: ..., option: ...}` from a YAML spec."""
    if isinstance(spec, dict):
        options = dict(spec)
        return str(options.pop("name")), options
    head, at, url = spec.partition("@")
    name, colon, model = head.partition(":")
    options = {}
    if "=" in model:
        raise ValueError(f"backend {spec!r}: options go beside it, as llm.{model} (or use a YAML agent spec)")
    if colon:
        options["model"] = model
    if at:
        options["base_url"] = url
    return name, options


def create_agent(spec: str) -> Agent:
    """An agent from a spec string or YAML file (registered agents are imported on first use)."""
    from speechrole.agents import load_builtin

    load_builtin()
    name, options = parse_spec(spec)
    return AGENTS.create(name, **options)


@AGENTS.register(
    "python",
    summary="your own agent class, in process: python:target=my_package.my_module:make_agent (options passed on)",
)
def _python(target: str = "", **options: Any) -> Agent:
    """Import `module:factory` and call it with the remaining options; it must return an Agent."""
    import importlib

    module, sep, attr = target.partition(":")
    if not sep:
        raise ValueError("python agent needs target=module.path:factory")
    made = getattr(importlib.import_module(module), attr)(**options)
    if not isinstance(made, Agent):
        raise TypeError(f"{target} returned {type(made).__name__}, not a speechrole Agent")
    return made


def backend_problem(registry: Registry[Any], spec: str | dict[str, Any]) -> str | None:
    """Why a backend spec cannot be made here (malformed, unknown, or its package or weights are
    missing); None when nothing is known to be wrong. Asked before a long run starts."""
    from speechrole.agents import load_builtin

    load_builtin()
    try:
        name, options = parse_backend(spec)
    except (ValueError, KeyError) as exc:
        return f"backend {spec!r}: {exc}"
    return registry.problem(name, options)


def create_backend(registry: Registry[T], spec: str | dict[str, Any]) -> T:
    """The backend a spec names (`NAME[:MODEL][@URL]` or a mapping), from the builtin registries."""
    from speechrole.agents import load_builtin

    load_builtin()
    name, options = parse_backend(spec)
    return registry.create(name, **options)
