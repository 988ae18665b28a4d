"""A consumer group member's assignment as the broker's DescribeGroups returns it (for
`leadstreams status`): the consumer protocol's topics and partitions (aiokafka's
``coordinator.protocol``, not a public module), and the worker's URL that Faust's assignor
puts in the user data (``faust/assignor/partition_assignor.py``: a zlib-compressed
``ClientMetadata`` JSON). tests/test_faust_seam.py encodes one with Faust's own classes."""

from __future__ import annotations

import zlib

import orjson
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment


def member_assignment(raw: bytes | None) -> tuple[dict[str, list[int]], str | None]:
    """The member's partitions by topic, and its Faust URL (None for another assignor's);
    nothing while the group rebalances (an empty assignment)."""
    if not raw:
        return {}, None
    assignment = ConsumerProtocolMemberAssignment.decode(raw)
    partitions = {topic: sorted(ps) for topic, ps in sorted(assignment.assignment)}
    return partitions, faust_url(assignment.user_data)


def faust_url(user_data: bytes | None) -> str | None:
    try:
        url = orjson.loads(zlib.decompress(user_data or b"")).get("url")
    except (zlib.error, orjson.JSONDecodeError, AttributeError):
        return None
    return url if isinstance(url, str) else None
