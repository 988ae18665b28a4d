"""What the console shows, from a running worker or from flow files on disk.

The routes ask a backend for the flows (the running versions, or the files read again on
each request: `leadstreams console` follows the edits of a person writing a flow), the
files rejected with their problems, the live numbers and the recent problems."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from streams.envsubst import substitute
from streams.flow import MIN_SECRET, Flow
from streams.flow_files import load_flow_files
from streams.live_stats import FlowLayout, LiveStats, StepLayout
from streams.masking import Masker
from streams.recent_problems import RecentProblems
from streams.recording import referenced_variables
from streams.testcases import cases_path_for, load_cases
from streams.yaml_source import read_source

WORKER, CONSOLE = "worker", "console"


@dataclass(frozen=True)
class Loaded:
    flows: dict[str, Flow]  # by file
    rejected: dict[str, list[str]] = field(default_factory=dict)  # file -> problems, masked


class Backend(Protocol):
    mode: str
    env: Mapping[str, str]  # the settings' values, for a new cases file's placeholders
    problems: RecentProblems | None

    def test_console_off(self) -> str | None:
        """Why the test console is off, or None when it is on."""

    def loaded(self) -> Loaded: ...

    def stats(self) -> dict[str, Any] | None: ...


@dataclass
class FileBackend:
    """``leadstreams console PATH...``: flows from disk, no Kafka, no live numbers."""

    paths: list[str]
    env: Mapping[str, str]
    mode: str = CONSOLE
    problems: RecentProblems | None = None

    def test_console_off(self) -> str | None:
        return None

    def loaded(self) -> Loaded:
        scan = load_flow_files(self.paths, self.env)
        rejected = {path: masked_problems(path, [str(p) for p in found], self.env)
                    for path, found in scan.problems.items()}  # fmt: skip
        return Loaded(dict(scan.flows), rejected)

    def stats(self) -> dict[str, Any] | None:
        return None


@dataclass
class WorkerBackend:
    """A worker's running flows, their numbers (``LiveStats``) and recent problems."""

    running: Callable[[], dict[str, Flow]]  # by file
    rejected: Callable[[], dict[str, list[str]]]  # file -> problems (masked): read at /overview only
    live: LiveStats
    problems: RecentProblems
    env: Mapping[str, str]
    console_enabled: bool
    on_view: Callable[[], None] = lambda: None  # the page asked for the numbers
    mode: str = WORKER

    def test_console_off(self) -> str | None:
        if self.console_enabled:
            return None
        return "the test console sends real requests: start the worker with --console to use it here"

    def loaded(self) -> Loaded:
        return Loaded(self.running(), self.rejected())

    def stats(self) -> dict[str, Any] | None:
        self.on_view()
        return self.live.snapshot([layout(flow) for flow in self.running().values()])


def layout(flow: Flow) -> FlowLayout:
    steps = tuple(StepLayout(step.name, step.integration.name, step.batch is not None) for step in flow.steps)
    return FlowLayout(flow.name, flow.version, steps)


def describe(path: str, flow: Flow) -> dict[str, Any]:
    """A flow as the page lists it (names and numbers; never a setting's value)."""
    return {
        "name": flow.name,
        "version": flow.version,
        "file": path,
        "steps": [
            {
                "name": step.name,
                "integration": step.integration.name,
                "batch": step.batch is not None,
                "rate_limit": step.integration.rate_limit,
            }
            for step in flow.steps
        ],
        "sample_lead": sample_lead(flow),
    }


def sample_lead(flow: Flow) -> dict[str, Any] | None:
    """The first saved case's lead (FLOW.cases.yaml), a start for the test console."""
    try:
        cases, _ = load_cases(cases_path_for(flow.source_file))
    except Exception:  # no cases file, or one with problems: the page starts from {"id": ...}
        return None
    return cases[0].lead if cases else None


def masked_problems(path: str, problems: list[str], env: Mapping[str, str]) -> list[str]:
    """A rejected file's problems may quote a setting (``settings:`` written in the file, or
    from ``${NAME}`` and its default) or any ``${NAME}``'s value: those are masked."""
    try:
        data = yaml.safe_load(read_source(path))
    except Exception:  # unreadable or not YAML: its problems quote no setting
        return problems
    secrets = [value for name in referenced_variables(data) if len(value := env.get(name, "")) >= MIN_SECRET]
    resolved, _ = substitute(data, env, schema=None)
    settings = resolved.get("settings") if isinstance(resolved, dict) else None
    if isinstance(settings, dict):
        values = [str(v) for v in settings.values() if isinstance(v, str | int | float)]
        secrets += [value for value in values if len(value) >= MIN_SECRET]
    masker = Masker(secrets)
    return [masker.text(problem) for problem in problems]
