"""The worker's one rebalance listener: what changes when partitions move.

* **The rate-limit share.** Every worker sends at its share of each partner's limit:
  the input partitions it owns over all of them (streams.protections).
* **Readiness.** Owning no partition is not ready (agents.readiness).
* **Batch windows.** Before Faust commits and lets partitions go (rebalance, stop) it
  waits for every taken lead to be acked, so open batch windows are closed while it
  hands over, from the moment it starts (agents.faust_seam.handover: how that is heard;
  Faust's own signal comes after the wait).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import faust

from agents.faust_seam import HandoverHook
from agents.inflight import exit_if_it_fails
from agents.readiness import Readiness

log = logging.getLogger(__name__)


class BatchWindows(Protocol):
    """The engine's batcher (``FlowRunner.batcher``) as the hand-over sees it."""

    @property
    def pending(self) -> int:
        """Leads waiting in open batch windows."""

    async def close_all(self) -> None:
        """Close every open batch window now."""


class RebalancedFlow(Protocol):
    """A flow of the worker as rebalances see it (agents.flow_worker.FlowWorker)."""

    input_partitions: int | None

    @property
    def name(self) -> str: ...

    @property
    def input_topic(self) -> str: ...

    @property
    def batcher(self) -> BatchWindows: ...

    def set_owned(self, owned: int) -> None:
        """This worker owns ``owned`` of the flow's input partitions (its rate-limit share)."""


class Rebalance:
    def __init__(self, flows: Callable[[], Iterable[RebalancedFlow]], readiness: Readiness) -> None:
        self.flows = flows  # the flows running now
        self.readiness = readiness
        self.app: faust.App | None = None
        self.hook: HandoverHook | None = None  # kept: Faust holds it weakly
        self.closing: asyncio.Future[None] | None = None
        # Until Faust tells us what we own (its signal comes after fetching has resumed), take one
        # partition's share: every worker that sends owns at least one partition, so the group
        # cannot exceed the limit while a rebalance settles.
        for flow in flows():
            flow.set_owned(0)

    def listen(self, app: faust.App) -> None:
        self.app = app
        app.on_partitions_revoked.connect(self.on_revoked)
        app.on_partitions_assigned.connect(self.on_assigned)
        self.hook = HandoverHook(app, self.handing_over)

    async def on_revoked(self, sender: faust.App, revoked: set[faust.types.TP], **kwargs: object) -> None:
        self.readiness.partitions_revoked()
        for flow in self.flows():
            flow.set_owned(0)
        if ours := partition_list(revoked):
            log.info("partitions revoked (rebalance or stop): %s", ours)

    async def on_assigned(self, sender: faust.App, assigned: set[faust.types.TP], **kwargs: object) -> None:
        shares = []
        total = 0
        for flow in self.flows():
            owned = sum(1 for tp in assigned if tp.topic == flow.input_topic)
            total += owned
            flow.set_owned(owned)
            if flow.input_partitions:
                shares.append(f"{flow.name} {owned}/{flow.input_partitions}")
        self.readiness.partitions_assigned(total)
        share = f" (rate limits: this worker owns input partitions {', '.join(shares)})" if shares else ""
        log.info("assigned partitions: %s%s", partition_list(assigned) or "none", share)

    def handing_over(self) -> None:
        """A hand-over started: close the open batch windows now, and again every 0.1 s
        while it lasts (a lead still in an earlier step may reach a batch step meanwhile),
        so Faust's wait for every taken lead to be acked ends."""
        if self.closing is None or self.closing.done():
            self.closing = asyncio.ensure_future(self.close_windows_while_handing_over())
            self.closing.add_done_callback(exit_if_it_fails)

    async def close_windows_while_handing_over(self) -> None:
        assert self.app is not None
        app = self.app
        while app.should_stop or not app.flow_control.is_active():  # suspended: handing over
            for flow in self.flows():
                batcher = flow.batcher
                if batcher.pending:
                    log.info("closing open batch windows of %s (%d leads): partitions are handed over",
                             flow.name, batcher.pending)  # fmt: skip
                    await batcher.close_all()
            await asyncio.sleep(0.1)


def partition_list(tps: set[faust.types.TP]) -> str:
    """``leads.incoming[0,1,3]``, one group per topic; Faust's internal topics left out."""
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        if "__assignor" not in tp.topic:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(
        f"{topic}[{','.join(map(str, sorted(parts)))}]" for topic, parts in sorted(by_topic.items())
    )
