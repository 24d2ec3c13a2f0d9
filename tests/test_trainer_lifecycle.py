"""ConvnetTrainer runs farabio's lifecycles exactly: property-checked against plain loops."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from recording import Config, Oracle, RecordingTrainer

from statetrainer import ConfigurationError, TrainerRunError, lifecycles
from statetrainer.driver import TraceEntry

configs = st.builds(
    Config,
    num_epochs=st.integers(0, 3),
    start_epoch=st.integers(0, 4),
    batches=st.integers(0, 3),
    valid_items=st.integers(0, 3),
    test_items=st.integers(0, 3),
    has_eval=st.booleans(),
    eval_interval=st.integers(1, 3),
    skip_eval=st.frozensets(st.tuples(st.integers(0, 3), st.integers(0, 2)), max_size=4),
    data_parallel=st.booleans(),
    set_iterables=st.booleans(),
)


@st.composite
def configs_with_stop(draw: st.DrawFn) -> Config:
    cfg = draw(configs)
    if draw(st.booleans()):
        cfg = dataclasses.replace(cfg, stop_at=draw(st.sampled_from(_positions(cfg))))
    return cfg


def _positions(cfg: Config) -> list[tuple[str, int, int]]:
    oracle = Oracle(cfg)
    oracle.train()
    return oracle.positions


#: Every combination of requests one state can make.
REQUEST_SETS = [
    ("stop",), ("stop_epoch",), ("skip_batch",), ("stop", "stop_epoch"), ("stop", "skip_batch"),
    ("stop_epoch", "skip_batch"), ("stop", "stop_epoch", "skip_batch"),
]
#: For random runs: requests without a stop (which ends the run at once) are drawn more often.
request_sets = st.sampled_from(REQUEST_SETS + [("stop_epoch",), ("skip_batch",), ("stop_epoch", "skip_batch")] * 2)


#: Configurations with at least one epoch, batch and evaluation item: requests have places to land.
busy_configs = st.builds(
    Config,
    num_epochs=st.integers(1, 3),
    start_epoch=st.integers(0, 1),
    batches=st.integers(1, 3),
    valid_items=st.integers(1, 3),
    test_items=st.integers(1, 3),
    has_eval=st.booleans(),
    eval_interval=st.integers(1, 2),
    skip_eval=st.frozensets(st.tuples(st.integers(1, 3), st.integers(0, 2)), max_size=3),
    data_parallel=st.booleans(),
    set_iterables=st.booleans(),
)


@st.composite
def configs_with_requests(draw: st.DrawFn, lifecycle: str = "train") -> Config:
    """A configuration, then one to four states of its uninterrupted run where control requests are made
    (sometimes none at all, or a stop_train() from a hook as well)."""
    cfg = draw(st.one_of(busy_configs, configs_with_stop() if lifecycle == "train" else configs))
    if draw(st.integers(0, 9)) == 0:
        return cfg
    oracle = Oracle(cfg)
    getattr(oracle, lifecycle)()
    by_state: dict[str, list[tuple[str, int, int]]] = {}
    for visit in oracle.visits:
        by_state.setdefault(visit[0], []).append(visit)
    requests: set[tuple[str, int, int, str]] = set()
    for state in draw(st.lists(st.sampled_from(sorted(by_state)), min_size=1, max_size=4, unique=True)):
        position = draw(st.sampled_from(by_state[state]))  # each state as likely as any other
        requests.update((*position, r) for r in draw(request_sets))
    return dataclasses.replace(cfg, requests=frozenset(requests))


def _entered_by_declared_edges(entries: list[TraceEntry], spec: lifecycles.Lifecycle) -> None:
    """Each entry after the first was entered by the edge its trace records, from the state before it."""
    assert entries[0].edge is None
    for before, entry in zip(entries, entries[1:]):
        assert entry.edge is not None
        edge = spec.edges[entry.edge]
        assert (edge.source, edge.target) == (before.state, entry.state), f"{entry} is not entered by {edge.describe()}"


def _check_nesting(calls: list[str]) -> None:
    pairs = {
        "on_train_start": "on_train_end", "on_train_epoch_start": "on_train_epoch_end",
        "on_start_training_batch": "on_end_training_batch",
        "on_evaluate_epoch_start": "on_evaluate_epoch_end",
        "on_test_start": "on_test_end", "on_start_test_batch": "on_end_test_batch",
    }
    closing = {v: k for k, v in pairs.items()}
    stack: list[str] = []
    for name in calls:
        if name in pairs:
            stack.append(name)
        elif name in closing:
            assert stack and stack[-1] == closing[name], f"{name} closes {stack[-1:]}"
            stack.pop()
    assert not stack


@given(configs_with_requests())
def test_train_hook_calls_equal_the_plain_loops(cfg: Config) -> None:
    """For any configuration, and stop/stop_epoch/skip_batch requests (alone or together) from any
    state, the hook calls, the states entered with their epochs, and the final status are the plain loops'."""
    trainer = RecordingTrainer(cfg)
    trainer.train()
    oracle = Oracle(cfg)
    assert trainer.calls == oracle.train()
    entries = list(trainer.trace)
    assert [e.state for e in entries] == [state for state, _, _ in oracle.visits]
    # the entry opening an epoch records the epoch before it (see the xfail test below)
    assert [(e.state, e.epoch) for e in entries if e.state != "on_train_epoch_start"] == [
        (state, epoch) for state, epoch, _ in oracle.visits if state != "on_train_epoch_start"]
    assert trainer.status == ("stopped" if oracle.stopped else "finished")
    assert trainer.state is None
    _entered_by_declared_edges(entries, lifecycles.TRAIN)


