"""Named, pluggable components (agents, ASR, LLM and TTS backends, metrics) without if/elif chains.

A component registers a factory under a name, with a one-line summary, a check that says whether its
libraries are here, and optionally a weights check over the options it would be made with (a path or
hub id in the spec). Neither imports anything heavy. Why not is one line starting with a kind word
("library not installed: ...", "weights not found: ...").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: options -> None when the weights those options name are here, else why not (one line)
WeightsCheck = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    summary: str
    check: Callable[[], str | None]  # None when its libraries are here, else why not (one line)
    weights: WeightsCheck | None = None

    def availability(self, options: Mapping[str, Any] | None = None) -> str | None:
        """None when usable here with `options` (the spec's; none: the defaults), else why not."""
        try:
            if (why := self.check()) is not None:
                return why
            return self.weights(options or {}) if self.weights is not None else None
        except Exception as exc:  # a check must never break a listing
            return f"check failed: {exc}"


def _always() -> str | None:
    return None


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        *,
        summary: str,
        check: Callable[[], str | None] = _always,
        weights: WeightsCheck | None = None,
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, factory, summary, check, weights)
            return factory

        return decorate

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ValueError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def problem(self, name: str, options: Mapping[str, Any] | None = None) -> str | None:
        """Why `name` cannot be made here with `options` (unknown, a library or weights missing); None
        when it can."""
        try:
            entry = self.get(name)
        except ValueError as exc:
            return str(exc)
        return entry.availability(options)

    def create(self, name: str, **options: Any) -> T:
        return self.get(name).factory(**options)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[k] for k in sorted(self._entries)]
