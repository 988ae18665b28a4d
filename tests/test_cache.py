"""The last-good-result cache: changelog encoding, expiry and bounds (the rule of
streams.cache_index, through InMemoryCache), the entry gauge, freshness and the request key."""

from __future__ import annotations

import base64
import tracemalloc

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streams.cache import (
    CacheDecodeError,
    CachedResponse,
    InMemoryCache,
    ResponseCache,
    fresh,
    request_fingerprint,
    stored_at_of,
)
from streams.cache_index import CacheLimit, CachePolicy
from streams.http_types import HttpResult
from streams.metrics import CacheMetrics, Metrics

responses = st.builds(
    CachedResponse,
    status=st.integers(min_value=100, max_value=599),
    headers=st.dictionaries(st.text(), st.text()),
    body=st.binary(),
    stored_at=st.floats(allow_nan=False, allow_infinity=False),
)


@given(responses)
def test_changelog_encoding_round_trips(response: CachedResponse) -> None:
    assert CachedResponse.from_bytes(response.to_bytes()) == response


def test_encoding_is_json_with_a_base64_body() -> None:
    encoded = CachedResponse(
        200, {"content-type": "application/json"}, b"\xff\x00{}", 1700000000.5
    ).to_bytes()
    assert orjson.loads(encoded) == {
        "v": 1,
        "status": 200,
        "headers": {"content-type": "application/json"},
        "body": base64.b64encode(b"\xff\x00{}").decode(),
        "stored_at": 1700000000.5,
    }


def test_an_unstorable_timestamp_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="finite"):
        CachedResponse(200, {}, b"", float("nan")).to_bytes()


@pytest.mark.parametrize(
    "record",
    [
        b"not json",
        b"[]",
        b'{"v": 2, "status": 200, "headers": {}, "body": "", "stored_at": 1}',
        b'{"v": 1, "status": "200", "headers": {}, "body": "", "stored_at": 1}',
        b'{"v": 1, "status": 200, "headers": {"a": 1}, "body": "", "stored_at": 1}',
        b'{"v": 1, "status": 200, "headers": {}, "body": "***", "stored_at": 1}',
        b'{"v": 1, "status": 200, "headers": {}, "body": "", "stored_at": true}',
        b'{"v": 1, "status": 200, "headers": {}, "stored_at": 1}',
    ],
)
def test_a_corrupt_record_is_an_error_not_an_entry(record: bytes) -> None:
    with pytest.raises(CacheDecodeError):
        CachedResponse.from_bytes(record)


def test_converts_to_and_from_the_engine_response() -> None:
    result = HttpResult(status=200, headers={"content-type": "text/xml"}, body=b"<ok/>", elapsed=0.3)
    cached = CachedResponse.from_result(result, stored_at=50.0)
    assert cached == CachedResponse(200, {"content-type": "text/xml"}, b"<ok/>", 50.0)
    assert cached.to_result() == HttpResult(200, {"content-type": "text/xml"}, b"<ok/>", elapsed=0.0)


def entry(stored_at: float = 0.0, body: bytes = b"{}") -> CachedResponse:
    return CachedResponse(status=200, headers={}, body=body, stored_at=stored_at)


