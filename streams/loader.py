"""Load a flow file: YAML -> ${ENV} -> JSON Schema -> compiled Flow.

Every problem is collected and reported as ``FILE:LINE: path: message``. The components
(auth schemes, bodies, retry, circuit, fallback sources, …) read their own blocks
(``streams.components``); the builder here composes them into steps and integrations.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import jinja2
import orjson

from streams.address_policy import parse_networks
from streams.auth import Auth, NoAuth
from streams.bodies import template_problems
from streams.components import (
    BATCH,
    BODY_FORMATS,
    CACHE,
    CIRCUIT,
    DELAYED_RETRY,
    FALLBACK_SOURCES,
    NOTIFY,
    RATE_LIMIT,
    RETRY,
    build_auth,
)
from streams.config import At, duration, durations, given, same, seconds_text
from streams.envsubst import read_env_file, substitute
from streams.flow import (
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
from streams.flow_schema import flow_schema
from streams.outcomes import Outcome
from streams.problems import FlowFileError, Problem, dotted
from streams.retry_policy import RetryConfig
from streams.schema_problems import schema_problems
from streams.step_checks import notify_conflicts, relative_urls
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
    environ, found = read_env_files(env_files, env)
    flows: list[Flow] = []
    for path in paths:
        try:
            flows.append(load_flow(path, environ))
        except FlowFileError as exc:
            found.extend(exc.problems)
    return flows, found


def read_env_files(
    env_files: Iterable[str | os.PathLike[str]], env: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[Problem]]:
    """``env`` (default the process environment) with the files' NAME=value lines read over
    it in order, and the problems of lines (or files) that could not be read."""
    environ = dict(os.environ if env is None else env)
    found: list[Problem] = []
    for env_file in env_files:
        try:
            values, bad = read_env_file(read_source(env_file))
        except FlowFileError as exc:
            found.extend(exc.problems)
            continue
        environ.update(values)
        found.extend(Problem(str(env_file), line, "", message) for line, message in bad)
    return environ, found


def parse_flow(text: str, filename: str, env: Mapping[str, str]) -> Flow:
    source = parse_yaml(text, filename)
    data, missing = substitute(source.data, env)

    def at(path: Path, message: str) -> Problem:
        return Problem(filename, source.line(path), dotted(path), message, source.column(path))

    problems = list(source.duplicates)
    problems.extend(at(m.path, str(m)) for m in missing)
    unset = {m.path for m in missing}  # their schema complaints would only repeat the cause
    found = schema_problems(data, flow_schema())
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
    return replace(flow, version=content_hash(text))


def content_hash(text: str) -> str:
    """A flow file's version: 12 hex digits of the SHA-256 of its text."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def definition_hash(flow: str, integration: str, raw: Any, settings: dict[str, Any]) -> str:
    """What an integration's behaviour depends on: its block (after ${ENV}) and the settings its
    templates and auth read; the flow's name keeps two flows' integrations apart."""
    spec = orjson.dumps([flow, integration, raw, settings], option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(spec).hexdigest()[:16]


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
        self.retry_topic = False

    def at(self, path: Path, strict: bool = False) -> At:
        return At(self, path, strict)

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

    def optional(
        self, raw: dict[str, Any], key: str, path: Path, strict: bool, url: bool = False
    ) -> Value | None:
        """The template at ``key``, or None when the mapping has none."""
        return self.compile(raw[key], (*path, key), strict, url) if key in raw else None

    def duration(self, raw: Any, path: Path, zero: str | None = None) -> float | None:
        return duration(self.at(()), raw, path, zero)

    def build(self) -> Flow | None:
        data = self.data
        settings = dict(data.get("settings") or {})
        self.retry_topic = bool((data.get("topics") or {}).get("retry"))
        delayed = self.delayed_retry(data.get("delayed_retry"), ("delayed_retry",))
        integrations = {
            name: self.integration(name, raw or {}, settings)
            for name, raw in (data.get("integrations") or {}).items()
        }
        stages = self.stages(data["steps"], integrations)
        self.check_notifications(data.get("topics"), [s for stage in stages for s in stage])
        self.check_cache_limits(data.get("integrations") or {}, [s for stage in stages for s in stage])
        if self.problems:
            return None
        return Flow(
            name=data["name"],
            topics=Topics(**data["topics"]) if "topics" in data else None,
            settings=settings,
            integrations=integrations,
            stages=stages,
            source_file=self.filename,
            delayed_retry=delayed,
        )

    def stages(
        self, raw: list[dict[str, Any]], integrations: dict[str, Integration]
    ) -> tuple[tuple[Step, ...], ...]:
        stages: list[tuple[Step, ...]] = []
        seen: set[str] = set()
        for index, entry in enumerate(raw):
            path: Path = ("steps", index)
            members = (
                [((*path, "parallel", i), r) for i, r in enumerate(entry["parallel"])]
                if "parallel" in entry
                else [(path, entry)]
            )
            stage = []
            for member_path, member in members:
                if member["name"] in seen:
                    self.problem((*member_path, "name"), f"duplicate step name {member['name']!r}")
                seen.add(member["name"])
                stage.append(self.step(member, member_path, integrations))
            stages.append(tuple(stage))
        return tuple(stages)

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

    def check_notifications(self, topics: dict[str, str] | None, steps: list[Step]) -> None:
        """A worker queues notify steps' requests on topics.notifications: a flow with topics
        (one meant for a worker) and notify steps needs it."""
        if topics is not None and "notifications" not in topics and any(s.notify for s in steps):
            self.problem(("topics",), "a step has `notify:`, so the worker needs topics.notifications "
                         "(the queue of notifications; attempts go to NAME.results)")  # fmt: skip

    def integration(self, name: str, raw: dict[str, Any], settings: dict[str, Any]) -> Integration:
        path: Path = ("integrations", name)
        zero = {"timeout": _ZERO_TIMEOUT.format(default=seconds_text(Integration.timeout))}
        plain = ("base_url", "concurrency", "max_response_bytes", "allow_private_networks", "allow_loopback")
        options = given(raw, {**durations(self.at(path), "timeout", zero=zero), **dict.fromkeys(plain, same)})
        pool = given(
            raw.get("pool") or {},
            {"size": same, **durations(self.at((*path, "pool")), "keepalive", "dns_cache")},
        )
        # Connections in the pool: by default enough for `concurrency` (requests beyond the
        # pool would wait for a connection, and the concurrency asked for would not be had).
        pool["pool_size"] = pool.pop("size", max(Integration.pool_size, options.get("concurrency", 0)))
        limit = RATE_LIMIT.from_config(raw, self.at(path))
        circuit = raw.get("circuit")
        return Integration(
            name=name,
            **options,
            **pool,
            headers=self.compile_map(raw.get("headers"), (*path, "headers")),
            auth=self.auth(raw.get("auth"), (*path, "auth"), settings),
            rate_limit=limit.rate_limit,
            burst=limit.burst,
            retry=RETRY.from_config(
                raw.get("retry"), self.at((*path, "retry")), RetryConfig(retry_topic=self.retry_topic)
            ),
            circuit=None if circuit is None else CIRCUIT.from_config(circuit, self.at((*path, "circuit"))),
            allowed_networks=self.networks(raw.get("allowed_networks") or [], (*path, "allowed_networks")),
            cache_max_entries=CACHE.from_config(raw.get("cache")).max_entries,
            definition=definition_hash(self.data["name"], name, raw, settings),
        )

    def auth(self, raw: Any, path: Path, settings: dict[str, Any]) -> Auth:
        """The scheme of ``auth:``, its values rendered once, here: they depend on settings only."""
        if not raw:
            return NoAuth()
        context = {"settings": settings, "flow": {"name": self.data["name"]}}
        try:
            spec = self.compile(raw, path, strict=True).render(context)
        except Exception as exc:
            self.problem(path, f"cannot render: {exc}")
            return NoAuth()
        try:
            return build_auth(spec)
        except ValueError as exc:
            self.problem(path, str(exc))
            return NoAuth()

    def step(self, raw: dict[str, Any], path: Path, integrations: dict[str, Integration]) -> Step:
        strict = bool(raw.get("strict", False))
        name = raw.get("integration")
        integration = self.step_integration(name, raw["name"], path, integrations)
        checks = [notify_conflicts(raw, path)]
        if integration.base_url is None and (name is None or name in integrations):
            checks.append(relative_urls(raw, path, name))
        for where, message in (problem for check in checks for problem in check):
            self.problem(where, message)
        response = raw.get("response") or {}
        return Step(
            name=raw["name"],
            integration=integration,
            request=self.request(raw["request"], (*path, "request"), strict, bool(raw.get("routes"))),
            response_format=response.get("format", Step.response_format),
            outcome_rules=tuple(
                OutcomeRule.from_config(rule, self.at((*path, "response", "outcome", i), strict))
                for i, rule in enumerate(response.get("outcome") or [])
            ),
            when=self.optional(raw, "when", path, strict),
            map=self.compile_map(raw.get("map"), (*path, "map"), strict),
            store=self.compile_map(raw.get("store"), (*path, "store"), strict),
            timeout=self.duration(
                raw.get("timeout"), (*path, "timeout"), _ZERO_TIMEOUT.format(default="the integration's")
            ),
            strict=strict,
            continue_on=frozenset(Outcome(o) for o in raw.get("continue_on", [])),
            routes=self.routes(raw.get("routes") or [], (*path, "routes"), strict),
            price=self.price(raw.get("price"), (*path, "price"), strict),
            reference=self.optional(raw, "reference", path, strict),
            retry=RETRY.from_config(raw["retry"], self.at((*path, "retry")), integration.retry)
            if "retry" in raw
            else None,
            fallback=self.fallback(raw.get("fallback") or [], (*path, "fallback"), strict),
            batch=BATCH.from_config(raw["batch"], self.at((*path, "batch"))) if "batch" in raw else None,
            notify=NOTIFY.from_config(raw.get("notify", False)),
        )

    def step_integration(
        self, name: str | None, step: str, path: Path, integrations: dict[str, Integration]
    ) -> Integration:
        if name is None:
            return Integration(name=f"step:{step}", retry=RetryConfig(retry_topic=self.retry_topic))
        if name in integrations:
            return integrations[name]
        known = ", ".join(sorted(integrations)) or "none defined"
        self.problem((*path, "integration"), f"unknown integration {name!r} (known: {known})")
        return Integration(name=name)

    def request(self, raw: dict[str, Any], path: Path, strict: bool, routed: bool) -> RequestSpec:
        if "url" not in raw and not routed:
            self.problem(path, "a request needs `url:` (or the step needs `routes:`)")
        kind = next((kind for kind in BODY_FORMATS if kind in raw), None)
        if "compress" in raw and kind is None:
            self.problem((*path, "compress"), "compress needs a body (json, form, text, xml or soap)")
        return RequestSpec(
            method=raw.get("method", "POST" if kind else "GET"),
            url=self.optional(raw, "url", path, strict, url=True),
            query=self.compile_map(raw.get("query"), (*path, "query"), strict),
            headers=self.compile_map(raw.get("headers"), (*path, "headers"), strict),
            body=None if kind is None else self.body(kind, raw[kind], (*path, kind), strict),
            compress=raw.get("compress"),
        )

    def body(self, kind: str, raw: Any, path: Path, strict: bool) -> Any:
        try:
            # The body's modules compile its templates: ``located`` gives each one the
            # ``FILE:LINE: path`` its render errors start with, as every other template's do.
            with located(lambda inner: self.where((*path, *inner))):
                return BODY_FORMATS[kind].from_config(raw, self.at(path, strict))
        except jinja2.TemplateSyntaxError as exc:
            for where, message in template_problems(raw, path, strict, exc):
                self.problem(where, message)
        except ValueError as exc:
            self.problem(path, str(exc))
        return None

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

    def networks(self, raw: list[str], path: Path) -> tuple[IPv4Network | IPv6Network, ...]:
        try:
            return parse_networks(raw)
        except ValueError as exc:
            self.problem(path, str(exc))
            return ()

    def fallback(self, raw: list[dict[str, Any]], path: Path, strict: bool) -> tuple[Fallback, ...]:
        sources: list[Fallback] = []
        for i, entry in enumerate(raw):
            kind = next(kind for kind in FALLBACK_SOURCES if kind in entry)
            if kind == "retry_later" and not self.retry_topic:
                self.problem((*path, i), "retry_later needs topics.retry (the delayed retry topic prefix)")
            sources.append(FALLBACK_SOURCES[kind].from_config(entry, self.at((*path, i), strict)))
        return tuple(sources)

    def delayed_retry(self, raw: dict[str, Any] | None, path: Path) -> DelayedRetry | None:
        if not self.retry_topic:
            if raw is not None:
                self.problem(path, "delayed_retry needs topics.retry (the delayed retry topic prefix)")
            return None
        return DELAYED_RETRY.from_config(raw, self.at(path))


_ZERO_TIMEOUT = "a timeout of 0 would switch the timeout off: leave `timeout:` out for {default}"
