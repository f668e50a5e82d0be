"""How long the audio stages of a pipeline will take, before it runs: hours of media per stage and in
total for a number of cores, from per-stage rates that `benchmarks/pipeline_throughput.py --rates`
measured (shipped as `rates.json`: hours of audio per CPU-hour once loaded, and seconds to load).

The later stages (roles, dialogues, speech) scale with the number of roles and dialogues, not with
hours of media, and are not planned here; `benchmarks/generation_throughput.py` measures dialogues
per minute. An estimate assumes every core works as the measuring machine's did; the benchmark's Ray
table (speed-up and parallel efficiency per stage) says how far that holds on more cores.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

RATES = Path(__file__).with_name("rates.json")


@dataclass(frozen=True)
class Rates:
    """Per stage: (hours of audio per CPU-hour once loaded, setup seconds); and how they were measured."""

    stages: dict[str, tuple[float, float]]
    audio_s: float
    cores: int
    measured_with: str


@dataclass(frozen=True)
class StagePlan:
    stage: str
    hours_per_cpu_hour: float | None  # None: not an audio stage, or never measured
    setup_s: float
    seconds: float | None


def load_rates(path: Path = RATES) -> Rates:
    data = json.loads(path.read_text(encoding="utf-8"))
    stages = {k: (float(v["hours_per_cpu_hour"]), float(v["setup_s"])) for k, v in data["stages"].items()}
    return Rates(stages, float(data["audio_s"]), int(data["cores"]), str(data["measured_with"]))


def media_seconds(paths: list[Path]) -> tuple[float, list[str]]:
    """The summed duration of media files (ffprobe reads any container), and those it could not read."""
    total, unreadable = 0.0, []
    for path in paths:
        probe = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"]
        try:
            result = subprocess.run(
                [*probe, str(path)], capture_output=True, text=True, timeout=60, check=True
            )
            total += float(result.stdout.strip())
        except (OSError, subprocess.SubprocessError, ValueError):
            unreadable.append(str(path))
    return total, unreadable


def plan(stages: list[str], hours: float, cores: int, rates: Rates) -> list[StagePlan]:
    """Expected seconds per stage for `hours` of media on `cores` cores: setup, then the hours at the
    stage's measured rate (workers load their models side by side, so setup counts once)."""
    out = []
    for name in stages:
        if name not in rates.stages:
            out.append(StagePlan(name, None, 0.0, None))
            continue
        rate, setup = rates.stages[name]
        out.append(StagePlan(name, rate, setup, setup + hours / (rate * cores) * 3600))
    return out


def total_seconds(plans: list[StagePlan]) -> float:
    return sum(p.seconds or 0.0 for p in plans)


def duration(seconds: float) -> str:
    """h:mm:ss, or m:ss under an hour."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def sizing_table(
    rates: Rates, hours: tuple[float, ...] = (1, 10, 100), cores: tuple[int, ...] = (2, 8, 32)
) -> str:
    """The README's sizing table (Markdown): the audio stages' expected wall time per stage for the
    middle number of hours, and in total for each number of hours, on each number of cores."""
    stages = list(rates.stages)
    middle = hours[len(hours) // 2]
    head = f"| stage (per stage: {middle:g} h of media) | h of audio / CPU-h | setup s | "
    lines = [head + " | ".join(f"{k} cores" for k in cores) + " |", "| --- " * (3 + len(cores)) + "|"]
    for name in stages:
        rate, setup = rates.stages[name]
        cells = [duration(plan([name], middle, k, rates)[0].seconds or 0.0) for k in cores]
        lines.append(f"| `{name}` | {rate:g} | {setup:g} | " + " | ".join(cells) + " |")
    for h in hours:
        cells = [f"**{duration(total_seconds(plan(stages, h, k, rates)))}**" for k in cores]
        lines.append(f"| all audio stages, {h:g} h of media | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)
