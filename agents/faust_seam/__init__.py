"""Every use of Faust's, mode's and aiokafka's private API, in one package, for the versions
it was read from: an upgrade fails loudly here (the version check below, at import) and in
tests/test_faust_seam.py (one contract test per private name), nowhere else.

* :mod:`.consumer` — **the commit decision** and **the lead intake**, hooked into Faust's
  consumer (faust-streaming 0.15.x, ``faust/transport/consumer.py`` and
  ``faust/transport/drivers/aiokafka.py``). Faust computes a partition's commit from the
  acked offsets (``Consumer._new_offset``); its guard against passing an unacked message
  is off by one and skipped when nothing was committed yet, so with leads finishing out of
  order the commit passed a lead still in flight, and a crash lost it. Here the commit is
  decided by :class:`agents.commit_ledger.CommitLedger`. And the lead topic's fetched
  records skip Faust's per-message stream path (``_drain_messages``; :mod:`agents.intake`
  says why and what it measured).
* :mod:`.clients` — the aiokafka clients inside Faust's: the producer (the outputs' record
  batches, its connections for /ready) and the consumer thread's fetch times.
* :mod:`.handover` — the moment a hand-over starts (Faust's flow control being cleared).
* :mod:`.fetch_wait` — how long the broker may hold a fetch (aiokafka's fetcher): long when it
  asks for every partition of its broker, short when some are left out.
* :mod:`.assignment` — a group member's assignment as the broker describes it (aiokafka's
  consumer protocol, Faust's assignor user data), for ``leadstreams status``.
* :mod:`.transactions` — KIP-447 transactional offset commits (aiokafka sends v0, which
  Kafka does not fence by the group): the member a commit carries, and reading it from
  aiokafka's group coordinator.
* :mod:`.live_agents` — flows added and removed while the worker runs: agents started and
  stopped after the app started, the conductor's subscription changed and waited for.
* :mod:`.web` — plain aiohttp routes (the web console) on Faust's web server, ahead of its
  blueprints.
* :mod:`.worker` — the worker's stop and printing: mode's signal handlers and ``_say``,
  its shutdown steps, and what the stop reports (Faust's read offsets, its ``_commit``).

The rest of ``agents`` uses only what this package exports; tests/test_faust_seam.py also
checks that no other module of ``agents`` reaches into a private name or module.
The broker tests in tests/integration/test_commit_on_kafka.py check the guarantee itself.
"""

from __future__ import annotations

from agents.faust_seam.versions import (
    UnsupportedAiokafka,
    UnsupportedFaust,
    check_aiokafka_version,
    check_faust_version,
)

check_faust_version()  # before the modules below subclass Faust's internals
check_aiokafka_version()

from agents.faust_seam.clients import (  # noqa: E402
    FaustRecordBatches,
    aiokafka_producer,
    last_fetch_time,
    producer_connected,
)
from agents.faust_seam.consumer import (  # noqa: E402
    InFlight,
    Intake,
    LeadApp,
    LeadConsumer,
    LeadTransport,
    TakenMessages,
)
from agents.faust_seam.handover import HandoverHook  # noqa: E402
from agents.faust_seam.live_agents import (  # noqa: E402
    resubscribe,
    resubscribe_quickly,
    start_live,
    stop_live,
    subscribed,
    unsubscribe,
)
from agents.faust_seam.transactions import GroupMember, member_of  # noqa: E402
from agents.faust_seam.web import add_routes  # noqa: E402
from agents.faust_seam.worker import LeadWorker  # noqa: E402

__all__ = [
    "FaustRecordBatches",
    "GroupMember",
    "HandoverHook",
    "InFlight",
    "Intake",
    "LeadApp",
    "LeadConsumer",
    "LeadTransport",
    "LeadWorker",
    "TakenMessages",
    "UnsupportedAiokafka",
    "UnsupportedFaust",
    "add_routes",
    "aiokafka_producer",
    "check_aiokafka_version",
    "check_faust_version",
    "last_fetch_time",
    "member_of",
    "producer_connected",
    "resubscribe",
    "resubscribe_quickly",
    "start_live",
    "stop_live",
    "subscribed",
    "unsubscribe",
]
