"""statetrainer.testing: trace checks, edge coverage, guard outcomes and covering paths."""

from __future__ import annotations

import pytest
from recording import Config, RecordingTrainer

from statetrainer import Edge, Lifecycle, State, lifecycles, testing
from statetrainer.driver import TraceEntry


def _toy() -> Lifecycle:
    """Two edges a -> end (a stop and the fallback) and one a -> b: three edges, two pairs."""
    return Lifecycle(
        name="toy", states=(State("a"), State("b"), State("end")),
        edges=(
            Edge("a", "end", "control", guard="stop_requested", reason="stop requested"),
            Edge("a", "b", guard="skip_requested"),
            Edge("a", "end"),
            Edge("b", "end"),
        ),
        initial="a", finals=("end",),
    )


def _entries(*steps: tuple[str, int | None]) -> list[TraceEntry]:
    return [TraceEntry(seq, "toy", state, None, None, 0, None, edge) for seq, (state, edge) in enumerate(steps)]


def test_coverage_counts_each_declared_edge_not_each_pair_of_states() -> None:
    """A trace through the stop edge a -> end leaves the fallback a -> end (same states) missing."""
    spec = _toy()
    stopped = _entries(("a", None), ("end", 0))
    coverage = testing.transition_coverage([stopped], spec)
    assert coverage.taken == {0} and coverage.covered == (spec.edges[0],)
    assert coverage.missing == spec.edges[1:] and coverage.ratio == 0.25
    both = testing.transition_coverage([stopped, _entries(("a", None), ("end", 2))], spec)
    assert both.missing == spec.edges[1:2] + spec.edges[3:] and both.ratio == 0.5
    assert both.format().splitlines() == [
        "toy: 2 of 4 edges taken (seed 1/3, extensions 1/1)",
        "  missing #1 sequence: a -> b if skip_requested",
        "  missing #3 sequence: b -> end",
    ]


def test_coverage_reads_trace_file_rows_and_skips_other_lifecycles() -> None:
    """Rows of trace.jsonl (dicts) count by their edge; rows of another lifecycle or with no edge do not."""
    rows = [
        {"seq": 0, "lifecycle": "toy", "state": "a", "depth": 0, "edge": None},
        {"seq": 1, "lifecycle": "toy", "state": "b", "depth": 0, "edge": 1},
        {"seq": 2, "lifecycle": "other", "state": "b", "depth": 1, "edge": 3},
        {"seq": 3, "lifecycle": "toy", "state": "end", "depth": 0, "edge": 3},
    ]
    assert testing.transition_coverage([rows], _toy()).taken == {1, 3}


def test_coverage_refuses_an_edge_of_another_version_of_the_lifecycle() -> None:
    """An entry whose edge index is not an edge into its state was recorded with another spec: ValueError."""
    with pytest.raises(ValueError, match=r"trace entry 1 entered 'b' by edge #2, which is not an edge into 'b'"):
        testing.transition_coverage([_entries(("a", None), ("b", 2))], _toy())
    with pytest.raises(ValueError, match=r"by edge #9, which is not an edge into 'end'"):
        testing.transition_coverage([_entries(("a", None), ("end", 9))], _toy())


def _traces_through_every_edge() -> list[list[TraceEntry]]:
    """Real runs: plain ones, a request of each kind at the 1st/2nd entry of every state, overrides."""
    traces = []
    base = [Config(num_epochs=2, batches=2, valid_items=2, eval_interval=2, skip_eval=frozenset({(2, 0), (2, 1)})),
            Config(num_epochs=0), Config(num_epochs=1, batches=0, valid_items=0, test_items=0),
            Config(data_parallel=True)]
    for cfg in base:
        for lifecycle in ("train", "test"):
            t = RecordingTrainer(cfg)
            getattr(t, lifecycle)()
            traces.append(list(t.trace))
    for spec in (lifecycles.TRAIN, lifecycles.TEST):
        for state in spec.state_names:
            for request in ("stop", "stop_epoch", "skip_batch"):
                for nth, parallel in ((1, False), (2, False), (1, True)):
                    t = RecordingTrainer(Config(num_epochs=2, batches=2, valid_items=2, test_items=2,
                                                data_parallel=parallel))
                    t.on(state, lambda tr, r=request: getattr(tr, r)(), once=nth)
                    getattr(t, spec.name)()
                    traces.append(list(t.trace))
    for cls_name, hook in (("Loop", "train_loop"), ("Epoch", "train_epoch"), ("Eval", "evaluate_epoch"),
                           ("Test", "test_loop")):
        cls = type(cls_name, (RecordingTrainer,), {hook: lambda self, *a: None})
        t = cls(Config(num_epochs=2))
        t.train()
        t.test()
        traces.append(list(t.trace))
    batch_cls = type("Batch", (RecordingTrainer,), {"train_batch": lambda self, args: None})
    t = batch_cls(Config(num_epochs=1))
    t.train()
    traces.append(list(t.trace))
    return traces


def test_real_runs_take_every_declared_edge_of_the_builtin_lifecycles() -> None:
    """Runs with stops, stop_epoch and skip_batch requests at every state, skipped evaluation items
    and overridden compounds take each of train's and test's declared edges, seed and extension."""
    traces = _traces_through_every_edge()
    for spec in (lifecycles.TRAIN, lifecycles.TEST):
        coverage = testing.transition_coverage(traces, spec)
        assert coverage.ratio == 1.0, coverage.format()


def test_every_edge_is_reachable_by_some_guard_outcome() -> None:
    """No edge of a built-in lifecycle is shadowed by an earlier one (no dead edges); the covering
    paths walk every (source, target) pair."""
    for spec in lifecycles.BUILTIN.values():
        for edge in spec.edges:
            assert testing.outcome_for(spec, edge) is not None, edge.describe()
        walked = {(p[i], p[i + 1]) for p in testing.covering_paths(spec) for i in range(len(p) - 1)}
        assert testing.transitions_of(spec) <= walked
