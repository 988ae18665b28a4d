"""A real headless Chromium for the web console's tests (browser_session): a missing browser
fails the tests, never skips them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser_session import Browser, start_chromium


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        started = start_chromium()
    except AssertionError as exc:
        pytest.fail(str(exc))
    try:
        yield started
    finally:
        started.driver.quit()
