"""Problems found in input data, and the error that carries one.

A problem always names the file and the field it concerns, so a user can go straight to it. Readers
collect problems and go on with the rest of the data; only the caller decides whether they are fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    reason: str
    severity: Severity = "error"

    def describe(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.reason}"

    def __str__(self) -> str:
        return f"{self.severity.upper()} {self.describe()}"

    def to_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "file": self.file, "field": self.field, "reason": self.reason}


class DataError(ValueError):
    """Bad input data; `problem` says which file and field, and why."""

    def __init__(self, file: object, field: str, reason: str) -> None:
        self.problem = Problem(str(file), field, reason)
        super().__init__(str(self.problem))
