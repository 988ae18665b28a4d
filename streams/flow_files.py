"""The flows one worker runs: flow files named on the command line or found in directories,
each loaded and checked on its own (one file's problems never stop another's flow), then
checked together (names and the topics they read must not collide).

A directory holds flow files (``*.yaml``, ``*.yml``) beside their saved cases (``*.cases.yaml``,
left out) and, mounted from a Kubernetes ConfigMap, hidden ``..data`` entries (left out)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from streams.delayed import tier_topics
from streams.flow import Flow
from streams.loader import load_flow
from streams.notifications import results_topic, tier_prefix
from streams.problems import FlowFileError, Problem

FLOW_SUFFIXES = (".yaml", ".yml")
CASES_SUFFIXES = (".cases.yaml", ".cases.yml")


@dataclass
class FlowFiles:
    """What a scan found: the flows that load, by file, and every other file's problems."""

    flows: dict[str, Flow] = field(default_factory=dict)
    problems: dict[str, list[Problem]] = field(default_factory=dict)

    @property
    def files(self) -> set[str]:
        return set(self.flows) | set(self.problems)


def flow_paths(paths: Iterable[str]) -> tuple[list[str], dict[str, list[Problem]]]:
    """The flow files of ``paths`` (files as given, directories' flow files sorted by name),
    and a problem for each path that is neither."""
    found: list[str] = []
    problems: dict[str, list[Problem]] = {}
    for path in paths:
        if os.path.isdir(path):
            found.extend(str(entry) for entry in sorted(Path(path).iterdir()) if is_flow_file(entry))
        elif os.path.isfile(path):
            found.append(path)
        else:
            problems[path] = [Problem(path, 0, "", "no such file or directory")]
    return list(dict.fromkeys(found)), problems


def is_flow_file(entry: Path) -> bool:
    name = entry.name
    return (
        not name.startswith(".")
        and name.endswith(FLOW_SUFFIXES)
        and not name.endswith(CASES_SUFFIXES)
        and entry.is_file()  # (a ConfigMap's file is a symlink to one)
    )


def load_flow_files(
    paths: Iterable[str], env: Mapping[str, str] | None = None, running: Mapping[str, Flow] | None = None
) -> FlowFiles:
    """Every flow file of ``paths`` loaded; two flows may not share a name or a topic they read
    (the later file, by path order, is refused; a file whose flow runs, ``running`` by path,
    keeps its place as long as it exists, even while a newer version of it has problems)."""
    files, problems = flow_paths(paths)
    scan = FlowFiles(problems=problems)
    for path in files:
        try:
            scan.flows[path] = load_flow(path, env)
        except FlowFileError as exc:
            scan.problems[path] = list(exc.problems)
    kept = {path: flow for path, flow in (running or {}).items() if path in files}
    for path, problem in collisions(scan.flows, kept).items():
        scan.flows.pop(path, None)
        scan.problems[path] = [problem]
    return scan


def collisions(flows: Mapping[str, Flow], running: Mapping[str, Flow] | None = None) -> dict[str, Problem]:
    """For each file whose flow takes a name or a read topic already taken (by ``running``, a
    path -> flow of flows kept from before, or by an earlier file) the problem."""
    names: dict[str, str] = {}
    topics: dict[str, str] = {}
    found: dict[str, Problem] = {}
    running = running or {}
    ordered = [
        *((p, flows.get(p, f)) for p, f in running.items()),
        *((p, f) for p, f in flows.items() if p not in running),
    ]
    for path, flow in ordered:
        other = names.get(flow.name)
        if other is not None and other != path:
            found[path] = Problem(path, 1, "name", f"flow {flow.name!r} is already run from {other}")
            continue
        taken = [(topic, topics[topic]) for topic in read_topics(flow) if topics.get(topic, path) != path]
        if taken:
            topic, other = taken[0]
            found[path] = Problem(path, 1, "topics", f"topic {topic} is already read by the flow of {other}")
            continue
        names[flow.name] = path
        topics.update(dict.fromkeys(read_topics(flow), path))
    return found


def read_topics(flow: Flow) -> list[str]:
    """The topics a worker of ``flow`` consumes: input, retry tiers, notifications and their tiers."""
    topics = flow.topics
    if topics is None:
        return []
    read = [topics.input]
    if flow.delayed_retry is not None and topics.retry:
        read.extend(tier_topics(topics.retry, flow.delayed_retry).values())
    notify = [step.notify for step in flow.steps if step.notify is not None]
    if topics.notifications and notify:
        read.append(topics.notifications)
        if any(spec.important for spec in notify):
            read.extend(tier_topics(tier_prefix(topics.notifications), flow.notification_retry).values())
    return read


def written_topics(flow: Flow) -> list[str]:
    topics = flow.topics
    if topics is None:
        return []
    written = [topics.enriched, topics.errors]
    if topics.notifications and any(step.notify for step in flow.steps):
        written.append(results_topic(topics.notifications))
    return written


def carry_over(new: Flow, old: Flow) -> Flow:
    """``new`` with ``old``'s integration objects wherever the definition did not change: the
    worker keys an integration's connection pool, limiter, circuit and concurrency slots by the
    object, and its OAuth token lives in it."""
    kept = {
        name: old.integrations[name]
        for name, integration in new.integrations.items()
        if name in old.integrations and integration.definition
        and old.integrations[name].definition == integration.definition
    }  # fmt: skip
    if not kept:
        return new
    stages = tuple(
        tuple(replace(step, integration=kept.get(step.integration.name, step.integration)) for step in stage)
        for stage in new.stages
    )
    return replace(new, integrations={**new.integrations, **kept}, stages=stages)
