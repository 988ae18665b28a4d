"""Kafka's default partitioner (the Java client's): murmur2 of the key, seed 0x9747B28C,
made positive, modulo the partition count. The same choice as aiokafka's
``DefaultPartitioner``, whose pure-Python murmur2 cost ~4 % of the worker's CPU at full
speed (make bench, P1); ``murmurhash2`` computes the same hash in C."""

from __future__ import annotations

import random
from collections.abc import Sequence

from murmurhash2 import murmurhash2

KAFKA_SEED = 0x9747B28C


def partition_for(key: bytes | None, partitions: Sequence[int]) -> int:
    """One of ``partitions`` (sorted by id, as the cluster metadata lists them): the key's,
    or any for a record without a key."""
    if key is None:
        return random.choice(partitions)
    return partitions[(murmurhash2(key, KAFKA_SEED) & 0x7FFFFFFF) % len(partitions)]
