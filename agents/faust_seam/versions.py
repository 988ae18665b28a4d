"""The Faust and aiokafka versions the seam's private names were read from."""

from __future__ import annotations

import importlib.metadata

Version = tuple[int, ...]

SUPPORTED_FAUST: tuple[Version, Version] = ((0, 15, 2), (0, 16, 0))  # [from, to)
SUPPORTED_AIOKAFKA: tuple[Version, Version] = ((0, 13, 0), (0, 15, 0))  # [from, to), as pyproject.toml


class UnsupportedFaust(RuntimeError):
    pass


class UnsupportedAiokafka(RuntimeError):
    pass


def check_faust_version(version: str | None = None) -> None:
    """Refuse a Faust whose private API the seam was not written against."""
    version = version or importlib.metadata.version("faust-streaming")
    if not _within(version, SUPPORTED_FAUST):
        raise UnsupportedFaust(
            f"faust-streaming {version} is installed; leadstreams needs {_range(SUPPORTED_FAUST)} "
            "(its commit rule hooks into Faust's consumer)"
        )


def check_aiokafka_version(version: str | None = None) -> None:
    """Refuse an aiokafka whose private names (client connections, the producer's record
    batch) the seam was not written against."""
    version = version or importlib.metadata.version("aiokafka")
    if not _within(version, SUPPORTED_AIOKAFKA):
        raise UnsupportedAiokafka(
            f"aiokafka {version} is installed; leadstreams needs {_range(SUPPORTED_AIOKAFKA)} "
            "(its health checks and output writes read aiokafka's producer)"
        )


def _within(version: str, supported: tuple[Version, Version]) -> bool:
    numbers = tuple(int(part) for part in version.split(".")[:3] if part.isdigit())
    low, high = supported
    return low <= numbers < high


def _range(supported: tuple[Version, Version]) -> str:
    low, high = supported
    return f">= {'.'.join(map(str, low))}, < {'.'.join(map(str, high))}"
