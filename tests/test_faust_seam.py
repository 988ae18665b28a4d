"""The contract between agents.faust_seam and the installed Faust: the private names it
overrides or reads exist, and Faust's commit path asks our ledger. The guarantee itself
is checked on the real broker (tests/integration/test_commit_on_kafka.py)."""

from __future__ import annotations

import ast
import inspect
import logging
import signal
import threading
import time
from pathlib import Path

import faust
import mode
import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import AIOKafkaConnection
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.app.base import App
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.transport.drivers.aiokafka import Producer as AIOKafkaDriverProducer
from faust.types import TP, Message
from mode.utils.queues import FlowControlEvent

from agents.faust_seam import (
    HandoverHook,
    LeadApp,
    LeadConsumer,
    LeadTransport,
    LeadWorker,
    TakenMessages,
    UnsupportedAiokafka,
    UnsupportedFaust,
    check_aiokafka_version,
    check_faust_version,
    last_fetch_time,
    producer_connected,
)

OVERRIDDEN = ["ack", "_new_offset", "_filter_tps_with_pending_acks", "on_partitions_revoked",
              "_drain_messages"]  # fmt: skip
CALLED = ["_filter_committable_offsets", "_should_commit", "track_message", "getmany", "wait_first",
          "commit", "force_commit", "_commit_tps", "_commit"]  # fmt: skip
ATTRIBUTES = ["_unacked_messages", "_waiting_for_ack", "_n_acked", "_commit_every", "_read_offset",
              "_committed_offset", "_stopped", "diag", "suspend_flow", "callback", "_thread",
              "consumer_stopped_errors"]  # fmt: skip


def test_faust_version_is_checked() -> None:
    check_faust_version("0.15.3")
    for version in ("0.14.9", "0.16.0", "1.0.0"):
        with pytest.raises(UnsupportedFaust, match="faust-streaming"):
            check_faust_version(version)


def test_aiokafka_version_is_checked() -> None:
    check_aiokafka_version("0.14.0")
    for version in ("0.12.0", "0.15.0", "1.0.0"):
        with pytest.raises(UnsupportedAiokafka, match="aiokafka"):
            check_aiokafka_version(version)


@pytest.mark.parametrize("name", OVERRIDDEN + CALLED)
def test_the_methods_we_override_or_call_exist(name: str) -> None:
    assert callable(getattr(AIOKafkaDriverConsumer, name, None)), f"Faust's consumer has no {name}"


def test_faust_commits_through_the_methods_we_override() -> None:
    """force_commit -> _filter_tps_with_pending_acks -> _commit_tps ->
    _filter_committable_offsets -> _new_offset: the chain our overrides sit in."""
    assert "_filter_tps_with_pending_acks" in inspect.getsource(Consumer.force_commit)
    assert "_filter_committable_offsets" in inspect.getsource(Consumer._commit_tps)
    assert "_new_offset" in inspect.getsource(Consumer._filter_committable_offsets)


@pytest.fixture
async def consumer() -> LeadConsumer:
    app = LeadApp("seam-contract", broker="kafka://127.0.0.1:1", autodiscover=False)
    app.topics.add(app.topic("leads"))
    await app.topics._update_indices()  # what subscribing does: acks are enabled for "leads"
    consumer = app.consumer
    assert isinstance(consumer, LeadConsumer)
    return consumer


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_the_attributes_we_read_exist(consumer: LeadConsumer, name: str) -> None:
    assert hasattr(consumer, name), f"Faust's consumer has no {name}"


def message(offset: int, partition: int = 0) -> Message:
    return Message("leads", partition, offset, 0.0, 0, None, b"k", b"v", None, tp=TP("leads", partition))