@given(configs)
def test_start_end_hooks_nest_and_counts_are_right(cfg: Config) -> None:
    """Without a stop, every *_start has its *_end and the per-loop counts match the config."""
    trainer = RecordingTrainer(cfg)
    trainer.train()
    names = [c[0] for c in trainer.calls]
    _check_nesting(names)
    epochs = max(0, cfg.num_epochs - cfg.start_epoch + 1)
    assert names.count("on_train_epoch_start") == epochs
    assert names.count("training_step") == epochs * cfg.batches
    evals = sum(1 for e in range(cfg.start_epoch, cfg.num_epochs + 1) if cfg.has_eval and e % cfg.eval_interval == 0)
    assert names.count("on_evaluate_epoch_start") == evals
    assert trainer.global_step == epochs * cfg.batches


@given(configs_with_requests("test"))
def test_test_hook_calls_equal_the_plain_loops(cfg: Config) -> None:
    """test() loads the right model, loops over the test items, and honours requests from any state."""
    trainer = RecordingTrainer(cfg)
    trainer.test()
    oracle = Oracle(cfg)
    assert trainer.calls == oracle.test()
    entries = list(trainer.trace)
    assert [e.state for e in entries] == [state for state, _, _ in oracle.visits]
    assert trainer.status == ("stopped" if oracle.stopped else "finished")
    _entered_by_declared_edges(entries, lifecycles.TEST)


@pytest.mark.parametrize("made", REQUEST_SETS, ids="+".join)
@pytest.mark.parametrize("lifecycle", ["train", "test"])
def test_every_request_combination_from_every_state_matches_the_loops(lifecycle: str, made: tuple[str, ...]) -> None:
    """The requests ``made`` in any one state a two-epoch run enters (each epoch, batch and
    evaluation item) lead to the plain loops' hook calls, states and status."""
    base = Config(num_epochs=2, batches=2, valid_items=2, test_items=2, skip_eval=frozenset({(2, 1)}))
    oracle = Oracle(base)
    getattr(oracle, lifecycle)()
    for position in dict.fromkeys(oracle.visits):
        cfg = dataclasses.replace(base, requests=frozenset((*position, r) for r in made))
        trainer = RecordingTrainer(cfg)
        getattr(trainer, lifecycle)()
        expected = Oracle(cfg)
        assert trainer.calls == getattr(expected, lifecycle)(), position
        assert [e.state for e in trainer.trace] == [v[0] for v in expected.visits], position
        assert trainer.status == ("stopped" if expected.stopped else "finished"), position


