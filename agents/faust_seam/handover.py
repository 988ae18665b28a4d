"""The moment Faust starts handing partitions over (a rebalance's revocation, or a stop).

Faust offers no signal for it: ``on_partitions_revoked`` is sent only after every taken
message was acked, too late for a lead waiting in a batch window. But both paths
(``App._on_partitions_revoked`` and ``App._stop_consumer``) suspend the app's flow
control and then clear the queues it manages, before they wait for the acks; so a
"queue" managed by the flow control hears that moment. ``resume`` clears them as well,
with flow active again: that is not a hand-over. tests/test_faust_seam.py checks the order.
"""

from __future__ import annotations

from collections.abc import Callable

import faust


class HandoverHook:
    """Calls ``callback`` (on the event loop) when a hand-over starts. Faust keeps its
    managed queues weakly: the caller keeps this object."""

    def __init__(self, app: faust.App, callback: Callable[[], None]) -> None:
        self.flow_control = app.flow_control
        self.callback = callback
        self.flow_control.manage_queue(self)  # type: ignore[arg-type]  # only clear() is called

    def clear(self) -> None:
        if not self.flow_control.is_active():  # suspended: handing over, not resuming
            self.callback()
