"""One worker group of `make reliability` on its own topics: the sizes of a run, the
workers' arguments, the leads and fuzzed inputs it publishes, and the wait for the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faulty_partner import Faults

from agents.kafka_connection import KafkaConnection
from agents.kafka_io import Kafka, ensure_topics
from examples.support.process import WorkerProcess, free_port
from streams.delayed import tier_topics
from streams.loader import load_flow

FLOW = Path(__file__).resolve().parent / "flow.yaml"
SLOW_FLOW = Path(__file__).resolve().parent / "slow_flow.yaml"
PARTITIONS = 4
MAX_LEAD = 256 * 1024  # below Kafka's default 1 MB message limit, so oversized leads can be sent


@dataclass(frozen=True)
class Sizes:
    leads: int = 20_000
    kills: int = 3
    fuzz: int = 10_000
    shared_leads: int = 3_000
    rate: int = 400  # partner limit, requests/s, for the whole group
    shared_rate: int = 200
    slow_leads: int = 15_000
    slow_kills: int = 3
    slow_rate: int = 200
    slow_share: float = 0.04  # leads answered after 1-20 s
    recovery_bound: float = 10.0  # s from a worker's restart to its first output
    eos_leads: int = 20_000  # the exactly_once scenario (issue 18)
    eos_kills: int = 3
    # Under exactly-once the first output a read_committed reader sees after a restart waits for
    # its partition's head lead (partner faults: up to 2 s of inline retries; outputs are released
    # in input order) and for a commit (1 s): measured 7.6-10.1 s against at-least-once's ~4.5 s.
    eos_recovery_bound: float = 15.0
    deadline: float = 900.0
    loaded_leads: int = 8_000  # per worker count (1, then 2), with `hogs` busy processes beside
    loaded_rate: int = 400
    hogs: int = 2

    @classmethod
    def small(cls) -> Sizes:
        return cls(
            leads=1_500, kills=1, fuzz=1_000, shared_leads=600, rate=300, shared_rate=150,
            slow_leads=2_000, slow_kills=1, slow_rate=100, recovery_bound=30, deadline=300,
            eos_leads=1_500, eos_kills=1, eos_recovery_bound=30,
            loaded_leads=1_500, loaded_rate=300,
        )  # fmt: skip


@dataclass
class Run:
    """One worker group on its own topics, against one partner."""

    bootstrap: str
    workdir: Path
    rate: int
    faults: Faults
    workers: int = 1
    verbose: bool = False
    flow: Path = FLOW
    loglevel: str = "warning"
    prefix: str = field(default_factory=lambda: f"rel-{uuid.uuid4().hex[:8]}")
    api_key: str = field(default_factory=lambda: f"rel-secret-{uuid.uuid4().hex}")
    processes: list[WorkerProcess] = field(default_factory=list)
    kafka_config: Path | None = None  # a client properties file: the run's Kafka is a secured listener
    guarantee: str | None = None  # the workers' --guarantee (None: the worker's default)

    @functools.cached_property
    def kafka(self) -> Kafka:
        """How the driver and the workers reach Kafka."""
        if self.kafka_config is None:
            return self.bootstrap
        return KafkaConnection.resolve({"bootstrap": self.bootstrap}, str(self.kafka_config), environ={})

    @functools.cached_property
    def topics(self) -> list[str]:
        """Input, enriched, errors, then the retry tiers (the flow file is parsed once)."""
        flow = load_flow(self.flow, self.env("http://127.0.0.1:1"))
        retry, delayed = flow.topics.retry, flow.delayed_retry
        tiers = tier_topics(retry, delayed).values() if retry and delayed else []
        return [flow.topics.input, flow.topics.enriched, flow.topics.errors, *tiers]

    @property
    def consumed(self) -> set[str]:
        """The topics the group reads: the input and the retry tiers."""
        return {self.topics[0], *self.topics[3:]}

    def env(self, partner_url: str) -> dict[str, str]:
        return {"PARTNER_URL": partner_url, "PARTNER_API_KEY": self.api_key, "PARTNER_ALLOW_LOOPBACK": "true",
                "RELIABILITY_TOPIC": self.prefix, "PARTNER_RATE_LIMIT": f"{self.rate}/s"}  # fmt: skip

    async def start(self, partner_url: str) -> None:
        await ensure_topics(self.kafka, self.topics, PARTITIONS)
        secured = ["--kafka-config", str(self.kafka_config)] if self.kafka_config else []
        for index in range(self.workers):
            worker = WorkerProcess(
                self.flow, self.bootstrap, free_port(), self.workdir / f"{self.prefix}-worker{index}.log",
                env=self.env(partner_url),
                args=worker_args(self.prefix, index, self.verbose, self.loglevel, self.guarantee) + secured,
            )  # fmt: skip
            worker.start()
            self.processes.append(worker)

    def stop(self) -> None:
        for worker in self.processes:
            worker.stop()


def worker_args(
    group: str, index: int, verbose: bool = False, loglevel: str = "warning", guarantee: str | None = None
) -> list[str]:
    """Static membership: worker ``index`` keeps its instance id across restarts (under
    exactly-once that id also names its transactional producer, so a restart aborts the
    killed worker's open transaction at once instead of after the transaction timeout)."""
    args = ["--group-id", group, "--instance-id", f"{group}-w{index}", "--partitions", str(PARTITIONS),
            "--max-lead-bytes", str(MAX_LEAD), "--loglevel", loglevel]  # fmt: skip
    args += ["--guarantee", guarantee] if guarantee else []
    return args + (["--loglevel", "debug", "--log-bodies"] if verbose else [])


def leads(count: int, tag: str) -> list[tuple[bytes, bytes]]:
    rng = random.Random(tag)
    out = []
    for index in range(count):
        lead_id = f"{tag}-{index}"
        domain = "spam.example" if rng.random() < 0.1 else "mail.example"
        lead = {"id": lead_id, "email": f"u{index}@{domain}", "phone": f"555-{rng.randint(1000, 9999)}"}
        out.append((lead_id.encode(), orjson.dumps(lead)))
    return out


def fuzzed_inputs(count: int, seed: int = 5) -> list[bytes]:
    """Messages that are never usable leads, of every kind."""
    rng = random.Random(seed)
    makers = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))) + b"\xff",  # binary, not UTF-8
        lambda: b'{"email": "x@y.z", "phone": ' + str(rng.random()).encode(),  # truncated JSON
        lambda: orjson.dumps([rng.random() for _ in range(rng.randint(0, 5))]),  # array
        lambda: orjson.dumps("lead " * rng.randint(1, 5)),  # string
        lambda: rng.choice([b"null", b"true", b"42", b"", b" ", b"{", b"}"]),
        lambda: b"[" * 40 + b"]" * 40,  # deep array
        lambda: b'{"a":' * 40 + b"1" + b"}" * 40,  # object nested past the depth limit
        lambda: orjson.dumps({"id": {"not": "a string"}, "email": "x@y.z"}),  # unusable id
    ]
    oversized = b'{"id": "big", "pad": "' + b"x" * (MAX_LEAD + 1) + b'"}'  # over the worker's limit
    # One in 97 is oversized (a few dozen MB in all), the rest rotate through the kinds above.
    return [makers[index % len(makers)]() if index % 97 else oversized for index in range(count)]


async def until_group_has(
    bootstrap: str,
    group: str,
    members: int,
    timeout: float = 90,
    processes: list[WorkerProcess] | None = None,
) -> None:
    """Until the group is stable with ``members``; a worker that exits meanwhile fails it at once."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for worker in processes or []:
                if not worker.alive:
                    raise RuntimeError(f"a worker exited before joining {group}:\n{worker.log_tail()}")
            with contextlib.suppress(KafkaError):  # e.g. no coordinator yet on a fresh broker
                described = await admin.describe_consumer_groups([group])
                found = described[0].groups[0] if described and described[0].groups else None
                if found and found[2] == "Stable" and len(found[5]) >= members:
                    return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"group {group} did not reach {members} members")
    finally:
        await admin.close()
