"""The flows a worker runs, and live changes to them.

A change (a file watched, SIGHUP, ``POST /flows/reload``) rescans the worker's paths. Every
file is checked first; one with problems is logged (``FILE:LINE: path: message``), counted
and shown on ``/flows``, and whatever runs from it keeps running. Then, one flow at a time:
a changed file reloads its flow in place (agents.flow_worker: drain, swap), a removed one is
drained, committed and stopped, a new one is started; a flow whose name or topics changed is
stopped and started again. Reloads never overlap."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from agents.faust_seam import resubscribe, subscribed
from agents.flow_worker import RUNNING, STOPPED, FlowWorker
from agents.topic_names import topic_name_problem
from streams.flow import Flow
from streams.flow_files import FlowFiles, load_flow_files, read_topics
from streams.metrics import Metrics
from streams.problems import Problem

log = logging.getLogger("leadstreams.flows")

APPLIED, STARTED, STOPPED_RESULT, REJECTED, UNCHANGED = (
    "applied",
    "started",
    "stopped",
    "rejected",
    "unchanged",
)


class TopicsUnavailable(Exception):
    """A flow added live whose topics could not be made or described (the message says why)."""


@dataclass
class Change:
    """What one reload did to one file."""

    file: str
    flow: str
    result: str
    version: str = ""
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "flow": self.flow, "result": self.result, "version": self.version,
                "problems": self.problems}  # fmt: skip


# Makes a flow's worker (and its topics) for a flow added live: agents.app knows how.
NewFlow = Callable[[str, Flow], Awaitable[FlowWorker]]


class FlowSet:
    def __init__(self, paths: list[str], metrics: Metrics) -> None:
        self.paths = paths
        self.metrics = metrics
        self.workers: dict[str, FlowWorker] = {}  # by flow name: running or draining
        self.problems: dict[str, list[Problem]] = {}  # by file: the problems of its last scan
        self.refused: dict[str, str] = {}  # by file: the version of a valid file refused at its start
        self.last_reload: dict[str, Any] | None = None
        self.app: faust.App | None = None  # set by agents.app
        self.new_flow: NewFlow | None = None  # set by agents.app
        self.after_change: Callable[[], Awaitable[None]] | None = None  # (agents.app: closes unused pools)
        self._lock = asyncio.Lock()

    def add(self, worker: FlowWorker) -> None:
        self.workers[worker.name] = worker

    def running(self) -> list[FlowWorker]:
        return [worker for worker in self.workers.values() if worker.state != STOPPED]

    def rejected_at_start(self, scan: FlowFiles) -> None:
        """The problems of files that did not start (logged by the CLI already)."""
        for path, problems in scan.problems.items():
            self.problems[path] = problems
            self.metrics.flow_reloads.labels(flow_label(path, None), REJECTED).inc()

    # -- reloading --------------------------------------------------------------------

    async def reload(self, why: str) -> list[Change]:
        """Rescan the paths and apply what changed; what each file's change did."""
        async with self._lock:
            started = time.monotonic()
            by_path = {worker.path: worker for worker in self.running()}
            scan = await asyncio.to_thread(
                load_flow_files, self.paths, None, {p: w.flow for p, w in by_path.items()}
            )
            changes = [change for change in self._rejections(scan, by_path) if change is not None]
            stopped: set[str] = set()
            for path, worker in by_path.items():
                flow = scan.flows.get(path)
                gone = path not in scan.files or missing(scan.problems.get(path))
                if gone or (flow is not None and not same_place(flow, worker.flow)):
                    changes.append(await self._stop(worker))
                    stopped.update(read_topics(worker.flow))
            starting = {
                path: flow
                for path, flow in scan.flows.items()
                if not runs_in_place(by_path.get(path), flow)
                and self.refused.get(path) != flow.version  # (said already: unchanged since)
            }
            reused = stopped & {topic for flow in starting.values() for topic in read_topics(flow)}
            if reused:  # a stopped flow's topics read by a new one: only once the group took them away
                await self._until_revoked(reused)
            for path, flow in scan.flows.items():
                worker = by_path.get(path)
                if path in starting:
                    changes.append(await self._start(path, flow))
                elif worker is not None and worker.flow.version != flow.version:
                    changes.append(await self._apply(worker, flow))
            done = [change for change in changes if change.result != UNCHANGED]
            if any(change.result in (STARTED, STOPPED_RESULT) for change in done):
                await self._until_subscribed()
            if done and self.after_change is not None:
                await self.after_change()
            took = time.monotonic() - started
            log.info("flows reloaded (%s) in %.1fs: %s", why, took,
                     ", ".join(f"{c.flow} {c.result}" for c in done) or "nothing changed")  # fmt: skip
            self.last_reload = {"why": why, "at": time.time(), "seconds": round(took, 3),
                                "changes": [change.as_json() for change in done]}  # fmt: skip
            return done

    async def _until_revoked(self, topics: set[str], within: float = 30.0) -> None:
        """Until this worker owns no partition of ``topics`` (a removed flow's, about to be read
        by a flow started in its place): what the removed flow fetched but did not take is
        read again from its commit, by the new flow, not skipped by it."""
        assert self.app is not None
        await self._until_subscribed()
        deadline = time.monotonic() + within
        while any(tp.topic in topics for tp in self.app.consumer.assignment()):
            if time.monotonic() > deadline:
                log.warning("partitions of %s still assigned %.0fs after their flow stopped",
                            sorted(topics), within)  # fmt: skip
                return
            await asyncio.sleep(0.1)

    async def _until_subscribed(self, tries: int = 3, each: float = 5.0) -> None:
        """Until the consumer subscribes to the running flows' topics and no longer to the
        stopped ones' (then the group rebalances): the next reload starts from there."""
        assert self.app is not None
        wanted = {topic for worker in self.running() for topic in read_topics(worker.flow)}
        for _ in range(tries):
            deadline = time.monotonic() + each
            while time.monotonic() < deadline:
                now = subscribed(self.app)
                if wanted <= now and not (now - wanted - internal_topics(now)):
                    return
                await asyncio.sleep(0.1)
            resubscribe(self.app)
        log.warning("the consumer's subscription did not follow the flows within %.0fs: %s", tries * each,
                    sorted(subscribed(self.app)))  # fmt: skip

    def _rejections(self, scan: FlowFiles, by_path: dict[str, FlowWorker]) -> list[Change | None]:
        """Files with problems: logged and counted once per new set of problems."""
        changes: list[Change | None] = []
        now = {path: problems for path, problems in scan.problems.items() if not missing(problems)}
        for path, version in list(self.refused.items()):  # refused at its start: said until it changes
            flow = scan.flows.get(path)
            if flow is not None and flow.version == version:
                now[path] = self.problems.get(path, [])
            else:
                del self.refused[path]
        for path, problems in now.items():
            worker = by_path.get(path)
            if self.problems.get(path) == problems:
                continue  # said already, at the scan that found them
            name = flow_label(path, worker)
            for problem in problems:
                log.error("%s", problem)
            kept = (
                f"flow {name!r} keeps running version {worker.flow.version}" if worker else "nothing started"
            )
            log.error("%d problem(s) in %s: %s", len(problems), path, kept)
            self.metrics.flow_reloads.labels(name, REJECTED).inc()
            changes.append(Change(path, name, REJECTED, problems=[str(p) for p in problems]))
        self.problems = now
        return changes

    async def _apply(self, worker: FlowWorker, flow: Flow) -> Change:
        old = worker.flow.version
        log.info("flow %r: version %s -> %s: draining %d leads in flight, then the new version runs",
                 worker.name, old, flow.version, worker.loop.unwritten if worker.loop else 0)  # fmt: skip
        await worker.reload(flow)
        self.metrics.flow_reloads.labels(worker.name, APPLIED).inc()
        log.info("flow %r: version %s runs (was %s)", worker.name, flow.version, old)
        return Change(worker.path, worker.name, APPLIED, flow.version)

    async def _stop(self, worker: FlowWorker) -> Change:
        log.info("flow %r (%s): stopping: draining, committing, leaving %s", worker.name, worker.path,
                 worker.topics.input)  # fmt: skip
        await worker.remove()
        self.workers.pop(worker.name, None)
        self.metrics.flow_reloads.labels(worker.name, STOPPED_RESULT).inc()
        return Change(worker.path, worker.name, STOPPED_RESULT, worker.flow.version)

    async def _start(self, path: str, flow: Flow) -> Change:
        problems = [
            Problem(path, 1, "topics", problem)
            for problem in (topic_name_problem(name) for name in topic_names(flow))
            if problem is not None
        ]
        if not problems:
            assert self.new_flow is not None
            try:
                worker = await self.new_flow(path, flow)
            except TopicsUnavailable as exc:
                problems = [Problem(path, 1, "topics", str(exc))]
            else:
                self.add(worker)
                self.metrics.flow_reloads.labels(flow.name, STARTED).inc()
                log.info("flow %r (%s): started, version %s, reading %s", flow.name, path, flow.version,
                         worker.topics.input)  # fmt: skip
                return Change(path, flow.name, STARTED, flow.version)
        for problem in problems:
            log.error("%s", problem)
        self.problems[path] = problems
        self.refused[path] = flow.version
        self.metrics.flow_reloads.labels(flow.name, REJECTED).inc()
        return Change(path, flow.name, REJECTED, flow.version, [str(p) for p in problems])

    # -- /flows -----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        flows = [
            {
                "name": worker.name,
                "file": worker.path,
                "version": worker.flow.version,
                "state": worker.state,
                "input_topic": worker.topics.input,
                "partitions_owned": worker.owned,
                "input_partitions": worker.input_partitions,
                "in_flight": worker.loop.unwritten if worker.loop is not None else 0,
                "problems": [str(p) for p in self.problems.get(worker.path, [])],  # a rejected newer file
            }
            for worker in sorted(self.running(), key=lambda w: w.name)
        ]
        running = {worker.path for worker in self.running()}
        rejected = [
            {"file": path, "state": REJECTED, "problems": [str(p) for p in problems]}
            for path, problems in sorted(self.problems.items())
            if path not in running
        ]
        return {"flows": flows, "rejected": rejected, "last_reload": self.last_reload}


