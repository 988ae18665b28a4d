"""The commit rule (agents.commit_ledger): the committed offset never passes a message
that was taken and has not finished, whatever order messages finish in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agents.commit_ledger import CommitLedger

TP = ("leads", 0)


def test_a_fresh_partition_commits_nothing_while_its_first_lead_runs() -> None:
    ledger = CommitLedger()
    for offset in range(51):
        ledger.take(TP, offset)
    for offset in range(1, 51):
        assert ledger.finish(TP, offset)
    assert ledger.committable(TP) is None  # Faust's guard let 51 through here
    assert list(ledger.with_finished_head()) == []
    ledger.finish(TP, 0)
    assert ledger.committable(TP) == 51


def test_mid_stream_the_commit_stops_at_the_unfinished_lead() -> None:
    ledger = CommitLedger()
    for offset in range(50):
        ledger.take(TP, offset)
        ledger.finish(TP, offset)
    assert ledger.committable(TP) == 50
    for offset in range(50, 101):
        ledger.take(TP, offset)
    for offset in range(51, 101):
        ledger.finish(TP, offset)
    assert ledger.committable(TP) is None
    assert ledger.oldest_unfinished(TP) == 50
    assert ledger.unfinished(TP) == 1


def test_offsets_never_fetched_are_stepped_over() -> None:
    """Transaction markers and compacted records leave holes in the offsets taken."""
    ledger = CommitLedger()
    for offset in (3, 4, 7, 9):
        ledger.take(TP, offset)
        ledger.finish(TP, offset)
    assert ledger.committable(TP) == 10


def test_finishing_what_was_not_taken_or_was_forgotten_changes_nothing() -> None:
    ledger = CommitLedger()
    ledger.take(TP, 5)
    assert not ledger.finish(TP, 4)
    assert not ledger.finish(("other", 0), 5)
    ledger.forget([TP])
    assert not ledger.finish(TP, 5)
    assert ledger.committable(TP) is None


def test_a_message_read_again_after_a_seek_keeps_its_place() -> None:
    ledger = CommitLedger()
    for offset in (10, 11, 12):
        ledger.take(TP, offset)
    ledger.take(TP, 8)  # seek back
    ledger.take(TP, 11)  # taken twice: one entry
    for offset in (10, 11, 12):
        ledger.finish(TP, offset)
    assert ledger.committable(TP) is None
    ledger.finish(TP, 8)
    assert ledger.committable(TP) == 13


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    """Interleavings of take/finish/commit/forget over two partitions, each partition's
    offsets taken in ascending order with random holes, finished in random order."""
    events: list[tuple[str, int, int]] = []
    next_offset = [draw(st.integers(0, 5)), draw(st.integers(0, 5))]
    running: list[tuple[int, int]] = []
    for _ in range(draw(st.integers(1, 80))):
        action = draw(st.sampled_from(["take", "take", "finish", "finish", "commit", "forget"]))
        partition = draw(st.integers(0, 1))
        if action == "take":
            offset = next_offset[partition]
            next_offset[partition] += draw(st.integers(1, 3))  # holes: markers, compaction
            running.append((partition, offset))
            events.append(("take", partition, offset))
        elif action == "finish" and running:
            partition, offset = running.pop(draw(st.integers(0, len(running) - 1)))
            events.append(("finish", partition, offset))
        elif action == "forget":
            running = [(p, o) for p, o in running if p != partition]
            events.append(("forget", partition, 0))
        else:
            events.append(("commit", partition, 0))
    return events


@given(histories())
def test_the_commit_never_passes_an_unfinished_offset(events: list[tuple[str, int, int]]) -> None:
    ledger = CommitLedger()
    unfinished: dict[int, set[int]] = {0: set(), 1: set()}
    finished: dict[int, set[int]] = {0: set(), 1: set()}
    committed: dict[int, int] = {}
    for action, partition, offset in events:
        tp = ("leads", partition)
        if action == "take":
            ledger.take(tp, offset)
            unfinished[partition].add(offset)
        elif action == "finish":
            assert ledger.finish(tp, offset)
            unfinished[partition].discard(offset)
            finished[partition].add(offset)
        elif action == "forget":
            ledger.forget([tp])
            unfinished[partition].clear()
            finished[partition].clear()
            committed.pop(partition, None)
        else:
            offset_to_commit = ledger.committable(tp)
            if offset_to_commit is None:
                continue
            assert all(o >= offset_to_commit for o in unfinished[partition])
            assert offset_to_commit > committed.get(partition, -1)
            committed[partition] = offset_to_commit
            # Everything below the commit finished; the run ended at the first unfinished.
            assert offset_to_commit - 1 in finished[partition]
            following = [o for o in unfinished[partition] if o >= offset_to_commit]
            assert not following or min(following) >= offset_to_commit
    # Once everything finishes, the commit reaches one past the last offset taken.
    for partition in (0, 1):
        tp = ("leads", partition)
        for offset in sorted(unfinished[partition]):
            ledger.finish(tp, offset)
        last = max(finished[partition] | unfinished[partition], default=None)
        final = ledger.committable(tp)
        if last is not None:
            assert (final if final is not None else committed.get(partition)) == last + 1
        assert ledger.unfinished(tp) == 0
