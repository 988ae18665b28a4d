"""What a partner, a template or the network can do to a step: an outcome, never a crash."""

from __future__ import annotations

import aiohttp

from streams.auth import AuthError
from streams.http_client import ResponseTooLarge
from streams.http_types import RequestBuildError
from streams.outcomes import Outcome
from streams.partner_errors import describe
from streams.responses import ResponseParseError
from streams.templates import TemplateRenderError


class NoRoute(Exception):
    """No ``routes:`` entry matched and the request has no default ``url``."""


# Anything else a step raises is a bug (the pipeline routes the lead to errors as one).
STEP_ERRORS = (
    AuthError, NoRoute, TemplateRenderError, RequestBuildError, ResponseTooLarge, ResponseParseError,
    aiohttp.ClientError,  # AddressRefused, and the like
)  # fmt: skip


def failure_of(exc: Exception) -> tuple[Outcome, str]:
    """The outcome and reason of one of ``STEP_ERRORS``."""
    if isinstance(exc, AuthError):
        return Outcome.ERROR, f"auth failed: {exc}"
    if isinstance(exc, NoRoute):
        return Outcome.SKIP, str(exc)
    if isinstance(exc, TemplateRenderError):
        return Outcome.ERROR, f"template error: {exc}"
    if isinstance(exc, RequestBuildError):
        return Outcome.ERROR, f"request refused: {exc}"
    if isinstance(exc, aiohttp.ClientError):  # AddressRefused: "address refused: 127.0.0.1 is a loopback..."
        return Outcome.ERROR, describe(exc)
    return Outcome.ERROR, str(exc)