def test_tracked_messages_are_taken_and_acks_finish_them(consumer: LeadConsumer) -> None:
    """A slow lead at the head holds the commit, whatever Faust's own guard would do."""
    assert isinstance(consumer._unacked_messages, TakenMessages)
    messages = [message(offset) for offset in range(51)]
    for each in messages:
        consumer.track_message(each)  # the intake's path
    for each in messages[1:]:
        assert consumer.ack(each)
    tps = list(consumer._filter_tps_with_pending_acks())
    assert consumer._filter_committable_offsets(tps) == {}
    assert consumer.ack(messages[0])
    assert not consumer.ack(messages[0])  # acked once
    tps = list(consumer._filter_tps_with_pending_acks())
    assert consumer._filter_committable_offsets(tps) == {TP("leads", 0): 51}
    assert len(consumer._unacked_messages) == 0


def test_faust_streams_inlined_tracking_is_taken_too(consumer: LeadConsumer) -> None:
    """Faust's Stream adds to ``consumer.unacked`` directly instead of track_message."""
    first, second = message(0, partition=1), message(1, partition=1)
    consumer.unacked.add(first)
    consumer.unacked.add(second)
    consumer.ack(second)
    assert consumer._filter_committable_offsets(list(consumer._filter_tps_with_pending_acks())) == {}
    consumer.ack(first)
    assert consumer._new_offset(TP("leads", 1)) == 2


async def test_revoked_partitions_are_forgotten(consumer: LeadConsumer) -> None:
    first = message(0)
    consumer.track_message(first)
    consumer.app.flow_control.resume()
    await consumer.on_partitions_revoked({TP("leads", 0)})
    assert consumer.ledger.unfinished(TP("leads", 0)) == 0
    assert not consumer.ack(first)  # acked late: counts for nothing


# -- the worker's stop and health ------------------------------------------------------

WORKER_METHODS = ["_on_sigint", "_on_sigterm", "_say", "_schedule_shutdown", "_shutdown_loop",
                  "_sentinel_task", "stop_and_shutdown", "_flag_as_shutdown_by_signal",
                  "on_startup_finished"]  # fmt: skip


@pytest.mark.parametrize("name", WORKER_METHODS)
def test_the_worker_methods_we_override_or_call_exist(name: str) -> None:
    assert callable(getattr(faust.Worker, name, None)), f"Faust's worker has no {name}"


def test_modes_worker_routes_signals_and_printing_through_what_we_override() -> None:
    install = inspect.getsource(mode.Worker._install_signal_handlers_unix)
    assert "self._on_sigint" in install and "self._on_sigterm" in install
    assert "self._say(" in inspect.getsource(mode.Worker.say) + inspect.getsource(mode.Worker.carp)
    mirrored = inspect.getsource(mode.Worker.stop_and_shutdown)  # LeadWorker's copy adds a log line
    assert "_signal_stop_future" in mirrored and "self._shutdown_loop()" in mirrored
    assert "self._sentinel_task()" in inspect.getsource(mode.Worker._shutdown_loop)
    assert "self._commit(" in inspect.getsource(Consumer._commit_offsets)  # LeadConsumer records commits


def test_the_aiokafka_names_health_reads_exist() -> None:
    assert "self._conns = {}" in inspect.getsource(AIOKafkaClient.__init__)
    assert callable(AIOKafkaConnection.connected)
    assert callable(AIOKafkaConsumer.last_poll_timestamp)
    assert callable(AIOKafkaConsumerThread._ensure_consumer)


async def test_before_start_the_producer_is_not_connected_and_nothing_was_fetched(
    consumer: LeadConsumer,
) -> None:
    assert isinstance(consumer._thread, AIOKafkaConsumerThread)
    assert not producer_connected(consumer.app.producer)
    assert last_fetch_time(consumer) is None


async def test_the_worker_prints_nothing_and_a_stop_signal_is_one_line(
    consumer: LeadConsumer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    app = consumer.app
    assert isinstance(app, LeadApp)
    worker = LeadWorker(app, loglevel="INFO", override_logging=False)
    worker.up = True  # a signal before the start exits at once
    scheduled: list[signal.Signals] = []
    monkeypatch.setattr(worker, "_schedule_shutdown", scheduled.append)
    monkeypatch.setattr(worker, "arm", lambda after: None)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)  # stop_on replaces it
    with caplog.at_level(logging.INFO, "agents.faust_seam"):
        worker.say("starting➢ ")
        worker._on_sigint()
    assert capsys.readouterr() == ("", "")  # mode would print "-INT- -INT- ..." and the spinner
    assert scheduled == [signal.SIGINT]
    assert [r.getMessage() for r in caplog.records] == [
        "starting➢",
        "stopping (SIGINT): no lead in flight, then committing and handing over the partitions",
    ]


