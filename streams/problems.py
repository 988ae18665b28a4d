"""Problems found in a flow file, reported as ``FILE:LINE:COLUMN: path: message``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based; 0 when the file itself cannot be read
    path: str
    message: str
    column: int = 0  # 1-based; 0 when unknown (then left out of the text)

    def __str__(self) -> str:
        if self.line == 0:  # nothing inside the file to point at: `nope.yaml: cannot read: …`
            return f"{self.file}: {self.message}"
        column = f"{self.column}:" if self.column else ""
        return f"{self.file}:{self.line}:{column} {self.path or '(top)'}: {self.message}"

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.column, self.path, self.message)


class FlowFileError(Exception):
    """A flow file that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems), key=Problem.sort_key)
        super().__init__("\n".join(str(p) for p in self.problems))


def dotted(path: tuple[str | int, ...] | list[str | int]) -> str:
    return ".".join(str(part) for part in path)
