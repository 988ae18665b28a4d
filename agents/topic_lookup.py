"""Which topics exist, asked without creating them. A metadata request that names a
topic lets a broker with auto.create.topics.enable (the local one, Kafka's default)
create it with num.partitions (1 here): aiokafka's ``describe_topics`` and a producer's
first send both name it. The list of all topics names none."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient


async def existing_partitions(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """The partition count of each of ``names`` that exists (topics the principal may not
    Describe are not listed: they look missing)."""
    listed = set(await admin.list_topics())
    present = [name for name in dict.fromkeys(names) if name in listed]
    if not present:
        return {}
    described = await admin.describe_topics(present)  # named, but they exist: nothing is created
    return {
        entry["topic"]: len(entry["partitions"])
        for entry in described
        if entry.get("topic") in listed and not entry.get("error_code") and entry.get("partitions")
    }
