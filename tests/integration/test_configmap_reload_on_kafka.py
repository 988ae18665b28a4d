"""A ConfigMap of flows, updated as the kubelet updates a mounted ConfigMap, applies without
a restart (issue 19, deploy/k8s/examples/many-flows): one worker runs the directory, on the
real broker with a real aiohttp partner.

The directory is laid out and changed as the kubelet's AtomicWriter does it
(k8s_helpers.ConfigMapVolume: key symlinks into ``..data``, ``..data`` swapped to a new
timestamped directory in one rename). The flows are the overlay's own files on topics of
this test. One update changes web-leads, removes partner-leads and adds extra-leads; a
second makes web-leads invalid. Awaited on ``GET /flows``, then read read_committed (the
worker's default is exactly-once): the changed flow's leads carry the new text's
``flow_version``, the added flow runs, the removed one no longer does, the rejected text
leaves the running version in place, every lead is written once, and the worker process
is the same one throughout."""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from k8s_helpers import MANY_FLOWS, ConfigMapVolume
from partner_api import create_partner_app

from agents.kafka_io import Record, collect, publish
from examples.support.process import WorkerProcess, free_port, serve_app
from streams.loader import content_hash

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "examples" / "reliability"))  # (appended: its module names shadow nothing)

from group_run import leads  # noqa: E402
from many_flows import Worker, owning, reload_counts, running, until  # noqa: E402

pytestmark = pytest.mark.kafka

CHANGE_TIMEOUT = 60.0  # s for /flows to show a change (a start or stop waits for a rebalance)
OUTPUT_TIMEOUT = 30.0  # s for the outputs of a few leads to be readable
LEADS = 4  # per flow and phase: enough to see the version each ran, cheap to wait for


def overlay_flow(key: str, prefix: str, name: str | None = None) -> str:
    """The overlay's flow file ``key`` on this test's topics (and renamed, for a third flow)."""
    text = (MANY_FLOWS / "flows" / key).read_text()
    original = text.split("\nname: ", 1)[1].split("\n", 1)[0]
    topics = {"web-leads": "leads.web.", "partner-leads": "leads.partner."}[original]
    text = text.replace(topics, f"{prefix}.{name or original}.")
    return text.replace(f"\nname: {original}\n", f"\nname: {name}\n") if name else text


def topic(prefix: str, flow: str, kind: str) -> str:
    return f"{prefix}.{flow}.{kind}"


