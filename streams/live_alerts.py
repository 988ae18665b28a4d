"""The alert conditions of deploy/prometheus/rules/alerts.yml, for the web console: the same
thresholds (tests/test_live_stats.py reads the file and compares), evaluated on the live
window of streams.live_stats (the rules' ``for:`` durations are not waited for)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WINDOW_MIN = 5  # the rules' [5m]

SLOW_P95_S = 5.0  # LeadstreamsSlowPartner: p95 per flow+integration >
ERROR_RATIO = 0.05  # LeadstreamsHighErrorRate: error ratio per flow+integration >
AUTH_FAILURES = 3.0  # LeadstreamsAuthFailures: increase per flow+integration >
CONSUMER_LAG = 1000.0  # LeadstreamsConsumerLag: sum per flow >
CIRCUIT_OPEN = 2.0  # LeadstreamsCircuitOpen: state ==

COND_SLOW = f"p95 > {SLOW_P95_S:g} s"
COND_ERRORS = f"errors > {ERROR_RATIO * 100:g} %"
COND_AUTH = f"auth failures > {AUTH_FAILURES:g} in {WINDOW_MIN} min"
COND_CIRCUIT = "circuit open"
COND_LAG = f"lag > {CONSUMER_LAG:g}"
_OVER = f" over {WINDOW_MIN} min"


@dataclass
class IntegrationWindow:
    """One flow's integration over the window: what its alerts read."""

    requests: float = 0.0
    errors: float = 0.0
    p95_s: float | None = None
    auth_failures: float = 0.0


def holding(
    windows: Mapping[tuple[str, str], IntegrationWindow],
    circuit: Mapping[tuple[str, str], float],
    lag: Mapping[str, float],
) -> list[dict[str, Any]]:
    """The alerts whose condition holds, sorted by flow, integration, alert; each with a
    ``short`` condition (a step's badge) beside the long one."""
    alerts: list[dict[str, Any]] = []

    def fire(alert: str, flow: str, integration: str | None, short: str, long: str, value: str) -> None:
        alerts.append({"alert": alert, "flow": flow, "integration": integration, "condition": long,
                       "value": value, "short": short})  # fmt: skip

    for (flow, integration), window in windows.items():
        if window.requests:  # (no traffic: NaN in Prometheus, never fires)
            if window.p95_s is not None and window.p95_s > SLOW_P95_S:
                fire("LeadstreamsSlowPartner", flow, integration, COND_SLOW, COND_SLOW + _OVER,
                     f"{window.p95_s:.3g} s")  # fmt: skip
            ratio = window.errors / window.requests
            if ratio > ERROR_RATIO:
                fire("LeadstreamsHighErrorRate", flow, integration, COND_ERRORS, COND_ERRORS + _OVER,
                     f"{ratio * 100:.3g} %")  # fmt: skip
        if window.auth_failures > AUTH_FAILURES:
            count = f"{window.auth_failures:g}"
            fire("LeadstreamsAuthFailures", flow, integration, COND_AUTH, COND_AUTH, count)
    for (flow, integration), state in circuit.items():
        if state == CIRCUIT_OPEN:
            fire("LeadstreamsCircuitOpen", flow, integration, COND_CIRCUIT, COND_CIRCUIT, "open")
    for flow, behind in lag.items():
        if behind > CONSUMER_LAG:
            fire("LeadstreamsConsumerLag", flow, None, COND_LAG, COND_LAG, f"{behind:g}")
    alerts.sort(key=lambda a: (a["flow"], a["integration"] or "", a["alert"]))
    return alerts
