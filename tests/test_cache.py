"""The last-good-result cache: changelog encoding, LRU bounds, freshness and the request key."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.cache import (
    CacheDecodeError,
    CachedResponse,
    InMemoryCache,
    ResponseCache,
    fresh,
    request_fingerprint,
)
from streams.http_types import HttpResult

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


async def test_least_recently_used_entry_is_evicted_first() -> None:
    cache = InMemoryCache(max_entries=3)
    for key in "abc":
        await cache.put(key, entry(body=key.encode()))
    assert await cache.get("a") is not None  # reading "a" makes "b" the oldest
    await cache.put("d", entry(body=b"d"))
    assert len(cache) == 3
    assert await cache.get("b") is None
    assert [key for key in "acd" if await cache.get(key) is not None] == ["a", "c", "d"]


async def test_rewriting_an_entry_refreshes_it() -> None:
    cache = InMemoryCache(max_entries=2)
    await cache.put("a", entry())
    await cache.put("b", entry())
    await cache.put("a", entry(body=b"new"))
    await cache.put("c", entry())
    assert await cache.get("b") is None
    assert await cache.get("a") == entry(body=b"new")


async def test_optional_max_age_drops_old_entries_on_read() -> None:
    now = [1000.0]
    cache = InMemoryCache(clock=lambda: now[0], max_age=60)
    await cache.put("k", entry(stored_at=1000.0))
    now[0] = 1060.0
    assert await cache.get("k") is not None
    now[0] = 1060.5
    assert await cache.get("k") is None
    assert len(cache) == 0


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError):
        InMemoryCache(max_entries=0)


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
    assert key == "62f07e0ebdba17f2b07816cd369421d3dbdaae4122cc53d5b2f546da6b39124f"
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