def test_uncommitted_counts_leads_read_since_the_last_commit_or_assignment(consumer: LeadConsumer) -> None:
    tp = TP("leads", 0)
    assert consumer.uncommitted() == 0
    consumer.first_read[tp] = 10  # the first lead read after the assignment (no commit yet)
    consumer._read_offset[tp] = 19
    assert consumer.uncommitted() == 10
    consumer.last_commits[tp] = 15  # committed up to 15 (exclusive)
    assert consumer.uncommitted() == 5


async def test_the_stop_bound_waits_for_leads_being_written_then_for_their_commit(
    consumer: LeadConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = consumer.app
    assert isinstance(app, LeadApp)
    worker = LeadWorker(app, loglevel="INFO", override_logging=False)
    worker.stop_signal, worker.stop_started = signal.SIGTERM, time.monotonic()
    armed: list[float] = []
    exits: list[str] = []
    monkeypatch.setattr(worker, "arm", armed.append)
    monkeypatch.setattr(worker, "exit_now", lambda why, code=0: exits.append(why))
    in_flight = 3
    monkeypatch.setattr(app, "in_flight", lambda: in_flight)
    monkeypatch.setattr(app, "kafka_reachable", lambda: True)
    worker.on_deadline()  # at the bound, leads are still being written: they keep their grace
    assert armed == [0.5] and not exits
    in_flight = 0
    worker.on_deadline()  # written: time for the commit and hand-over
    assert armed == [0.5, 2.0] and not exits
    worker.on_deadline()  # the stop still did not finish
    assert len(exits) == 1 and exits[0].startswith("the stop did not finish within ")
    assert exits[0].endswith("s of SIGTERM")
    in_flight = 5
    monkeypatch.setattr(app, "kafka_reachable", lambda: False)
    worker.on_deadline()  # leads in flight, Kafka away: they cannot be written
    assert len(exits) == 2


# -- the rest of the private names the seam uses -----------------------------------------


def test_the_app_makes_its_transport_through_new_transport(consumer: LeadConsumer) -> None:
    """LeadApp overrides App._new_transport: Faust's transport (and so its consumer) is ours."""
    assert callable(App._new_transport)
    assert "self._new_transport()" in inspect.getsource(App.transport.fget)  # type: ignore[attr-defined]
    assert isinstance(consumer.app.transport, LeadTransport)


def test_the_fetcher_our_fetch_loop_watches_has_a_stopped_event(consumer: LeadConsumer) -> None:
    """LeadConsumer._drain_messages reads ``fetcher._stopped`` as Faust's loop does."""
    assert "fetcher)._stopped" in inspect.getsource(Consumer._drain_messages)
    assert hasattr(consumer.app._fetcher, "_stopped")


def test_messages_carry_what_the_ack_and_intake_read() -> None:
    made = message(0)
    assert made.acked is False and hasattr(made, "generation_id")


async def test_the_producer_inside_fausts_and_its_record_batches() -> None:
    """aiokafka_producer calls Faust's Producer._ensure_producer; FaustRecordBatches hands
    out aiokafka's BatchBuilder, whose append the output writer calls with these keywords
    (None once the record batch is full)."""
    assert callable(AIOKafkaDriverProducer._ensure_producer)
    assert "return self._producer" in inspect.getsource(AIOKafkaDriverProducer._ensure_producer)
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_batch_size=100)
    try:
        records = producer.create_batch()  # no broker needed
    finally:
        await producer.stop()
    assert isinstance(records, BatchBuilder)
    assert records.append(timestamp=None, key=b"k", value=b"v", headers=[]) is not None
    assert records.append(timestamp=None, key=b"k", value=b"v" * 200, headers=[]) is None
    assert callable(AIOKafkaProducer.send_batch)


