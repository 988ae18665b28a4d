"""Load a flow file: YAML -> ${ENV} -> JSON Schema -> compiled Flow.

Every problem is collected and reported as ``FILE:LINE: path: message``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import jinja2

import schemas
from streams.auth import Auth, NoAuth, build_auth
from streams.bodies import BODY_KINDS, build_body
from streams.durations import parse_duration
from streams.envsubst import read_env_file, substitute
from streams.flow import (
    SUCCESS_STATUSES,
    BatchSpec,
    CircuitConfig,
    DelayedRetry,
    Fallback,
    Flow,
    Integration,
    OutcomeRule,
    Price,
    RequestSpec,
    Route,
    Step,
    Topics,
)
from streams.netguard import parse_networks
from streams.outcomes import Outcome
from streams.problems import FlowFileError, Problem, dotted
from streams.ratelimit import parse_rate
from streams.retry_policy import RetryConfig
from streams.schema_problems import schema_problems
from streams.templates import Value, compile_value, environment, located
from streams.urls import encode_path_value
from streams.yaml_source import Path, Source, parse_yaml, read_source


def load_flow(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Flow:
    filename = str(path)
    text = read_source(path)
    return parse_flow(text, filename, os.environ if env is None else env)


def check_files(
    paths: Iterable[str | os.PathLike[str]],
    env: Mapping[str, str] | None = None,
    env_files: Iterable[str | os.PathLike[str]] = (),
) -> tuple[list[Flow], list[Problem]]:
    """The flows that load and every problem of the others (``leadstreams check A.yaml B.yaml
    --env-file prod.env``). ``env_files`` (NAME=value lines) are read in order over ``env``
    (default the process environment): checking against a deployment's values is their use."""
    environ = dict(os.environ if env is None else env)
    flows: list[Flow] = []
    found: list[Problem] = []
    for env_file in env_files:
        try:
            values, bad = read_env_file(read_source(env_file))
        except FlowFileError as exc:
            found.extend(exc.problems)
            continue
        environ.update(values)
        found.extend(Problem(str(env_file), line, "", message) for line, message in bad)
    for path in paths:
        try:
            flows.append(load_flow(path, environ))
        except FlowFileError as exc:
            found.extend(exc.problems)
    return flows, found


def parse_flow(text: str, filename: str, env: Mapping[str, str]) -> Flow:
    source = parse_yaml(text, filename)
    data, missing = substitute(source.data, env)

    def at(path: Path, message: str) -> Problem:
        return Problem(filename, source.line(path), dotted(path), message, source.column(path))

    problems = list(source.duplicates)
    problems.extend(at(m.path, str(m)) for m in missing)
    unset = {m.path for m in missing}  # their schema complaints would only repeat the cause
    found = schema_problems(data, schemas.load("flow"))
    problems.extend(at(p, message) for p, message in found if p not in unset)
    builder = _Builder(data, source, filename)
    if problems:
        # Still look for what only the builder sees (unknown integrations, template
        # syntax, duplicate names), so one `check` lists every problem; the data is
        # known to be off-schema, so a builder that trips over it just stops early.
        with contextlib.suppress(Exception):
            builder.build()
        problems.extend(p for p in builder.problems if not _said(p.path, problems))
        raise FlowFileError(problems)
    flow = builder.build()
    if builder.problems:
        raise FlowFileError(builder.problems)
    assert flow is not None
    return flow


def _said(path: str, problems: list[Problem]) -> bool:
    """Whether the schema already named a problem at ``path`` — or, for an auth block (the
    builder judges it whole), inside it: `auth: hmac algorithm …` after `auth.algorithm: …`."""
    return any(p.path == path or (path.endswith(".auth") and p.path.startswith(path + ".")) for p in problems)


