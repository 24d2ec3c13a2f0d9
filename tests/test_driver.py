"""The driver's bounded trace: a ring that keeps exactly the last N entries, allocation-free."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from statetrainer.driver import Trace

KEYS = [("a", "b", "c", "one"), ("x", "y", "two")]

rows = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 2), st.one_of(st.none(), st.integers(0, 50)),
              st.integers(-1, 9), st.integers(0, 3), st.one_of(st.none(), st.just("resume"))),
    max_size=60,
)


@given(st.integers(1, 12), st.integers(0, 5), rows)
def test_ring_keeps_exactly_the_last_entries(maxlen: int, start: int, records: list[tuple]) -> None:  # type: ignore[type-arg]
    """entries() equals the last maxlen of what was recorded, with numbering from start_at()."""
    trace = Trace(maxlen)
    trace.start_at(start)
    expected = []
    for seq, (k, s, epoch, batch, depth, note) in enumerate(records, start):
        key = KEYS[k]
        s = s % (len(key) - 1)
        trace.record(key, s, epoch, batch, depth, note)
        expected.append((seq, key[-1], key[s], epoch, None if batch < 0 else batch, depth, note))
    assert [tuple(e) for e in trace.entries()] == expected[-maxlen:] if expected else trace.entries() == []
    assert len(trace) == min(len(records), maxlen) and trace.total == start + len(records)
    assert [tuple(e) for e in trace.tail(2)] == expected[-min(2, maxlen):]
    counts: dict[str, int] = {}
    for row in expected[-maxlen:]:
        counts[row[2]] = counts.get(row[2], 0) + 1
    assert trace.state_counts() == counts


def test_trace_memory_does_not_grow() -> None:
    """A million entries into a 100-entry trace: the rings keep their size."""
    trace = Trace(100)
    sizes = [len(trace._state), len(trace._meta)]
    for i in range(1_000_000 // 100):
        trace.record(KEYS[0], i % 3, 1, i, 0)
    trace.total += 1_000_000 - 10_000  # as if the driver had written the rest
    assert [len(trace._state), len(trace._meta)] == sizes and len(trace) == 100