WORKER_ATTRIBUTES = ["_shutdown_immediately", "_signal_stop_future", "_stopped", "crash_reason", "spinner"]


@pytest.mark.parametrize("name", WORKER_ATTRIBUTES)
def test_the_worker_attributes_we_read_exist(consumer: LeadConsumer, name: str) -> None:
    app = consumer.app
    assert isinstance(app, LeadApp)
    worker = LeadWorker(app, loglevel="INFO", override_logging=False)
    assert hasattr(worker, name), f"mode's worker has no {name}"


def test_a_hand_over_clears_the_flow_controls_queues_before_waiting_for_acks() -> None:
    """HandoverHook hears a hand-over as Faust's flow control clearing its queues: on a
    rebalance's revocation and on a stop, after suspending and before waiting for acks."""
    for path in (App._on_partitions_revoked, App._stop_consumer):
        source = inspect.getsource(path)
        suspend, clear = source.index("flow_control.suspend"), source.index("flow_control.clear")
        assert suspend < clear < source.index("_consumer_wait_empty"), path.__name__
    assert "queue.clear()" in inspect.getsource(FlowControlEvent.clear)


async def test_the_hand_over_hook_fires_when_suspended_not_when_resumed() -> None:
    app = LeadApp("seam-handover", broker="kafka://127.0.0.1:1", autodiscover=False)
    heard: list[bool] = []
    hook = HandoverHook(app, lambda: heard.append(True))
    app.flow_control.resume()  # an assignment: clears the queues too, flow active
    assert heard == []
    app.flow_control.suspend()
    app.flow_control.clear()  # what Faust does next on a revocation or a stop
    assert heard == [True]
    assert hook.flow_control is app.flow_control


async def test_the_worker_consumer_fetches_with_the_apps_wait(consumer: LeadConsumer) -> None:
    """Faust builds aiokafka's consumer with fetch_max_wait_ms=1500; the seam sets the
    app's, and aiokafka hands that attribute to its fetcher when it starts."""
    import aiokafka

    consumer.app.fetch_max_wait_ms = 37
    made = consumer._new_consumer_thread()._create_worker_consumer(consumer.transport)
    assert made._fetch_max_wait_ms == 37
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)


