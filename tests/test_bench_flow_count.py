"""The bench's F1 (flows per worker, examples/bench/flow_count.py) without a broker: /proc
parsing, the cost per added flow, the flow copies it writes, the report's lines."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pytest

from examples.bench.flow_count import (
    Idle,
    cpu_percent,
    flow_counts,
    lines,
    parse_stat,
    parse_vmrss_kb,
    per_flow,
    read_proc,
    write_flows,
)
from streams.loader import load_flow

# proc(5): pid (comm) state ppid ... utime=14 stime=15 ... num_threads=20; a command name
# with a space and a ")" must not shift the fields.
STAT = (
    "4242 (python -m a) b) S 1 4242 4242 0 -1 4194304 31000 0 12 0 1234 567 0 0 20 0 9 0 "
    "100 400000000 25000 18446744073709551615 1 1 0 0 0 0 0 16781312 17642 0 0 0 17 1 0 0"
)
STATUS = "Name:\tpython\nVmPeak:\t  600000 kB\nVmRSS:\t   98304 kB\nThreads:\t9\n"


def test_stat_gives_utime_plus_stime_and_threads() -> None:
    stat = parse_stat(STAT)
    assert (stat.ticks, stat.threads) == (1234 + 567, 9)


def test_vmrss_in_kb_and_none_is_an_error() -> None:
    assert parse_vmrss_kb(STATUS) == 98304
    with pytest.raises(ValueError, match="VmRSS"):
        parse_vmrss_kb("Name:\tpython\nState:\tZ (zombie)\n")


def test_this_process_reads() -> None:
    stat, rss_kb = read_proc(os.getpid())
    assert stat.threads >= 1 and stat.ticks >= 0 and rss_kb > 1000


def test_cpu_percent_of_one_core() -> None:
    assert cpu_percent(20, 20.0, 100) == pytest.approx(1.0)  # 0.2 s of CPU in 20 s
    assert cpu_percent(1, 20.0, 100) == pytest.approx(0.05)  # one tick: the resolution


def point(flows: int, rss: float, cpu: float) -> Idle:
    return Idle(flows=flows, rss_mib=rss, rss_min_mib=rss, rss_max_mib=rss, cpu_pct=cpu, ticks=0,
                tick_pct=0.05, window_s=20.0, threads=9, ready_s=3.0, outputs_s=2.0, exit_code=0)  # fmt: skip


def test_per_flow_is_the_slope_between_fewest_and_most() -> None:
    points = [point(10, 120.0, 0.5), point(50, 200.0, 2.5), point(1, 102.0, 0.4)]
    assert per_flow(points) == {"rss_mib_per_flow": pytest.approx(98 / 49, abs=1e-3),
                                "cpu_pct_per_flow": pytest.approx(2.1 / 49, abs=1e-4)}  # fmt: skip
    with pytest.raises(ValueError, match="two different"):
        per_flow([point(1, 100.0, 0.1)])


def test_counts() -> None:
    assert flow_counts(50) == [1, 10, 50]
    assert flow_counts(10) == [1, 2, 10]
    assert flow_counts(1) == [1]


def test_verdict_says_missed_over_the_goals() -> None:
    base = {"counts": [asdict(point(1, 100.0, 0.4)), asdict(point(50, 150.0, 0.4))]}
    ok = lines({**base, "rss_mib_per_flow": 1.02, "cpu_pct_per_flow": 0.0})
    assert len(ok) == 3 and ok[0].startswith("F1 1 flow: RSS 100.0 MiB") and ok[1].startswith("F1 50 flows")
    assert ok[-1] == ("F1 per added flow: +1.02 MiB RSS (goal <= 5): ok; "
                      "idle CPU +0.0000 % of a core (goal < 0.02): ok")  # fmt: skip
    missed = lines({**base, "rss_mib_per_flow": 6.0, "cpu_pct_per_flow": 0.02})[-1]
    assert missed.count("MISSED") == 2
    assert len(lines({"counts": base["counts"][:1]})) == 1  # one count: no slope, no verdict


def test_copies_are_valid_flows_on_topics_of_their_own(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, "flowcount-t-n3", 3, "http://127.0.0.1:8080")
    files = sorted(tmp_path.glob("*.yaml"))
    assert [f.name for f in files] == ["flowcount-0.yaml", "flowcount-1.yaml", "flowcount-2.yaml"]
    loaded = [load_flow(f) for f in files]
    assert [f.name for f in loaded] == ["flowcount-0", "flowcount-1", "flowcount-2"]
    topics = [t for f in flows for t in f["topics"].values()]
    assert len(set(topics)) == 9 and "flowcount-t-n3.2.out" in topics
    assert all(f["integrations"]["partner"]["base_url"] == "http://127.0.0.1:8080" for f in flows)


def test_a_copy_differs_only_in_name_topics_and_url(tmp_path: Path) -> None:
    one, two = write_flows(tmp_path, "p", 2, "http://u")
    assert one["name"] != two["name"] and one["topics"] != two["topics"]
    assert {**one, "name": "", "topics": {}} == {**two, "name": "", "topics": {}}
