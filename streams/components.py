"""The registry of flow-file components, by kind and name: what the loader builds and the
flow schema is assembled from (``streams.flow_schema``).

Every entry owns its spec beside its code — ``CONFIG`` (its JSON-schema fragment) and
``from_config(raw, read)`` — so adding an auth scheme or a body format is one class and one
line here. The order of each table is the order of the schema's alternatives.
"""

from __future__ import annotations

from typing import Any

from streams.auth import Auth, NoAuth
from streams.auth.api_key import ApiKeyAuth
from streams.auth.basic import BasicAuth
from streams.auth.bearer import BearerAuth
from streams.auth.hmac_signature import HmacSignature
from streams.auth.oauth2 import OAuth2ClientCredentials
from streams.auth.rotating import RotatingTokens
from streams.bodies import Body
from streams.bodies.form_body import FormBody
from streams.bodies.json_body import JsonBody
from streams.bodies.soap_body import SoapBody
from streams.bodies.text_body import TextBody
from streams.bodies.xml_body import XmlBody
from streams.cache import CacheConfig
from streams.circuit import CircuitConfig
from streams.fallback_sources import CacheSource, DefaultSource, RetryLaterSource, SkipSource, UrlSource
from streams.flow import BatchSpec, DelayedRetry, NotifySpec
from streams.ratelimit import RateLimitConfig
from streams.retry_policy import RetryConfig

# `auth: {type: NAME, …}` of an integration.
AUTH_SCHEMES: dict[str, Any] = {
    "api_key": ApiKeyAuth,
    "basic": BasicAuth,
    "bearer": BearerAuth,
    "oauth2": OAuth2ClientCredentials,
    "hmac": HmacSignature,
    "rotating": RotatingTokens,
}
# `request: {NAME: …}` of a step: one body each.
BODY_FORMATS: dict[str, type[Body]] = {
    "json": JsonBody,
    "form": FormBody,
    "text": TextBody,
    "xml": XmlBody,
    "soap": SoapBody,
}
# `fallback: [{NAME: …}, …]` of a step.
FALLBACK_SOURCES: dict[str, Any] = {
    "url": UrlSource,
    "cache": CacheSource,
    "default": DefaultSource,
    "retry_later": RetryLaterSource,
    "skip": SkipSource,
}
# Blocks with one form: the key they sit under (rate_limit's two keys sit in the integration).
RETRY = RetryConfig  # integrations.*.retry, steps[].retry
CIRCUIT = CircuitConfig  # integrations.*.circuit
RATE_LIMIT = RateLimitConfig  # integrations.*.{rate_limit, burst}
CACHE = CacheConfig  # integrations.*.cache
BATCH = BatchSpec  # steps[].batch
NOTIFY = NotifySpec  # steps[].notify
DELAYED_RETRY = DelayedRetry  # delayed_retry

COMPONENTS: dict[str, dict[str, Any]] = {
    "auth": AUTH_SCHEMES,
    "body": BODY_FORMATS,
    "fallback": FALLBACK_SOURCES,
    "retry": {"retry": RETRY},
    "circuit": {"circuit": CIRCUIT},
    "rate_limit": {"rate_limit": RATE_LIMIT},
    "cache": {"cache": CACHE},
    "batch": {"batch": BATCH},
    "notify": {"notify": NOTIFY},
    "delayed_retry": {"delayed_retry": DELAYED_RETRY},
}


def build_auth(spec: dict[str, Any] | None) -> Auth:
    """An Auth from the integration's rendered ``auth:`` mapping; ValueError when it is unusable."""
    if not spec:
        return NoAuth()
    scheme = AUTH_SCHEMES.get(spec["type"])
    if scheme is None:
        raise ValueError(f"unknown auth type {spec['type']!r}")
    return scheme.from_config(spec)  # type: ignore[no-any-return]


def build_body(kind: str, raw: Any, strict: bool) -> Body:
    """The body for a request's ``json:``/``form:``/``text:``/``xml:``/``soap:`` key.

    Raises ValueError (or a template syntax error) for a body the flow author got wrong."""
    return BODY_FORMATS[kind](raw, strict)