async def test_in_memory_cache_is_a_response_cache() -> None:
    cache: ResponseCache = InMemoryCache()
    assert await cache.get("k") is None
    await cache.put("k", entry(body=b"1"))
    await cache.put("k", entry(body=b"2"))
    assert await cache.get("k") == entry(body=b"2")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Observed:
    """A CacheObserver that remembers what it was told."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.evictions: dict[tuple[str, str], int] = {}

    def entries(self, integration: str, count: int) -> None:
        self.sizes[integration] = count

    def evicted(self, integration: str, reason: str, count: int) -> None:
        self.evictions[integration, reason] = self.evictions.get((integration, reason), 0) + count


def key(integration: str, name: str) -> str:
    return request_fingerprint(integration, "GET", f"https://x.example/{name}", None)


def policy(**limits: CacheLimit) -> CachePolicy:
    return CachePolicy(limits, default=None)


async def test_entries_expire_after_their_age() -> None:
    clock = Clock(1000.0)
    cache = InMemoryCache(policy=policy(api=CacheLimit(max_age=60)), clock=clock)
    await cache.put(key("api", "a"), entry(stored_at=1000.0))
    await cache.put(key("api", "b"), entry(stored_at=1030.0))
    clock.now = 1060.0  # exactly max_age old: still kept (as `fresh` counts it)
    assert await cache.get(key("api", "a")) is not None
    clock.now = 1060.5
    assert await cache.get(key("api", "a")) is None
    assert len(cache) == 1
    clock.now = 1091.0
    assert await cache.get(key("api", "b")) is None
    assert len(cache) == 0


async def test_an_entry_replayed_after_its_age_does_not_come_back() -> None:
    """A restart replays the changelog: what was stored more than max_age ago is dropped at once."""
    clock = Clock(10_000.0)
    cache = InMemoryCache(policy=policy(api=CacheLimit(max_age=60)), clock=clock)
    await cache.put(key("api", "old"), entry(stored_at=9_000.0))
    await cache.put(key("api", "new"), entry(stored_at=9_990.0))
    assert await cache.get(key("api", "old")) is None
    assert await cache.get(key("api", "new")) is not None


async def test_the_oldest_stored_goes_first_and_reads_do_not_count() -> None:
    cache = InMemoryCache(policy=policy(api=CacheLimit(max_entries=3)))
    for stamp, name in enumerate("abc"):
        await cache.put(key("api", name), entry(stored_at=float(stamp), body=name.encode()))
    assert await cache.get(key("api", "a")) is not None  # a read is not in the changelog: no "use"
    await cache.put(key("api", "d"), entry(stored_at=3.0, body=b"d"))
    assert len(cache) == 3
    assert [n for n in "abcd" if await cache.get(key("api", n)) is not None] == ["b", "c", "d"]


async def test_order_is_by_time_stored_not_by_arrival() -> None:
    """Workers see each other's writes late; ordering by the stamp in the entry (then the key)
    makes every worker pick the same victim."""
    cache = InMemoryCache(policy=policy(api=CacheLimit(max_entries=2)))
    await cache.put(key("api", "late"), entry(stored_at=50.0))
    await cache.put(key("api", "early"), entry(stored_at=10.0))  # another worker's, arriving late
    await cache.put(key("api", "now"), entry(stored_at=60.0))
    assert await cache.get(key("api", "early")) is None
    assert await cache.get(key("api", "late")) is not None


async def test_rewriting_an_entry_refreshes_it() -> None:
    cache = InMemoryCache(policy=policy(api=CacheLimit(max_entries=2)))
    await cache.put(key("api", "a"), entry(stored_at=1.0))
    await cache.put(key("api", "b"), entry(stored_at=2.0))
    await cache.put(key("api", "a"), entry(stored_at=3.0, body=b"new"))
    await cache.put(key("api", "c"), entry(stored_at=4.0))
    assert await cache.get(key("api", "b")) is None
    assert await cache.get(key("api", "a")) == entry(stored_at=3.0, body=b"new")


async def test_each_integration_has_its_own_bound() -> None:
    cache = InMemoryCache(policy=policy(scoring=CacheLimit(max_entries=2), crm=CacheLimit(max_entries=5)))
    for i in range(10):
        await cache.put(key("scoring", str(i)), entry(stored_at=float(i)))
        await cache.put(key("crm", str(i)), entry(stored_at=float(i)))
    assert cache.index.sizes() == {"scoring": 2, "crm": 5}
    assert await cache.get(key("scoring", "9")) is not None
    assert await cache.get(key("crm", "5")) is not None
    assert await cache.get(key("crm", "4")) is None


async def test_entries_no_step_reads_are_dropped() -> None:
    """A flow's policy names every integration it caches: another integration's key, or one
    of the old unprefixed format, would never be read again."""
    observed = Observed()
    cache = InMemoryCache(policy=policy(api=CacheLimit()), observer=observed)
    await cache.put(key("renamed", "a"), entry())
    await cache.put("62f07e0ebdba17f2b07816cd369421d3dbdaae4122cc53d5b2f546da6b39124f", entry())
    await cache.put(key("api", "a"), entry())
    assert len(cache) == 1
    assert observed.evictions == {("renamed", "unused"): 1, ("", "unused"): 1}


async def test_without_a_policy_every_integration_gets_the_default_limit() -> None:
    cache = InMemoryCache(max_entries=2)
    for i in range(3):
        await cache.put(key("a", str(i)), entry(stored_at=float(i)))
        await cache.put(key("b", str(i)), entry(stored_at=float(i)))
    assert cache.index.sizes() == {"a": 2, "b": 2}
    assert InMemoryCache().index.policy.limit_for("any") == CacheLimit(max_entries=10_000, max_age=None)


async def test_the_gauge_follows_the_entries_per_integration() -> None:
    clock = Clock(100.0)
    metrics = Metrics(CollectorRegistry())
    cache = InMemoryCache(
        policy=policy(scoring=CacheLimit(max_entries=2, max_age=10), crm=CacheLimit()),
        clock=clock,
        observer=CacheMetrics(metrics, "leads"),
    )

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"flow": "leads", **labels})

    for i in range(3):
        await cache.put(key("scoring", str(i)), entry(stored_at=100.0 + i))
    await cache.put(key("crm", "x"), entry(stored_at=100.0))
    assert sample("leadstreams_cache_entries", integration="scoring") == 2
    assert sample("leadstreams_cache_entries", integration="crm") == 1
    assert sample("leadstreams_cache_evictions_total", integration="scoring", reason="full") == 1
    clock.now = 200.0
    assert await cache.get(key("crm", "x")) is not None  # crm's entries never expire by age
    assert sample("leadstreams_cache_entries", integration="scoring") == 0
    assert sample("leadstreams_cache_evictions_total", integration="scoring", reason="expired") == 2


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        InMemoryCache(max_entries=0)
    with pytest.raises(ValueError, match="max_age"):
        CacheLimit(max_age=-1)
    with pytest.raises(ValueError, match="max_age"):
        CacheLimit(max_age=float("nan"))


operations = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),  # integration
        st.integers(min_value=0, max_value=30),  # which request
        st.floats(min_value=-20, max_value=5),  # stored this long after (before) the clock
        st.floats(min_value=0, max_value=10),  # then the clock moves on
    ),
    max_size=200,
)


@given(operations, st.integers(min_value=1, max_value=8), st.integers(min_value=1, max_value=8))
async def test_the_bound_holds_and_matches_the_simple_rule(
    ops: list[tuple[str, int, float, float]], bound_a: int, bound_b: int
) -> None:
    """After every write: no integration above its bound, nothing older than max_age, and
    exactly the entries the rule written plainly (sort, drop the oldest) keeps."""
    limits = {"a": CacheLimit(max_entries=bound_a, max_age=15.0), "b": CacheLimit(max_entries=bound_b)}
    clock = Clock(0.0)
    cache = InMemoryCache(policy=CachePolicy(limits, default=None), clock=clock)
    model: dict[str, float] = {}
    for integration, request, offset, step in ops:
        k, stamp = key(integration, str(request)), clock.now + offset
        await cache.put(k, entry(stored_at=stamp))
        model[k] = stamp
        for name, limit in limits.items():
            mine = sorted((t, k) for k, t in model.items() if k.startswith(name + ":"))
            for t, old in mine:
                if limit.max_age is not None and clock.now - t > limit.max_age:
                    del model[old]
            mine = sorted((t, k) for k, t in model.items() if k.startswith(name + ":"))
            for _, old in mine[: max(0, len(mine) - limit.max_entries)]:
                del model[old]
        assert {k: e.stored_at for k, e in cache._entries.items()} == model
        sizes = cache.index.sizes()
        assert sizes.get("a", 0) <= bound_a and sizes.get("b", 0) <= bound_b
        assert len(cache.index) == len(cache)
        clock.now += step


async def test_a_hundred_thousand_requests_stay_within_the_bound() -> None:
    """100,000 distinct requests (about 300-byte answers) into a 1,000-entry cache: the size
    stays at the bound and the memory after 100,000 is what it was after 10,000."""
    clock = Clock()
    cache = InMemoryCache(policy=policy(api=CacheLimit(max_entries=1_000, max_age=3600)), clock=clock)
    body = b'{"score": 7, "reasons": ["' + b"x" * 260 + b'"]}'
    tracemalloc.start()
    try:
        for i in range(100_000):
            clock.now = float(i)  # one request a second: none expires, the bound does the work
            await cache.put(key("api", f"lead-{i}"), entry(stored_at=float(i), body=body + str(i).encode()))
            if i == 9_999:
                at_10k = tracemalloc.get_traced_memory()[0]
        at_100k = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(cache) == 1_000 and cache.index.sizes() == {"api": 1_000}
    assert await cache.get(key("api", "lead-99999")) is not None
    assert await cache.get(key("api", "lead-98999")) is None
    assert at_100k < at_10k * 1.1 + 64 * 1024, (at_10k, at_100k)
    heap = cache.index._groups["api"].heap
    assert len(heap) <= 2 * 1_000 + 64


def test_the_time_stored_is_read_without_the_body() -> None:
    assert stored_at_of(entry(stored_at=12.5, body=b"\xff" * 10).to_bytes()) == 12.5
    assert stored_at_of(b"not json") is None
    assert stored_at_of(b'{"v": 2, "stored_at": 1}') is None
    assert stored_at_of(b'{"v": 1, "stored_at": true}') is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (1000.0, True),
        (1299.999, True),
        (1300.0, True),  # exactly max_age old: still fresh
        (1300.001, False),
        (990.0, True),  # stored "in the future" (clock skew) counts as age zero
    ],
)
def test_freshness_boundary(now: float, expected: bool) -> None:
    assert fresh(entry(stored_at=1000.0), max_age=300, now=now) is expected


def test_fingerprint_is_a_stable_sha256() -> None:
    key = request_fingerprint("scoring", "POST", "https://api.example.com/v1/score?x=1", b'{"email":"a@b.c"}')
    # Pinned: a change here silently orphans every entry in the changelog.
    assert key == "scoring:62f07e0ebdba17f2b07816cd369421d3dbdaae4122cc53d5b2f546da6b39124f"
    assert key == request_fingerprint(
        "scoring", "post", "https://api.example.com/v1/score?x=1", b'{"email":"a@b.c"}'
    )


BASE = ("scoring", "POST", "https://api.example.com/v1/score", b'{"email":"a@b.c"}')


@pytest.mark.parametrize(
    "changed",
    [
        ("other", *BASE[1:]),
        (BASE[0], "PUT", *BASE[2:]),
        (*BASE[:2], "https://api.example.com/v1/score?x=1", BASE[3]),
        (*BASE[:3], b'{"email":"x@b.c"}'),
        (*BASE[:3], b""),
        (*BASE[:3], None),
    ],
)
def test_fingerprint_changes_with_every_part(changed: tuple[str, str, str, bytes | None]) -> None:
    assert request_fingerprint(*changed) != request_fingerprint(*BASE)


def test_fingerprint_fields_cannot_run_into_each_other() -> None:
    assert request_fingerprint("ab", "GET", "c", None) != request_fingerprint("a", "GET", "bc", None)
    assert request_fingerprint("a", "GET", "u", b"") != request_fingerprint("a", "GET", "u", None)


@given(st.text(), st.binary(), st.binary())
def test_different_bodies_give_different_keys(url: str, body: bytes, other: bytes) -> None:
    same = request_fingerprint("i", "POST", url, body) == request_fingerprint("i", "POST", url, other)
    assert same is (body == other)
