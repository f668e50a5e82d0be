"""Named, pluggable components (agents, ASR, LLM and TTS backends, metrics) without if/elif chains.

A component registers a factory under a name, with a one-line summary and a check that says whether
it can run here (a missing package, missing weights) without importing anything heavy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    summary: str
    check: Callable[[], str | None]  # None when usable here, else why not (one line)

    def availability(self) -> str | None:
        try:
            return self.check()
        except Exception as exc:  # a check must never break a listing
            return f"check failed: {exc}"


def _always() -> str | None:
    return None


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, *, summary: str, check: Callable[[], str | None] = _always
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, factory, summary, check)
            return factory

        return decorate

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ValueError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def problem(self, name: str) -> str | None:
        """Why `name` cannot be made here (unknown, or its check fails); None when it can."""
        try:
            entry = self.get(name)
        except ValueError as exc:
            return str(exc)
        return entry.check()

    def create(self, name: str, **options: Any) -> T:
        return self.get(name).factory(**options)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[k] for k in sorted(self._entries)]