def test_trace_entries_carry_the_epoch_and_item_their_hooks_see() -> None:
    """The trace entry of each epoch and batch state records the epoch and item index its hook runs with."""
    states = ("on_train_epoch_start", "on_start_training_batch", "training_step", "on_end_training_batch")
    trainer = RecordingTrainer(Config(num_epochs=2, batches=2, has_eval=False))
    seen: list[tuple[str, int, int | None]] = []
    for state in states:
        trainer.on(state, lambda t, s=state: seen.append((s, t._epoch, None if s == states[0] else t._batch)))
    trainer.train()
    assert [(e.state, e.epoch, e.batch) for e in trainer.trace if e.state in states] == seen


def test_construction_order_and_defaults() -> None:
    """ConvnetTrainer(config) keeps config, sets farabio's defaults, then builds in order."""
    trainer = RecordingTrainer(Config(data_parallel=True))
    assert trainer.construction == ["init_attr", "get_trainloader", "get_testloader", "build_parallel_model"]
    assert RecordingTrainer(Config()).construction[-1] == "build_model"
    assert trainer.config == {"cfg": Config(data_parallel=True)}
    from statetrainer import ConvnetTrainer

    plain = ConvnetTrainer({"a": 1})
    assert (plain._num_epochs, plain._mode, plain._save_epoch, plain._start_epoch) == (10, "train", 1, 1)
    assert (plain._has_eval, plain._eval_interval, plain._data_parallel, plain._next_loop) == (True, 1, None, False)
    assert plain._epoch == 1 and plain.model is None and plain.train_epoch_iter is None
    assert plain.state is None and plain.status == "idle"


@pytest.mark.parametrize(
    ("attr", "value", "match"),
    [
        ("_num_epochs", -1, r"_num_epochs must be a non-negative int, got -1"),
        ("_num_epochs", 2.5, r"_num_epochs must be a non-negative int"),
        ("_start_epoch", "1", r"_start_epoch must be a non-negative int"),
        ("_eval_interval", 0, r"_eval_interval must be an int >= 1, got 0"),
    ],
)
def test_bad_epoch_settings_are_refused_before_the_run(attr: str, value: object, match: str) -> None:
    """Bad epoch settings raise ConfigurationError naming the attribute and where to set it."""
    trainer = RecordingTrainer(Config())
    setattr(trainer, attr, value)
    with pytest.raises(ConfigurationError, match=match):
        trainer.train()
    assert trainer.calls == [] and trainer.status == "idle"


def test_missing_data_names_both_fixes() -> None:
    """No loader and no iterable: the error says to set train_loader or train_epoch_iter."""
    trainer = RecordingTrainer(Config())
    trainer.train_loader = None
    with pytest.raises(TrainerRunError, match=r"no data for feed 'train': train_epoch_iter is None and train_loader is None; set self.train_loader, or self.train_epoch_iter in a hook before the loop") as info:
        trainer.train()
    assert isinstance(info.value.__cause__, ConfigurationError)
    assert info.value.state == "train_batch" and trainer.status == "failed"


def test_batch_hook_that_cannot_take_the_item_is_refused() -> None:
    """A batch hook without a parameter for the item is refused, naming the hook and the fix."""

    class NoArg(RecordingTrainer):
        def on_start_training_batch(self) -> None:  # type: ignore[override]
            pass

    with pytest.raises(ConfigurationError, match=r"on_start_training_batch\(\) cannot take the batch item.*def on_start_training_batch\(self, args\)"):
        NoArg(Config()).train()
