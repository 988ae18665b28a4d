"""What `leadstreams worker` passes to the app: one frozen value, its defaults the CLI's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.health import BLOCKED_AFTER
from agents.kafka_connection import KafkaConnection
from agents.web_console.token import ConsoleToken
from streams.events import MAX_LEAD_BYTES, MAX_OUTPUT_BYTES

EXACTLY_ONCE = "exactly-once"
AT_LEAST_ONCE = "at-least-once"
GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE)


@dataclass(frozen=True)
class WorkerOptions:
    kafka: KafkaConnection | str  # a bare string: a PLAINTEXT bootstrap address
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    fetch_size: int = 500  # leads handed to the lead loop per fetch; a retry tier's take of events
    max_in_flight: int = 2000  # leads taken and not yet written (held by slow calls or batch windows)
    take_within: float = 0.005  # seconds a retry tier's take of events waits to fill
    shutdown_grace: float = 30.0  # seconds to finish the leads in flight on shutdown
    blocked_after: float = BLOCKED_AFTER  # seconds the event loop may not answer before /healthz fails
    group_id: str | None = None
    data_dir: str | None = None
    # Each input topic's partitions (made or described at the start): a worker's share of a
    # flow's rate limits is the share of its input partitions it owns.
    input_partitions: Mapping[str, int] = field(default_factory=dict)
    max_lead_bytes: int = MAX_LEAD_BYTES
    max_output_bytes: int = MAX_OUTPUT_BYTES  # larger outputs go to errors as a short event
    instance_id: str | None = None  # static group membership: a restart takes its partitions back at once
    session_timeout: float = 45.0  # seconds without heartbeats before the group drops a member
    replication_factor: int = 1  # of the topics Faust creates itself (its leader topic, changelogs)
    guarantee: str = EXACTLY_ONCE  # or AT_LEAST_ONCE (agents.transactions)
    commit_interval: float = 1.0  # seconds between commits (a transaction each, under exactly-once)
    commit_count: int = 5000  # ... or sooner, after this many inputs finished
    # The topics of a flow added live are made as the start made the others':
    partitions: int = 4
    topic_configs: Mapping[str, str] = field(default_factory=dict)
    create_topics: bool = True
    watch: bool = False  # reload when a flow file changes (the CLI's default: on)
    console: bool = False  # the web console's test console (it sends real requests): --console
    console_token: ConsoleToken | None = None  # None: from LEADSTREAMS_CONSOLE_TOKEN, or a new one

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == EXACTLY_ONCE
