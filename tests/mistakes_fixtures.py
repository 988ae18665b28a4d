"""The fixtures test_mistakes*_via_cli.py share, loaded as a plugin (``pytest_plugins``) so that
pytest gives them by name without an import each test would shadow."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def here(tmp_path: Path) -> Path:
    """The working directory: no .kafka/ there, not inside a repository."""
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.fixture
def lead_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "ok": b'{"id": "l1", "email": "a@example.com"}\n',
        "not-json": b'{"id": "l1",\n',
        "not-utf8": '{"id": "caf\xe9"}\n'.encode("latin-1"),
        "array": b"[1, 2]\n",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_bytes(content)
    return paths


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