def runs_in_place(worker: FlowWorker | None, flow: Flow) -> bool:
    """Whether ``flow`` is a new version of the flow ``worker`` runs (else it starts)."""
    return worker is not None and worker.state == RUNNING and worker.name == flow.name


def internal_topics(topics: set[str]) -> set[str]:
    """Faust's own topics among ``topics`` (its assignor's leader topic, table changelogs)."""
    return {topic for topic in topics if "__assignor" in topic or topic.endswith("-changelog")}


def flow_label(path: str, worker: FlowWorker | None) -> str:
    """The ``flow`` label of a rejected file: its running flow's name, else the file's name."""
    if worker is not None:
        return worker.name
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0]


def missing(problems: list[Problem] | None) -> bool:
    """The scan's problem for a path named on the command line that no longer exists."""
    return (
        bool(problems)
        and len(problems) == 1
        and problems[0].line == 0
        and "no such file" in problems[0].message
    )


def same_place(new: Flow, old: Flow) -> bool:
    """Whether ``new`` can replace ``old`` in place: same name, same topics, same retry tiers."""
    return (new.name, new.topics, new.delayed_retry, topic_names(new)) == (
        old.name, old.topics, old.delayed_retry, topic_names(old)
    )  # fmt: skip


def topic_names(flow: Flow) -> list[str]:
    from streams.flow_files import read_topics, written_topics

    return [*read_topics(flow), *written_topics(flow)]
