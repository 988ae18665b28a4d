"""`status FLOW` on the real broker with a real worker: the member and its partitions,
committed = end offsets (lag 0) once the leads are processed, the last output of each
partition; with the worker stopped and more leads published, the lag. And a group that
never ran: no members, and the flow's topics are not created by asking."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from click.testing import CliRunner
from worker_harness import DEMO_FLOW, WorkerRun

from agents.cli_status import status
from agents.group_status import GroupStatus, group_status
from agents.kafka_connection import KafkaConnection
from agents.kafka_io import admin_client, publish

pytestmark = pytest.mark.kafka
T = TypeVar("T")


async def until(ask: Callable[[], Awaitable[T]], holds: Callable[[T], bool], timeout: float, what: str) -> T:
    """Ask again until the answer holds; TimeoutError naming ``what`` (and the last answer)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await ask()
        if holds(answer):
            return answer
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}: {answer}")
        await asyncio.sleep(0.2)


async def run_status(
    flow: Path, connect: str | Path, env: Mapping[str, str | None], *args: str
) -> tuple[int, str]:
    """The command in a thread (it runs its own event loop), as `leadstreams status`, on a
    bootstrap address or a client properties file."""
    runner = CliRunner()
    where = ["--kafka-config", str(connect)] if isinstance(connect, Path) else ["--bootstrap", connect]
    command = [str(flow), *where, *args]
    result = await asyncio.to_thread(runner.invoke, status, command, env=env)
    return result.exit_code, result.output


def leads(ids: list[str]) -> list[tuple[bytes | None, bytes]]:
    """Valid leads (success) and leads the partner refuses (errors topic), keyed by id."""
    email = {"ok": "a@example.com", "bad": "not-an-email"}
    return [
        (i.encode(), orjson.dumps({"id": i, "email": email[i.split("-")[0]], "source": {"id": "web"}}))
        for i in ids
    ]


async def test_status_shows_the_member_partitions_offsets_lag_and_last_outputs(
    worker: WorkerRun, kafka_bootstrap: str
) -> None:
    group, kafka = f"it-{worker.suffix}", KafkaConnection.of(kafka_bootstrap)
    incoming, enriched, errors = (worker.topics[k] for k in ("incoming", "enriched", "errors"))

    async def ask() -> GroupStatus:
        return await group_status(kafka, group, [incoming], [enriched, errors])

    # Published only once the worker owns its topics (else the broker makes them with 1 partition).
    await until(ask, lambda s: any(m.partitions.get(incoming) for m in s.members), 60, "the worker to join")
    ids = [f"ok-{n}" for n in range(6)] + [f"bad-{n}" for n in range(3)]
    await publish(kafka_bootstrap, incoming, leads(ids))
    await until(ask, lambda s: sum(p.end for p in s.positions) == 9 and s.lag == 0, 60, "lag 0")

    env = {"INTERNAL_API_KEY": worker.api_key, "PARTNER_URL": worker.partner_url}
    code, output = await run_status(worker.flow_file(), kafka_bootstrap, env, "--group-id", group, "--json")
    assert code == 0, output
    shown = orjson.loads(output)
    assert (shown["flow"], shown["group"], shown["state"], shown["lag"]) == (
        "lead-validation",
        group,
        "Stable",
        0,
    )
    (member,) = shown["members"]
    assert member["partitions"][incoming] == [0, 1, 2]
    assert member["url"] == f"http://leadstreams.invalid/instance/{group}-0"  # its --instance-id
    assert [(p["topic"], p["partition"]) for p in shown["partitions"]] == [(incoming, n) for n in range(3)]
    for row in shown["partitions"]:
        assert (
            row["committed"] == row["end"]
            and row["lag"] == 0
            and row["member"] == member["name"] == f"{group}-0"
        ), row
    outputs = [o for o in shown["outputs"] if o["offset"] is not None]
    assert {o["topic"] for o in outputs} == {enriched, errors}
    assert sum(o["end"] for o in shown["outputs"]) >= 9  # 9 outputs (and transaction markers)
    for output in outputs:
        assert output["offset"] < output["end"]
        assert output["outcome"] == ("success" if output["topic"] == enriched else "error"), output
        assert output["id"] in ids and abs(output["timestamp_ms"] / 1000 - time.time()) < 120

    worker.stop()
    await publish(kafka_bootstrap, incoming, leads(["ok-late-1", "ok-late-2", "bad-late-3"]))
    code, output = await run_status(worker.flow_file(), kafka_bootstrap, env, "--group-id", group)
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].startswith(f"group {group}: ") and lines[0].endswith(", lag 3"), output
    rows = [line.split() for line in lines if line.startswith(incoming)]
    assert sum(int(row[4]) for row in rows) == 3 and len(rows) == 3, (
        output
    )  # topic partition committed end lag
    assert any(line.split()[:1] == ["last"] for line in lines), output  # the outputs' table


async def test_a_group_that_never_ran_has_no_members_and_nothing_is_created(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    flow = tmp_path / "flow.yaml"
    flow.write_text(DEMO_FLOW.read_text().replace("leads.", f"never-{suffix}."))
    env: dict[str, str | None] = {"INTERNAL_API_KEY": None}  # (read for its topics without it)
    code, output = await run_status(flow, kafka_bootstrap, env, "--json")
    assert code == 0, output
    shown: dict[str, Any] = orjson.loads(output)
    assert (shown["group"], shown["state"], shown["members"]) == ("leadstreams-lead-validation", "Dead", [])
    names = [f"never-{suffix}.{kind}" for kind in ("incoming", "enriched", "errors")]
    assert shown["missing_topics"] == names
    code, output = await run_status(flow, kafka_bootstrap, env, "--group-id", f"never-{suffix}")
    assert (
        code == 0
        and output.splitlines()[0] == f"group never-{suffix}: Dead, no members: no worker runs, lag 0"
    )
    # (describe_topics made the broker create them in ~30 ms: the second status gave it far longer)
    async with admin_client(kafka_bootstrap) as admin:
        assert not set(names) & set(await admin.list_topics())


async def test_status_over_sasl_ssl(tmp_path: Path) -> None:
    """The worker's connection options (here SASL_SSL, SCRAM-SHA-512, mutual TLS): the
    admin requests (group, offsets) and the consumer (ends, last records) use them."""
    directory = os.environ.get("LEADSTREAMS_SECURED_CONFIG_DIR")
    if not directory:
        pytest.fail("LEADSTREAMS_SECURED_CONFIG_DIR is not set: run through `make test` (with-kafka.sh)")
    flow = tmp_path / "flow.yaml"
    flow.write_text(DEMO_FLOW.read_text().replace("leads.", f"sec-{uuid.uuid4().hex[:8]}."))
    config = Path(directory) / "client-sasl-ssl.properties"
    unset: dict[str, str | None] = {name: None for name in os.environ if name.startswith("LEADSTREAMS_")}
    code, output = await run_status(flow, config, {**unset, "INTERNAL_API_KEY": "k" * 8}, "--json")
    assert code == 0, output
    assert orjson.loads(output)["state"] == "Dead"
