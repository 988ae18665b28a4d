"""The request a step sends: route, URL, query, headers and body, rendered for a lead
(or for a batch window: ``key`` is then the window's id)."""

from __future__ import annotations

from typing import Any

from streams.compression import compress
from streams.flow import Step
from streams.headers import header_value, idempotency_key
from streams.http_types import OutgoingRequest
from streams.step.errors import NoRoute
from streams.templates import Value, truthy
from streams.urls import add_query, join_url

IDEMPOTENCY_HEADER = "Idempotency-Key"


def build_request(
    step: Step, context: dict[str, Any], key: str, url: Value | None = None
) -> tuple[OutgoingRequest, float]:
    """The request to send and its timeout (a matching route may change both; ``url``
    replaces the URL for a fallback source)."""
    spec = step.request
    integration = step.integration
    url_template, timeout = spec.url, step.effective_timeout
    for route in () if url is not None else step.routes:
        if truthy(route.when.render(context)):
            url_template, timeout = route.url, route.timeout or timeout
            break
    fallback = url is not None  # a fallback url names its own parameters (e.g. its own key)
    url_template = url if url is not None else url_template
    if url_template is None:
        raise NoRoute("no route matched and the request has no default url")
    target = join_url(integration.base_url, str(url_template.render(context)))
    query = {name: value.render(context) for name, value in spec.query.items()}
    target = add_query(target, query, url_wins=fallback)
    headers = {IDEMPOTENCY_HEADER: idempotency_key(key, step.name)}
    body = spec.body
    if body is not None:
        headers["Content-Type"] = body.content_type_for(context)
        for name, value in body.extra_headers(context).items():
            headers[name] = header_value(name, value)
    for name, value in (*integration.headers.items(), *spec.headers.items()):
        headers[name] = header_value(name, value.render(context))
    encoded = body.encode(context) if body is not None else None
    if spec.compress is not None and encoded is not None:  # after the flow's headers: the body decides
        encoded = compress(encoded, spec.compress)
        headers["Content-Encoding"] = spec.compress
    return OutgoingRequest(spec.method, target, headers, encoded, step=step.name), timeout
