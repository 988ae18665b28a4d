"""Load a flow file: YAML -> ${ENV} -> JSON Schema -> compiled Flow.

Every problem is collected and reported as ``FILE:LINE: path: message``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import jinja2
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

import schemas
from streams.auth import Auth, NoAuth, build_auth
from streams.bodies import BODY_KINDS, build_body
from streams.durations import parse_duration
from streams.envsubst import substitute
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
from streams.templates import Value, compile_value, environment, located
from streams.urls import encode_path_value
from streams.yaml_source import Path, line_of, load_yaml, read_source


def load_flow(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Flow:
    filename = str(path)
    text = read_source(path)
    return parse_flow(text, filename, os.environ if env is None else env)


def parse_flow(text: str, filename: str, env: Mapping[str, str]) -> Flow:
    data, lines = load_yaml(text, filename)
    data, missing = substitute(data, env)
    problems = [Problem(filename, line_of(lines, m.path), dotted(m.path), str(m)) for m in missing]
    unset = {m.path for m in missing}  # their schema complaints would only repeat the cause
    problems.extend(
        Problem(filename, line_of(lines, p), dotted(p), message)
        for p, message in _schema_problems(data)
        if p not in unset
    )
    builder = _Builder(data, lines, filename)
    if problems:
        # Still look for what only the builder sees (unknown integrations, template
        # syntax, duplicate names), so one `check` lists every problem; the data is
        # known to be off-schema, so a builder that trips over it just stops early.
        with contextlib.suppress(Exception):
            builder.build()
        seen = {problem.path for problem in problems}
        problems.extend(p for p in builder.problems if p.path not in seen)
        raise FlowFileError(problems)
    flow = builder.build()
    if builder.problems:
        raise FlowFileError(builder.problems)
    assert flow is not None
    return flow


def _schema_problems(data: Any) -> list[tuple[Path, str]]:
    validator = Draft202012Validator(schemas.load("flow"))
    found: list[tuple[Path, str]] = []
    for error in validator.iter_errors(data):
        found.extend(_leaf_errors(error))
    return found


def _leaf_errors(error: ValidationError) -> list[tuple[Path, str]]:
    """For oneOf/anyOf, report the branch that got furthest instead of a vague summary."""
    if error.context:
        best = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.context or [])))
        same_depth = [e for e in error.context if len(e.absolute_path) == len(best.absolute_path)]
        if len(best.absolute_path) > len(error.absolute_path) or len(same_depth) == 1:
            return _leaf_errors(best)
    path = tuple(error.absolute_path)
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        return [((*path, key), f"unknown key {key!r}") for key in extra] or [(path, message)]
    return [(path, message)]


class _Builder:
    """Turns validated data into the Flow model, compiling every template once."""

    def __init__(self, data: dict[str, Any], lines: dict[Path, int], filename: str) -> None:
        self.data = data
        self.lines = lines
        self.filename = filename
        self.problems: list[Problem] = []

    def problem(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.filename, line_of(self.lines, path), dotted(path), message))

    def where(self, path: Path) -> str:
        return f"{self.filename}:{line_of(self.lines, path)}: {dotted(path)}"

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

    def duration(self, raw: Any, path: Path) -> float | None:
        if raw is None:
            return None
        try:
            return parse_duration(raw)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None

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
            timeout=self.duration(raw.get("timeout"), (*path, "timeout")) or defaults.timeout,
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
                self.problem((*rpath, body_kind), f"template syntax: {exc.message}")
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
            timeout=self.duration(raw.get("timeout"), (*path, "timeout")),
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
                timeout=self.duration(route.get("timeout"), (*path, i, "timeout")),
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
            window=self.duration(raw.get("window"), (*path, "window")) or config.window,
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
                    Fallback("cache", max_age=self.duration(entry["cache"], (*where, "cache")) or 0.0)
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
                sources.append(Fallback("skip"))
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
            cap=self.duration(raw.get("cap"), (*path, "cap")) or base.cap,
            attempts=raw.get("attempts", base.attempts),
        )


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
