"""The test console's runs, shared by ``leadstreams try`` and the web console: one lead sent
through a flow's real partners, its per-step report (secrets masked), and the run saved as a
case ``leadstreams test`` replays (the format of ``try --record``)."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streams.case_file import Saved, save_case
from streams.console import run_report
from streams.flow import Flow
from streams.http_client import HttpClient
from streams.masking import Masker
from streams.outcomes import FlowResult
from streams.recording import RecordingTransport, recorded_case, recorded_settings, referenced_variables
from streams.runner import FlowRunner
from streams.step.exchange import Exchange
from streams.testcases import cases_path_for
from streams.transport import Transport
from streams.yaml_source import read_source


@dataclass
class ConsoleRun:
    flow: Flow
    lead: dict[str, Any]
    result: FlowResult
    exchanges: dict[str, Exchange]
    recording: RecordingTransport

    def masker(self) -> Masker:
        return Masker(self.flow.secrets)  # after the run: it knows the tokens learned during it

    def report(self, verbose: bool = False, only_step: str | None = None) -> dict[str, Any]:
        return run_report(self.result, self.exchanges, self.masker(), verbose, only_step)

    def case(self, name: str | None, env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        """The case as saved (``expect`` from this run) and ``settings:`` for a new cases file."""
        masker = self.masker()
        name = name or f"{self.lead.get('id', 'lead')}: {self.result.outcome.value}"
        case = recorded_case(name, self.lead, self.result, self.exchanges, self.recording, masker)
        variables = referenced_variables(yaml.safe_load(read_source(self.flow.source_file)))
        return case, recorded_settings(variables, env, masker)

    def save(self, name: str | None, env: Mapping[str, str], cases_file: str | None = None) -> Saved:
        """Appended to ``cases_file`` (default: the flow file's name with .cases.yaml).
        Raises FlowFileError (not a valid cases file) or OSError (cannot write)."""
        case, settings = self.case(name, env)
        path = cases_file or cases_path_for(self.flow.source_file)
        return save_case(path, case, settings, Path(self.flow.source_file).name)


async def run_lead(
    flow: Flow, lead: dict[str, Any], client: Transport | None = None, only_step: str | None = None
) -> ConsoleRun:
    """Send the flow's real requests for ``lead`` (through ``client``, default a new HttpClient
    closed afterwards), every answer recorded."""
    inner = client if client is not None else HttpClient()
    recording = RecordingTransport(inner, {step.name: step.response_format for step in flow.steps})
    exchanges: dict[str, Exchange] = {}
    try:
        result = await FlowRunner(flow, recording).run(lead, str(lead.get("id", "try")), exchanges, only_step)
    finally:
        if client is None:
            await inner.close()
    return ConsoleRun(flow, lead, result, exchanges, recording)


@dataclass
class RecentRuns:
    """The web console's last runs, by id, until saved as a case (bounded: the oldest go)."""

    keep: int = 20
    _runs: OrderedDict[str, ConsoleRun] = field(default_factory=OrderedDict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, run: ConsoleRun) -> str:
        run_id = f"r{next(self._ids)}"
        self._runs[run_id] = run
        while len(self._runs) > self.keep:
            self._runs.popitem(last=False)
        return run_id

    def get(self, run_id: str) -> ConsoleRun | None:
        return self._runs.get(run_id)
