"""trace.jsonl's chunk format gives back exactly the trace's entries, written however often."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from statetrainer import tracefile
from statetrainer.driver import Trace

KEYS = [("a", "b", "c", "one"), ("x", "y", "two")]

entries = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 2), st.one_of(st.none(), st.integers(0, 3)),
              st.integers(-1, 9), st.integers(0, 2), st.one_of(st.none(), st.just("resume")),
              st.integers(-1, 6), st.booleans()),
    max_size=80,
)


@given(st.integers(1, 12), st.integers(0, 5), entries)
def test_chunks_round_trip_the_kept_entries(maxlen: int, start: int, recorded: list[tuple]) -> None:  # type: ignore[type-arg]
    """Chunks written at random moments, read back, end with exactly trace.entries() (seq,
    lifecycle, state, epoch, batch, depth, note, edge), each with the run id."""
    trace = Trace(maxlen)
    trace.start_at(start)
    written, read = trace.total, []
    for k, s, epoch, batch, depth, note, edge, flush in recorded:
        key = KEYS[k]
        trace.record(key, s % (len(key) - 1), epoch, batch, depth, note, edge)
        made = tracefile.chunk(trace, written, "run1") if flush else None
        if made is not None:
            line, written, _ = made
            read += tracefile.parse([line])[0]
    made = tracefile.chunk(trace, written, "run1")
    if made is not None:
        read += tracefile.parse([made[0]])[0]
    kept = [dict(e._asdict(), run_id="run1") for e in trace.entries()]
    assert read[len(read) - len(kept):] == kept
    seqs = [e["seq"] for e in read]
    assert seqs == sorted(set(seqs)), "no entry twice, in order"


def test_chunks_count_their_entries_per_state() -> None:
    """A chunk's visits count its entries from count_from, per (lifecycle, state), across lifecycles."""
    trace = Trace(6)
    for k, s in [(0, 0), (0, 1), (1, 0), (0, 1), (0, 1), (1, 1)]:
        trace.record(KEYS[k], s, None, -1, 0)
    made = tracefile.chunk(trace, 0, None, count_from=1)
    assert made is not None and made.end == 6
    assert made.visits == {("one", "b"): 3, ("two", "x"): 1, ("two", "y"): 1}


def test_format_one_lines_still_read_and_damage_is_named(tmp_path: Path) -> None:
    """Old per-entry lines read as they are; a line that is neither format is named with its number."""
    old = {"seq": 0, "lifecycle": "train", "state": "train", "epoch": None, "batch": None, "depth": 0,
           "note": None, "edge": None}
    path = tmp_path / "trace.jsonl"
    path.write_text(json.dumps(old) + "\n")
    assert tracefile.read(path) == [old]
    path.write_text(json.dumps(old) + "\n" + json.dumps({"format": tracefile.FORMAT, "seq": 1, "count": 2,
                                                         "keys": {}, "code": "", "batch": "", "epoch": [],
                                                         "meta": []}) + "\n")
    try:
        tracefile.read(path)
    except ValueError as exc:
        assert f"{path}:2 is not a trace line" in str(exc) and "column lengths" in str(exc)
    else:
        raise AssertionError("a damaged chunk was read")
    assert tracefile.parse(["not json", json.dumps(old)]) == ([old], 1)


def test_a_run_writes_chunks_that_verify_and_list(tmp_path: Path) -> None:
    """A real run's trace.jsonl is chunk lines whose entries equal the in-memory trace and verify."""
    from recording import Config, RecordingTrainer

    from statetrainer import lifecycles, testing

    t = RecordingTrainer(Config(num_epochs=3, batches=4, valid_items=1), run_dir=tmp_path)
    t.train()
    lines = (tmp_path / "trace.jsonl").read_text().splitlines()
    assert all(json.loads(line)["format"] == tracefile.FORMAT for line in lines)
    rows = tracefile.read(tmp_path / "trace.jsonl")
    assert [(r["seq"], r["state"], r["edge"]) for r in rows] == [(e.seq, e.state, e.edge) for e in t.trace]
    assert testing.check_trace(rows, lifecycles.BUILTIN) is None


def test_the_trace_command_prints_one_object_per_entry(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`statetrainer trace RUN --tail N` prints the last N entries as JSON lines; a bad --tail is refused."""
    from recording import Config, RecordingTrainer

    from statetrainer.cli import main

    t = RecordingTrainer(Config(num_epochs=1, batches=2, valid_items=0), run_dir=tmp_path)
    t.train()
    assert main(["trace", str(tmp_path), "--tail", "2"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["state"] for e in printed] == [e.state for e in t.trace][-2:]
    assert main(["trace", str(tmp_path / "trace.jsonl")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(t.trace)
    assert main(["trace", str(tmp_path), "--tail", "-1"]) == 2
    assert "--tail must be >= 0" in capsys.readouterr().err


def test_a_held_back_entry_waits_for_the_next_chunk() -> None:
    """The status sampler holds the newest entry back (its state's bookkeeping may still set
    its epoch and item): the chunk ends before it, starts at the oldest kept entry (not one
    earlier, after a resume's renumbering), and the next chunk carries it."""
    trace = Trace(8)
    trace.start_at(56)  # a resumed run numbers on from the checkpoint
    key = ("a", "b", "loop")
    trace.record(key, 0, 2, 3, 0, "resume")
    assert tracefile.chunk(trace, 0, None, hold=1) is None
    trace.record(key, 1, 2, 4, 0)
    held = tracefile.chunk(trace, 0, None, hold=1)
    assert held is not None and held.end == 57
    assert [(e["seq"], e["state"], e["note"]) for e in tracefile.entries(json.loads(held.line))] == [(56, "a", "resume")]
    rest = tracefile.chunk(trace, held.end, None)
    assert rest is not None and [(e["seq"], e["batch"]) for e in tracefile.entries(json.loads(rest.line))] == [(57, 4)]
