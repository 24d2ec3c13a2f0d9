"""The driver's control requests and its bounded trace (a ring that keeps exactly the last N entries)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from statetrainer.driver import Control, Request, Trace

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
        edge = (seq * 7) % 5 - 1  # -1: no edge (a run's first state)
        trace.record(key, s, epoch, batch, depth, note, edge)
        expected.append((seq, key[-1], key[s], epoch, None if batch < 0 else batch, depth, note,
                         None if edge < 0 else edge))
    assert [tuple(e) for e in trace.entries()] == expected[-maxlen:] if expected else trace.entries() == []
    assert len(trace) == min(len(records), maxlen) and trace.total == start + len(records)
    assert [tuple(e) for e in trace.tail(2)] == expected[-min(2, maxlen):]
    counts: dict[str, int] = {}
    for row in expected[-maxlen:]:
        counts[row[2]] = counts.get(row[2], 0) + 1
    assert trace.state_counts() == counts


def test_memory_stays_flat_over_a_long_run() -> None:
    """Between batch 10,000 and batch 40,000 of a run (trace, live state, metrics on) the
    Python heap does not grow: nothing is kept per batch (one small object per batch would be ~1 MB)."""
    import tracemalloc

    from statetrainer import ConvnetTrainer

    class Long(ConvnetTrainer):
        def define_train_attr(self) -> None:
            self._num_epochs, self._has_eval = 1, False

        def get_trainloader(self) -> None:
            self.train_loader = range(40_000)

        def on_train_epoch_start(self) -> None:
            pass

        def training_step(self) -> None:
            self.log("step", 1.0)

    trainer = Long({}, trace_size=1_000)
    heap: dict[int, int] = {}
    trainer.on("on_end_training_batch", lambda t: heap.setdefault(t.global_step, tracemalloc.get_traced_memory()[0]),
               when=lambda t: t.global_step in (10_000, 40_000))
    tracemalloc.start()
    try:
        trainer.train()
    finally:
        tracemalloc.stop()
    assert trainer.global_step == 40_000 and len(trainer.trace) == 1_000
    assert heap[40_000] - heap[10_000] < 16_384, heap


def test_a_transition_consumes_stop_epoch_and_skip_but_a_stop_holds() -> None:
    """After any transition, taken for them or not, stop_epoch and skip_batch requests are gone; a
    stop (with its first reason) steers every transition to the end; a queued boundary request
    keeps the driver on its full path until it is taken."""
    control = Control()
    for what in ("epoch_stop", "skip"):
        control.request(what)
        assert getattr(control, what) and control.pending
        control.settle(None)
        assert not getattr(control, what) and not control.pending, what
    control.request("stop", "first reason")
    control.request("stop", "second reason")
    control.settle(None)
    assert control.stop and control.pending and control.stop_reason == "first reason"
    control.clear()
    control.add(Request("checkpoint", "a.pt"))
    control.add(Request("signal", signum=2))
    control.settle(None)
    assert control.pending and control.take_requests() == [Request("checkpoint", "a.pt"), Request("signal", None, 2)]
    control.settle(None)
    assert not control.pending and control.requests == []
