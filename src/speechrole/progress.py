"""One live progress display (rich, on stderr) for every stage: a bar per stage with outcome counts.

The stages' reporter protocols differ only in `start` (generate: turns; measure: clips, metrics; judge:
samples, calls, estimated cost), so one `StageBar` serves them all.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: What a stage's bar says it is doing.
VERBS = {"generate": "generating", "measure": "measuring", "judge": "judging"}


class StageBar:
    """A stage's bar; counts outcomes (generated, skipped, scored, cached, ...) and, for the judge, spend."""

    def __init__(self, owner: LiveProgress, name: str) -> None:
        self.owner, self.name = owner, name
        self.counts: dict[str, int] = {}
        self.spent = 0.0
        self.task: Any = None

    def start(self, total: int, *details: Any) -> None:
        if self.name == "judge" and len(details) == 2:
            calls, estimate = details
            cost = (
                "unknown (no price for this judge model)" if estimate is None else f"at most ${estimate:.4f}"
            )
            self.owner.note(
                f"{total} samples, {calls} judge calls; estimated cost of the calls not yet done: {cost}"
            )
            total = calls
        self.task = self.owner.bars.add_task(VERBS.get(self.name, self.name), total=total, status="")
        self.owner.bars.start()

    def advance(self, outcome: str, cost_usd: float = 0.0) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self.spent += cost_usd
        status = " · ".join(f"{k} {v}" for k, v in self.counts.items())
        if self.name == "judge":
            status += f" · ${self.spent:.4f}"
        self.owner.bars.update(self.task, advance=1, status=status)


class LiveProgress:
    """The display of one command; `stage(name)` adds a bar, `note` prints a line above the bars."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description:<11}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
        )

    def stage(self, name: str) -> StageBar:
        return StageBar(self, name)

    def note(self, text: str) -> None:
        self.console.print(escape(text), highlight=False, soft_wrap=True)

    def stop(self) -> None:
        self.bars.stop()

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