async def outputs(worker: Worker, prefix: str, flows: list[str], expected: set[str]) -> dict[str, list[str]]:
    """The flows' enriched and errors topics read read_committed from the beginning: lead id
    -> the flow_version of each of its outputs, once every expected lead has one."""

    def versions(records: list[Record]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for record in records:
            event: dict[str, Any] = orjson.loads(record.value)
            found.setdefault((record.key or b"").decode(), []).append(event["flow_version"])
        return found

    topics = [topic(prefix, flow, kind) for flow in flows for kind in ("enriched", "errors")]
    bootstrap = worker.process.bootstrap
    records = await collect(bootstrap, topics, lambda r: expected <= versions(r).keys(), OUTPUT_TIMEOUT)
    found = versions(records)
    missing = sorted(expected - found.keys())
    assert not missing, f"no output for {missing[:5]}; /flows: {worker.last}\n{worker.process.log_tail()}"
    return found


async def send(bootstrap: str, prefix: str, flow: str, tag: str) -> set[str]:
    batch = leads(LEADS, f"{prefix}-{flow}-{tag}")
    await publish(bootstrap, topic(prefix, flow, "incoming"), batch)
    return {key.decode() for key, _ in batch}


@pytest.mark.timeout(150)
async def test_a_configmap_update_changes_adds_and_removes_flows_without_a_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"cm-{uuid.uuid4().hex[:8]}"
    web_v1 = overlay_flow("web-leads.yaml", prefix)
    assert "timeout: 2s" in web_v1
    web_v2 = web_v1.replace("timeout: 2s", "timeout: 3s")
    web_invalid = web_v1.replace("timeout: 2s", "timeout: two seconds")
    partner = overlay_flow("partner-leads.yaml", prefix)
    extra = overlay_flow("web-leads.yaml", prefix, name="extra-leads")
    volume = ConfigMapVolume(tmp_path / "flows")
    volume.write({"web-leads.yaml": web_v1, "partner-leads.yaml": partner})

    api_key = f"cm-key-{uuid.uuid4().hex}"
    runner, partner_url = await serve_app(create_partner_app(api_key))
    env = {"INTERNAL_API_KEY": api_key, "PARTNER_URL": partner_url}
    args = ["--group-id", prefix, "--allow-loopback", "--loglevel", "info"]
    process = WorkerProcess(volume.target, kafka_bootstrap, free_port(), tmp_path / "worker.log", env, args)
    worker = Worker(process)
    try:
        process.start()
        assert process.process is not None
        pid = process.process.pid
        for flow in ("web-leads", "partner-leads"):
            await until(lambda f=flow: worker.showing(f, owning), CHANGE_TIMEOUT, f"{flow} to start")
        shown = worker.flow("web-leads") or {}
        assert shown["file"] == str(volume.target / "web-leads.yaml")
        assert shown["version"] == content_hash(web_v1)
        before = {
            flow: await send(kafka_bootstrap, prefix, flow, "v1") for flow in ("web-leads", "partner-leads")
        }
        await outputs(worker, prefix, list(before), before["web-leads"] | before["partner-leads"])

        # kubectl apply: web-leads changed, partner-leads removed, extra-leads added.
        updated = time.monotonic()
        volume.write({"web-leads.yaml": web_v2, "extra-leads.yaml": extra})
        await until(lambda: worker.showing("web-leads", running(content_hash(web_v2))), CHANGE_TIMEOUT,
                    "web-leads' new version")  # fmt: skip
        await until(lambda: worker.showing("partner-leads", lambda f: f is None), CHANGE_TIMEOUT,
                    "partner-leads to stop")  # fmt: skip
        await until(lambda: worker.showing("extra-leads", owning), CHANGE_TIMEOUT, "extra-leads to start")
        applied_s = time.monotonic() - updated
        after = {flow: await send(kafka_bootstrap, prefix, flow, "v2")
                 for flow in ("web-leads", "extra-leads", "partner-leads")}  # fmt: skip

        # kubectl apply of a text the worker rejects: the running version stays.
        updated = time.monotonic()
        volume.write({"web-leads.yaml": web_invalid, "extra-leads.yaml": extra})
        rejected = lambda f: f is not None and f["version"] == content_hash(web_v2) and bool(f["problems"])  # noqa: E731
        await until(lambda: worker.showing("web-leads", rejected), CHANGE_TIMEOUT, "web-leads' rejection")
        rejected_s = time.monotonic() - updated
        line = web_invalid.splitlines().index("    timeout: two seconds") + 1
        problems = (worker.flow("web-leads") or {})["problems"]
        assert any(p.startswith(f"{volume.target / 'web-leads.yaml'}:{line}:") for p in problems), problems
        still = await send(kafka_bootstrap, prefix, "web-leads", "rejected")

        found = await outputs(worker, prefix, list(after), after["web-leads"] | after["extra-leads"] | still)
        metrics = await worker.get("/metrics")
        assert process.alive and process.process.pid == pid, "the worker restarted"
    finally:
        exit_code = process.stop()
        await runner.cleanup()
    by_lead = Counter({lead: len(versions) for lead, versions in found.items()})
    assert max(by_lead.values()) == 1, f"written twice: {[lead for lead, n in by_lead.items() if n > 1][:5]}"
    assert {found[lead][0] for lead in before["web-leads"]} == {content_hash(web_v1)}
    assert {found[lead][0] for lead in after["web-leads"] | still} == {content_hash(web_v2)}
    assert {found[lead][0] for lead in after["extra-leads"]} == {content_hash(extra)}
    # The removed flow's leads wait on its topic: nothing of it ran after the update.
    assert not after["partner-leads"] & found.keys()
    assert {found[lead][0] for lead in before["partner-leads"]} == {content_hash(partner)}
    reloads = reload_counts(metrics)
    print(f"configmap_reload: update_on_flows_s={applied_s:.1f} rejection_on_flows_s={rejected_s:.1f} "
          f"leads={len(found)} reloads={reloads} worker_exit={exit_code}")  # fmt: skip
    assert reloads.get("applied") == 1 and reloads.get("rejected") == 1, reloads
    assert reloads.get("started") == 1 and reloads.get("stopped") == 1, reloads
    assert exit_code == 0, process.log_tail()
