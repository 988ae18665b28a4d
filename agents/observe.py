"""Metrics only the Kafka layer can see: end-to-end latency and consumer lag."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence

import faust
from faust.types import Message

from streams.metrics import Metrics
from streams.pipeline import Output


class LeadObserver:
    """What the lead loop and the retry agents report: how many leads a fetch handed
    over, and each written lead's latency and its partition's lag."""

    def __init__(
        self,
        app: faust.App,
        metrics: Metrics,
        flow: str,
        topic_of: Callable[[Output], str],
        leads: bool = True,  # False for notifications: only their topics' lag is reported
    ) -> None:
        self.app = app
        self.leads = leads
        self.metrics = metrics
        self.flow = flow
        self.topic_of = topic_of

    def fetched(self, count: int) -> None:
        if self.leads:
            self.metrics.batch_size.labels(self.flow, "fetch").observe(count)

    def written(self, messages: Sequence[Message], outputs: Sequence[Output]) -> None:
        """Called once Kafka acknowledged these input messages' outputs."""
        now = time.time()
        last: dict[faust.types.TP, int] = {}
        for message, output in zip(messages, outputs, strict=True):
            if self.leads and message.timestamp:  # the input's Kafka timestamp (producer or broker time)
                latency = max(0.0, now - message.timestamp)
                self.metrics.end_to_end.labels(self.flow, self.topic_of(output)).observe(latency)
            last[message.tp] = max(last.get(message.tp, -1), message.offset)
        for tp, offset in last.items():
            with contextlib.suppress(Exception):  # no highwater yet: no lag to report
                highwater = self.app.consumer.highwater(tp)
                if highwater is not None:
                    lag = max(0, highwater - offset - 1)
                    self.metrics.consumer_lag.labels(self.flow, tp.topic, str(tp.partition)).set(lag)
