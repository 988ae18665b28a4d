"""Prometheus' ``histogram_quantile`` on one set of classic buckets, in Python.

The console shows the same percentiles as the recording rules of
deploy/prometheus/rules/recording.yml, so this follows Prometheus' ``BucketQuantile``
(promql/quantile.go) step by step: buckets with the same bound are merged, counts are
forced monotonic (a bucket smaller than the one below it takes that one's count; deltas
within 1e-12 relative are ignored, as Prometheus does for the rounding of rate()), the
rank ``q * total`` is looked up in the cumulative counts and interpolated linearly inside
its bucket from the previous bound (0 below the first bound when that bound is > 0). A
rank in the +Inf bucket answers the last finite bound.

Hand-written: no maintained Python package implements PromQL's bucket interpolation, and
the function is 40 lines.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

# Prometheus' smallDeltaTolerance: counts this close (relatively) are taken as equal.
SMALL_DELTA_TOLERANCE = 1e-12
_MIN_NORMAL = sys.float_info.min  # Go's math.Float64frombits(0x0010000000000000)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile of ``buckets`` = ``(upper bound le, cumulative count)`` pairs.

    None wherever Prometheus answers NaN: no observations, no +Inf bucket, fewer than two
    buckets, q is NaN, or q == 0 with an empty first bucket. q < 0 -> -inf, q > 1 -> +inf."""
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged = _coalesce(sorted(buckets, key=lambda bucket: bucket[0]))
    if not merged or merged[-1][0] != math.inf or len(merged) < 2:
        return None
    _ensure_monotonic(merged)
    total = merged[-1][1]
    if total == 0:
        return None
    rank = q * total
    index = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if index == len(merged) - 1:
        return merged[-2][0]
    if index == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[index][0], merged[index][1]
    if index > 0:
        start = merged[index - 1][0]
        count -= merged[index - 1][1]
        rank -= merged[index - 1][1]
    if count == 0:  # only for rank 0 in an empty first bucket: Go's 0/0 = NaN
        return None
    return start + (end - start) * (rank / count)


def _coalesce(buckets: list[tuple[float, float]]) -> list[list[float]]:
    merged: list[list[float]] = []
    for bound, count in buckets:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    return merged


def _ensure_monotonic(buckets: list[list[float]]) -> None:
    previous = buckets[0][1]
    for bucket in buckets[1:]:
        current = bucket[1]
        if current == previous:
            continue
        if _almost_equal(previous, current) or current < previous:
            bucket[1] = previous
            continue
        previous = current


def _almost_equal(a: float, b: float) -> bool:
    """Go's almost.Equal as Prometheus uses it."""
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < SMALL_DELTA_TOLERANCE * _MIN_NORMAL
    return diff / min(abs_sum, sys.float_info.max) < SMALL_DELTA_TOLERANCE
