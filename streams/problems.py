"""Problems found in a flow file, reported as ``FILE:LINE: path: message``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path or '(top)'}: {self.message}"


class FlowFileError(Exception):
    """A flow file that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


def dotted(path: tuple[str | int, ...] | list[str | int]) -> str:
    return ".".join(str(part) for part in path)
