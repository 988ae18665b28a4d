"""Agents started and stopped while the worker runs (a flow added or removed live).

Faust starts the agents an app has when it starts and subscribes to the topics they iterate;
one added later is started here, and one removed is stopped, forgotten, and its topics leave
the subscription. Faust's conductor coalesces subscription changes for 45 s before it
resubscribes (its guard against agents restarting one by one); a flow added live should not
wait that long, so the worker's conductor waits ``RESUBSCRIBE_AFTER``.

Private names used: the conductor's ``_resubscribe_sleep_lock_seconds``, ``_topics`` (read),
``_flag_changes``, the agent manager's ``update_topic_index``/``data``, the consumer's
``_thread._consumer`` (see tests/test_faust_seam.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import faust

RESUBSCRIBE_AFTER = 1.0  # seconds: changes within it (a directory's files changed together) coalesce


def resubscribe_quickly(app: faust.App, after: float = RESUBSCRIBE_AFTER) -> None:
    app.topics._resubscribe_sleep_lock_seconds = after


async def start_live(app: faust.App, agent: faust.types.AgentT) -> None:
    """Start an agent made after the app started (one made before starts with the app)."""
    app.agents.update_topic_index()
    await agent.maybe_start()


async def stop_live(app: faust.App, agent: faust.types.AgentT) -> None:
    """Stop an agent (its body's ``finally`` runs: it drains) and forget it."""
    await agent.stop()
    app.agents.data.pop(agent.name, None)


def unsubscribe(app: faust.App, topics: Iterable[str]) -> None:
    """Leave ``topics``: every channel of the conductor reading one of them is discarded (the
    agents' streams subscribe clones of their channels, not the channel objects themselves).
    The conductor then resubscribes, and the group rebalances."""
    names = set(topics)
    for channel in list(app.topics._topics):
        if names.intersection(channel.topics):
            app.topics.discard(channel)


def subscribed(app: faust.App) -> set[str]:
    """The topics the consumer subscribes to now (aiokafka's, once Faust's conductor passed
    them on; empty before the consumer started)."""
    thread = app.consumer._thread
    consumer = getattr(thread, "_consumer", None)
    return set(consumer.subscription()) if consumer is not None else set()


def resubscribe(app: faust.App) -> None:
    """Ask the conductor to pass the subscription on again: it drops a change that comes while
    the group rebalances (it waits for the next one)."""
    app.topics._flag_changes()