def test_a_member_assignment_made_by_fausts_assignor_is_read() -> None:
    """agents.faust_seam.assignment reads what Faust's assignor writes (status's members)."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
    from faust.assignor.client_assignment import ClientAssignment, ClientMetadata
    from faust.assignor.partition_assignor import PartitionAssignor

    from agents.faust_seam.assignment import member_assignment

    url = "http://leadstreams.invalid/instance/w-0"
    actives = ClientAssignment(actives={"in": [2, 0]}, standbys={})
    metadata = ClientMetadata(assignment=actives, url=url, changelog_distribution={})
    user_data = PartitionAssignor._compress(metadata.dumps())
    raw = ConsumerProtocolMemberAssignment(4, [("in", [2, 0])], user_data).encode()
    assert member_assignment(raw) == ({"in": [0, 2]}, url)
    assert member_assignment(b"") == ({}, None)


SEAM = Path(__file__).resolve().parents[1] / "agents" / "faust_seam"
PUBLIC = {"faust", "faust.types", "aiokafka", "aiokafka.admin", "aiokafka.errors", "aiokafka.helpers",
          "aiokafka.admin.config_resource", "aiokafka.structs"}  # fmt: skip


@pytest.mark.parametrize(
    "module",
    sorted(p for p in (SEAM.parent).rglob("*.py") if SEAM not in p.parents),
    ids=lambda p: str(p.relative_to(SEAM.parent)),
)
def test_no_module_outside_the_seam_reaches_into_private_names(module: Path) -> None:
    """Outside agents/faust_seam/: Faust, mode and aiokafka only through their public
    modules, and no ``x._name`` on anything but the module's own objects."""
    for node in ast.walk(ast.parse(module.read_text(), str(module))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            library = node.module.split(".")[0] in {"faust", "mode", "aiokafka"}
            assert not library or node.module in PUBLIC, f"{module.name} imports {node.module}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            ours = isinstance(owner, ast.Name) and owner.id in {"self", "cls", "os", "sys"}
            assert ours, f"{module.name}:{node.lineno}: private attribute {node.attr}"


# -- flows added and removed live (agents.faust_seam.live_agents) ---------------------------


def test_the_conductor_names_live_changes_use_exist(consumer: LeadConsumer) -> None:
    from faust.transport.conductor import Conductor

    conductor = consumer.app.topics
    assert isinstance(conductor, Conductor)
    assert "_resubscribe_sleep_lock_seconds" in inspect.getsource(Conductor._subscriber.fun)
    assert "self.app.rebalancing" in inspect.getsource(Conductor._subscriber.fun)  # (a change then waits)
    assert isinstance(conductor._topics, set) and callable(conductor._flag_changes)
    assert "_flag_changes" in inspect.getsource(Conductor.discard)
    agents = consumer.app.agents
    assert callable(agents.update_topic_index) and isinstance(agents.data, dict)
    assert "_consumer" in inspect.getsource(AIOKafkaConsumerThread._ensure_consumer)


async def test_partitions_stay_assigned_until_revoked(consumer: LeadConsumer) -> None:
    """Faust's revoke waits, commits and clears its buffers only for what ``assignment()``
    answers (aiokafka's is empty right after a subscription change)."""
    assert "consumer.assignment()" in inspect.getsource(App._on_partitions_revoked)
    assert "self.assignment()" in inspect.getsource(Consumer._commit_offsets)
    consumer._thread.assignment = lambda: set()  # type: ignore[method-assign]  # the subscription changed
    consumer.owned = {TP("leads", 0), TP("leads", 1)}  # (as on_partitions_assigned sets it)
    seen: list[set[TP]] = []

    async def revoke(revoked: set[TP]) -> None:  # Faust's hand-over
        seen.append(consumer.assignment())

    consumer._on_partitions_revoked = revoke  # type: ignore[method-assign]
    await consumer.on_partitions_revoked({TP("leads", 0)})
    assert seen == [{TP("leads", 0)}]  # what Faust's hand-over waits for and commits
    assert consumer.assignment() == set() and consumer.owned == {TP("leads", 1)}


def test_resuming_partitions_adds_them_as_given(consumer: LeadConsumer) -> None:
    """Why agents.intake resumes Faust TPs: Faust adds what it is given to the partitions its
    fetch asks for, unconverted, and asserts they are TPs."""
    source = inspect.getsource(Consumer.resume_partitions)
    assert "update(tps)" in source
    assert "assert all(isinstance(x, TP)" in inspect.getsource(Consumer._get_active_partitions)


# -- the fetch wait (agents.faust_seam.fetch_wait) -------------------------------------------


def test_fausts_consumer_thread_starts_aiokafkas_consumer_in_on_start() -> None:
    """LeadConsumerThread.on_start installs the waits on the consumer Faust's just started."""
    source = inspect.getsource(AIOKafkaConsumerThread.on_start)
    assert "self._consumer = self._create_consumer(" in source and "self._consumer.start()" in source


def test_aiokafka_makes_its_fetcher_in_start_and_plans_each_fetch_through_it() -> None:
    """The fetch loop looks ``_get_actions_per_node`` up on every turn (so the instance's
    wrapper is used from the next turn on) and sends the fetch requests it returns first."""
    from aiokafka.consumer.fetcher import Fetcher

    assert "self._fetcher = Fetcher(" in inspect.getsource(AIOKafkaConsumer.start)
    loop = inspect.getsource(Fetcher._fetch_requests_routine)
    assert "= self._get_actions_per_node(assignment)" in loop
    assert "fetch_requests,\n" in loop.split("= self._get_actions_per_node")[0]  # the first item


def test_the_fetcher_routes_a_partition_through_select_read_replica() -> None:
    """The broker a partition's fetch goes to: the wait compares a request with those."""
    from aiokafka.consumer.fetcher import Fetcher

    assert "node_id = self._select_read_replica(tp)" in inspect.getsource(Fetcher._get_actions_per_node)


def test_a_fetch_request_sends_the_wait_it_holds() -> None:
    """``FetchRequest._max_wait_ms`` is what every version of the request sends, read when
    it is built (after the fetcher planned it), and ``topics`` lists what it asks for."""
    from aiokafka.protocol.fetch import FetchRequest

    request = FetchRequest(20, 1, 1000, 0, [("leads", [(0, 5, 100)])])
    request._max_wait_ms = 500
    assert "self._max_wait_ms" in inspect.getsource(FetchRequest.build)
    assert request.topics == [("leads", [(0, 5, 100)])]


def test_a_fetch_waits_long_only_when_it_asks_for_every_partition_of_its_broker() -> None:
    from aiokafka.structs import TopicPartition

    from agents.faust_seam.fetch_wait import FetchWait, asked_partitions

    wait = FetchWait(whole_ms=500, partial_ms=20)
    tps = [TopicPartition("leads", 0), TopicPartition("leads", 1), TopicPartition("retry", 0)]
    assert wait.for_fetch(tps, set(tps)) == 500
    assert wait.for_fetch(tps, tps[:2]) == 20  # retry-0's records are buffered, say
    assert wait.for_fetch([], []) == 500
    assert asked_partitions([("leads", [(1, 7, 100), (0, 3, 100)])]) == {tps[1], tps[0]}


async def test_the_fetcher_sends_each_broker_the_wait_its_request_earns() -> None:
    """A real aiokafka fetcher (no broker: its metadata is given, and it is asked to plan
    before its loop runs): two brokers, the fetch to the one with a partition left out
    (paused here; buffered or resetting ones are left out the same way) waits 20 ms."""
    from aiokafka.consumer.fetcher import Fetcher
    from aiokafka.protocol.metadata import MetadataResponse_v0
    from aiokafka.structs import TopicPartition

    from agents.faust_seam.fetch_wait import FetchWait, hold_whole_fetches

    kafka = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    partitions = {(0, 0): 0, (1, 0): 1, (2, 1): 2}  # (partition, leader) -> ...
    kafka._client.cluster.update_metadata(MetadataResponse_v0(
        [(0, "127.0.0.1", 1), (1, "127.0.0.1", 2)],
        [(0, "leads", [(0, p, leader, [leader], [leader]) for p, leader in partitions])],
    ))  # fmt: skip
    tps = [TopicPartition("leads", p) for p in range(3)]
    kafka.assign(tps)
    kafka._fetcher = Fetcher(kafka._client, kafka._subscription, fetch_max_wait_ms=20)
    try:
        for tp in tps:
            kafka.seek(tp, 0)
        hold_whole_fetches(kafka, FetchWait(whole_ms=500, partial_ms=20))
        assignment = kafka._subscription.subscription.assignment

        def waits() -> dict[int, int]:
            fetches = kafka._fetcher._get_actions_per_node(assignment)[0]
            return {node: request._max_wait_ms for node, request in fetches}

        assert waits() == {0: 500, 1: 500}
        kafka.pause(tps[1])
        assert waits() == {0: 20, 1: 500}
        kafka.resume(tps[1])
        assert waits() == {0: 500, 1: 500}
    finally:
        await kafka.stop()  # its fetcher's loop too


async def test_plain_aiohttp_routes_answer_before_fausts_own_index_at_the_root() -> None:
    """agents.faust_seam.web: the web console's ``/`` is ours, not Faust's production index
    (a blueprint Faust registers at ``/`` when its server starts)."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from agents.faust_seam import add_routes

    app = faust.App("seam-web", broker="kafka://127.0.0.1:1", web_enabled=True)

    async def ours(request: web.Request) -> web.Response:
        return web.Response(text="the console")

    add_routes(app, [web.get("/", ours)])
    app.web.init_server()  # what the worker's start does: Faust's blueprints come now
    assert any(route.resource.canonical == "/" and route.handler is not ours
               for route in app.web.web_app.router.routes())  # fmt: skip
    async with TestClient(TestServer(app.web.web_app)) as client, client.get("/") as response:
        assert await response.text() == "the console"