class _Builder:
    """Turns validated data into the Flow model, compiling every template once."""

    def __init__(self, data: dict[str, Any], source: Source, filename: str) -> None:
        self.data = data
        self.source = source
        self.filename = filename
        self.problems: list[Problem] = []

    def problem(self, path: Path, message: str) -> None:
        line, column = self.source.line(path), self.source.column(path)
        self.problems.append(Problem(self.filename, line, dotted(path), message, column))

    def where(self, path: Path) -> str:
        return f"{self.filename}:{self.source.line(path)}: {dotted(path)}"

    def compile(self, raw: Any, path: Path, strict: bool = False, url: bool = False) -> Value:
        env = environment(strict, encode_path_value if url else None)
        try:
            return compile_value(raw, env, self.where(path))
        except jinja2.TemplateSyntaxError as exc:
            self.problem(path, f"template syntax: {exc.message}")
            return compile_value("", env)
        except ValueError as exc:
            self.problem(path, str(exc))
            return compile_value("", env)

    def compile_map(self, raw: dict[str, Any] | None, path: Path, strict: bool = False) -> dict[str, Value]:
        return {k: self.compile(v, (*path, k), strict) for k, v in (raw or {}).items()}

    def duration(self, raw: Any, path: Path, zero: str | None = None) -> float | None:
        """Seconds, or None when absent (or wrong, then reported). ``zero`` is the problem to
        report for a 0 where 0 has no meaning (a timeout of 0 is no timeout to aiohttp)."""
        if raw is None:
            return None
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None
        if zero is not None and seconds == 0:
            self.problem(path, zero)
            return None
        return seconds

    def build(self) -> Flow | None:
        data = self.data
        settings = dict(data.get("settings") or {})
        self.retry_topic = bool(data["topics"].get("retry"))
        delayed = self.delayed_retry(data.get("delayed_retry"), ("delayed_retry",))
        integrations = {
            name: self.integration(name, raw or {}, settings)
            for name, raw in (data.get("integrations") or {}).items()
        }
        stages: list[tuple[Step, ...]] = []
        seen: set[str] = set()
        for index, raw in enumerate(data["steps"]):
            path: Path = ("steps", index)
            members = (
                [((*path, "parallel", i), r) for i, r in enumerate(raw["parallel"])]
                if "parallel" in raw
                else [(path, raw)]
            )
            stage = []
            for member_path, member in members:
                if member["name"] in seen:
                    self.problem((*member_path, "name"), f"duplicate step name {member['name']!r}")
                seen.add(member["name"])
                stage.append(self.step(member, member_path, integrations))
            stages.append(tuple(stage))
        self.check_cache_limits(data.get("integrations") or {}, [s for stage in stages for s in stage])
        if self.problems:
            return None
        return Flow(
            name=data["name"],
            topics=Topics(**data["topics"]),
            settings=settings,
            integrations=integrations,
            stages=tuple(stages),
            source_file=self.filename,
            delayed_retry=delayed,
        )

    def check_cache_limits(self, raw: dict[str, Any], steps: list[Step]) -> None:
        """An integration's ``cache:`` with no step caching its answers is a mistake to report:
        the author expects a cache that nothing fills."""
        caching = {step.integration.name for step in steps if step.caches}
        for name, spec in raw.items():
            if (spec or {}).get("cache") is not None and name not in caching:
                self.problem(
                    ("integrations", name, "cache"),
                    "no step of this integration has `fallback: [{cache: AGE}]`, so nothing is cached",
                )

    def integration(self, name: str, raw: dict[str, Any], settings: dict[str, Any]) -> Integration:
        path: Path = ("integrations", name)
        pool = raw.get("pool") or {}
        auth_spec = None
        if raw.get("auth"):
            # Auth values depend on settings only, so they are rendered once, here.
            context = {"settings": settings, "flow": {"name": self.data["name"]}}
            auth_spec = self.compile(raw["auth"], (*path, "auth"), strict=True)
            try:
                auth_spec = auth_spec.render(context)
            except Exception as exc:
                self.problem((*path, "auth"), f"cannot render: {exc}")
                auth_spec = None
        defaults = Integration(name=name)
        return Integration(
            name=name,
            base_url=raw.get("base_url"),
            timeout=_given(
                self.duration(raw.get("timeout"), (*path, "timeout"), _ZERO_TIMEOUT.format(default="10s")),
                defaults.timeout,
            ),
            concurrency=raw.get("concurrency", defaults.concurrency),
            pool_size=pool.get("size", defaults.pool_size),
            keepalive=_given(
                self.duration(pool.get("keepalive"), (*path, "pool", "keepalive")), defaults.keepalive
            ),
            dns_cache=_given(
                self.duration(pool.get("dns_cache"), (*path, "pool", "dns_cache")), defaults.dns_cache
            ),
            max_response_bytes=raw.get("max_response_bytes", defaults.max_response_bytes),
            headers=self.compile_map(raw.get("headers"), (*path, "headers")),
            auth=self.auth(auth_spec, (*path, "auth")),
            rate_limit=self.rate(raw.get("rate_limit"), (*path, "rate_limit")),
            burst=raw.get("burst", 0),
            retry=self.retry(raw.get("retry"), (*path, "retry"), RetryConfig(retry_topic=self.retry_topic)),
            circuit=self.circuit(raw.get("circuit"), (*path, "circuit")),
            allow_private_networks=raw.get("allow_private_networks", False),
            allow_loopback=raw.get("allow_loopback", False),
            allowed_networks=self.networks(raw.get("allowed_networks") or [], (*path, "allowed_networks")),
            cache_max_entries=(raw.get("cache") or {}).get("max_entries", defaults.cache_max_entries),
        )

    def step(self, raw: dict[str, Any], path: Path, integrations: dict[str, Integration]) -> Step:
        strict = bool(raw.get("strict", False))
        name = raw.get("integration")
        if name is None:
            integration = Integration(
                name=f"step:{raw['name']}", retry=RetryConfig(retry_topic=self.retry_topic)
            )
        elif name in integrations:
            integration = integrations[name]
        else:
            known = ", ".join(sorted(integrations)) or "none defined"
            self.problem((*path, "integration"), f"unknown integration {name!r} (known: {known})")
            integration = Integration(name=name)
        request = raw["request"]
        rpath: Path = (*path, "request")
        if "url" not in request and not raw.get("routes"):
            self.problem(rpath, "a request needs `url:` (or the step needs `routes:`)")
        if integration.base_url is None and (name is None or name in integrations):
            self.absolute_urls(raw, path, name)
        body_kind = next((kind for kind in BODY_KINDS if kind in request), None)
        body = None
        if body_kind:
            try:
                # The body's modules compile its templates: ``located`` gives each one the
                # ``FILE:LINE: path`` its render errors start with, as every other template's do.
                body_path = (*rpath, body_kind)
                with located(lambda inner: self.where((*body_path, *inner))):
                    body = build_body(body_kind, request[body_kind], strict)
            except jinja2.TemplateSyntaxError as exc:
                self.template_syntax(request[body_kind], (*rpath, body_kind), strict, exc)
            except ValueError as exc:
                self.problem((*rpath, body_kind), str(exc))
        response = raw.get("response") or {}
        rules = tuple(
            OutcomeRule(
                when=self.compile(rule.get("when", True), (*path, "response", "outcome", i, "when"), strict),
                outcome=Outcome(rule["outcome"]),
                reason=self.compile(rule["reason"], (*path, "response", "outcome", i, "reason"), strict)
                if "reason" in rule
                else None,
                statuses=statuses(rule["status"]) if "status" in rule else SUCCESS_STATUSES,
            )
            for i, rule in enumerate(response.get("outcome") or [])
        )
        return Step(
            name=raw["name"],
            integration=integration,
            request=RequestSpec(
                method=request.get("method", "POST" if body_kind else "GET"),
                url=self.compile(request["url"], (*rpath, "url"), strict, url=True)
                if "url" in request
                else None,
                query=self.compile_map(request.get("query"), (*rpath, "query"), strict),
                headers=self.compile_map(request.get("headers"), (*rpath, "headers"), strict),
                body=body,
            ),
            response_format=response.get("format", "auto"),
            outcome_rules=rules,
            when=self.compile(raw["when"], (*path, "when"), strict) if "when" in raw else None,
            map=self.compile_map(raw.get("map"), (*path, "map"), strict),
            store=self.compile_map(raw.get("store"), (*path, "store"), strict),
            timeout=self.duration(
                raw.get("timeout"), (*path, "timeout"), _ZERO_TIMEOUT.format(default="the integration's")
            ),
            strict=strict,
            continue_on=frozenset(Outcome(o) for o in raw.get("continue_on", [])),
            routes=self.routes(raw.get("routes") or [], (*path, "routes"), strict),
            price=self.price(raw.get("price"), (*path, "price"), strict),
            reference=self.compile(raw["reference"], (*path, "reference"), strict)
            if "reference" in raw
            else None,
            retry=self.retry(raw["retry"], (*path, "retry"), integration.retry) if "retry" in raw else None,
            fallback=self.fallback(raw.get("fallback") or [], (*path, "fallback"), strict),
            batch=self.batch(raw["batch"], (*path, "batch")) if "batch" in raw else None,
        )

    def absolute_urls(self, raw: dict[str, Any], path: Path, integration: str | None) -> None:
        """Without a base_url, a relative URL can only fail at run time, for every lead: say so now."""
        urls = [((*path, "request", "url"), raw["request"].get("url"))]
        urls += [
            ((*path, "routes", i, "url"), route.get("url")) for i, route in enumerate(raw.get("routes") or [])
        ]
        for where, url in urls:
            # A URL that starts with a template may render absolute (`{{ settings.partner_url }}/x`).
            if isinstance(url, str) and not _ABSOLUTE.match(url):
                needs = (
                    "an `integration:` with a base_url"
                    if integration is None
                    else f"a base_url on integration {integration!r}"
                )
                self.problem(where, f"relative url {url!r} needs {needs} (or write the whole https://… URL)")

    def template_syntax(self, raw: Any, path: Path, strict: bool, first: jinja2.TemplateSyntaxError) -> None:
        """Every malformed template of a body, each at its own key (the body's builder stops
        at the first and knows no paths)."""
        env = environment(strict)
        found = False
        for where, text in _strings(raw, path):
            try:
                env.parse(text)
            except jinja2.TemplateSyntaxError as exc:
                self.problem(where, f"template syntax: {exc.message}")
                found = True
        if not found:
            self.problem(path, f"template syntax: {first.message}")

    def batch(self, raw: dict[str, Any], path: Path) -> BatchSpec:
        window = self.duration(raw["window"], (*path, "window")) or 0.0
        if window <= 0:
            self.problem((*path, "window"), "a batch window must be longer than 0")
        return BatchSpec(
            max_leads=raw["max_leads"],
            window=window,
            results=raw.get("results", "results"),
            match=raw.get("match", "id"),
        )

    def routes(self, raw: list[dict[str, Any]], path: Path, strict: bool) -> tuple[Route, ...]:
        return tuple(
            Route(
                when=self.compile(route["when"], (*path, i, "when"), strict),
                url=self.compile(route["url"], (*path, i, "url"), strict, url=True),
                timeout=self.duration(
                    route.get("timeout"), (*path, i, "timeout"), _ZERO_TIMEOUT.format(default="the step's")
                ),
            )
            for i, route in enumerate(raw)
        )

    def price(self, raw: Any, path: Path, strict: bool) -> Price | None:
        if raw is None:
            return None
        if isinstance(raw, dict):
            return Price(self.compile(raw["value"], (*path, "value"), strict), raw.get("default"))
        return Price(self.compile(raw, path, strict))

    def auth(self, spec: dict[str, Any] | None, path: Path) -> Auth:
        try:
            return build_auth(spec)
        except ValueError as exc:
            self.problem(path, str(exc))
            return NoAuth()

    def rate(self, raw: str | None, path: Path) -> float | None:
        if raw is None:
            return None
        try:
            return parse_rate(raw)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None

    def retry(self, raw: dict[str, Any] | None, path: Path, base: RetryConfig) -> RetryConfig:
        """``retry:`` over ``base`` (the integration's, or the defaults)."""
        if not raw:
            return base
        changes: dict[str, Any] = {}
        for key in ("backoff", "max_backoff", "max_inline_wait"):
            if key in raw:
                changes[key] = self.duration(raw[key], (*path, key)) or 0.0
        for key in ("attempts", "timeout_attempts", "on_timeout"):
            if key in raw:
                changes[key] = raw[key]
        for key in ("retry_statuses", "fallback_statuses", "retry_after_statuses"):
            if key in raw:
                changes[key] = frozenset(raw[key])
        try:
            return dataclasses.replace(base, **changes)
        except ValueError as exc:
            self.problem(path, str(exc))
            return base

    def circuit(self, raw: dict[str, Any] | None, path: Path) -> CircuitConfig | None:
        if raw is None:
            return None
        config = CircuitConfig()
        return CircuitConfig(
            failure_rate=raw.get("failure_rate", config.failure_rate),
            window=_given(
                self.duration(
                    raw.get("window"), (*path, "window"), "a circuit's window must be longer than 0"
                ),
                config.window,
            ),
            min_calls=raw.get("min_calls", config.min_calls),
            open_for=_given(self.duration(raw.get("open_for"), (*path, "open_for")), config.open_for),
            half_open_probes=raw.get("half_open_probes", config.half_open_probes),
        )

    def networks(self, raw: list[str], path: Path) -> tuple[IPv4Network | IPv6Network, ...]:
        try:
            return parse_networks(raw)
        except ValueError as exc:
            self.problem(path, str(exc))
            return ()

    def fallback(self, raw: list[dict[str, Any]], path: Path, strict: bool) -> tuple[Fallback, ...]:
        sources: list[Fallback] = []
        for i, entry in enumerate(raw):
            where = (*path, i)
            if "url" in entry:
                sources.append(
                    Fallback("url", url=self.compile(entry["url"], (*where, "url"), strict, url=True))
                )
            elif "cache" in entry:
                sources.append(
                    Fallback(
                        "cache",
                        max_age=_given(self.duration(entry["cache"], (*where, "cache"), _ZERO_AGE), 0),
                    )
                )
            elif "default" in entry:
                sources.append(
                    Fallback("default", default=self.compile_map(entry["default"], (*where, "default")))
                )
            elif "retry_later" in entry:
                if not self.retry_topic:
                    self.problem(where, "retry_later needs topics.retry (the delayed retry topic prefix)")
                sources.append(Fallback("retry_later"))
            else:
                note = entry["skip"].get("note") if isinstance(entry["skip"], dict) else None
                sources.append(Fallback("skip", note=note))
        return tuple(sources)

    def delayed_retry(self, raw: dict[str, Any] | None, path: Path) -> DelayedRetry | None:
        if not self.retry_topic:
            if raw is not None:
                self.problem(path, "delayed_retry needs topics.retry (the delayed retry topic prefix)")
            return None
        raw = raw or {}
        base = DelayedRetry()
        return DelayedRetry(
            first=_given(self.duration(raw.get("first"), (*path, "first")), base.first),
            factor=raw.get("factor", base.factor),
            cap=_given(self.duration(raw.get("cap"), (*path, "cap"), "cap must be longer than 0"), base.cap),
            attempts=raw.get("attempts", base.attempts),
        )


_ABSOLUTE = re.compile(r"\s*(https?://|\{)", re.IGNORECASE)
_ZERO_TIMEOUT = "a timeout of 0 would switch the timeout off: leave `timeout:` out for {default}"
_ZERO_AGE = "a cache age of 0 would never serve an answer: give how old one may be (e.g. 1h)"


def _strings(raw: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """Every string in a YAML value (keys included: bodies may template them), with its path."""
    if isinstance(raw, str):
        yield path, raw
    elif isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(key, str):
                yield (*path, key), key
            yield from _strings(value, (*path, key))
    elif isinstance(raw, list):
        for index, item in enumerate(raw):
            yield from _strings(item, (*path, index))


def _given(value: float | None, default: float) -> float:
    """A duration the file gave, zero included (``or default`` would turn ``0s`` into the default)."""
    return default if value is None else value


def statuses(raw: list[int | str]) -> frozenset[int]:
    """``[409, "5xx"]`` -> the set of status codes."""
    codes: set[int] = set()
    for item in raw:
        if isinstance(item, int):
            codes.add(item)
        else:
            first = int(item[0]) * 100
            codes.update(range(first, first + 100))
    return frozenset(codes)
