"""ConvnetTrainer runs farabio's lifecycles exactly: property-checked against plain loops."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from recording import Config, Oracle, RecordingTrainer

from statetrainer import ConfigurationError, TrainerRunError, lifecycles

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


def _pairs_are_transitions(entries: list[str], spec: lifecycles.Lifecycle) -> None:
    edges = {(e.source, e.target) for e in spec.edges}
    for a, b in zip(entries, entries[1:]):
        assert (a, b) in edges, f"{a} -> {b} is not a transition of {spec.name}"


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


@given(configs_with_stop())
def test_train_hook_calls_equal_the_plain_loops(cfg: Config) -> None:
    """For any configuration (and any stop point) the hook calls are exactly farabio's loops'."""
    trainer = RecordingTrainer(cfg)
    trainer.train()
    assert trainer.calls == Oracle(cfg).train()
    assert trainer.status == ("stopped" if cfg.stop_at else "finished")
    assert trainer.state is None
    states = [e.state for e in trainer.trace]
    assert states[0] == "train" and states[-1] == "on_train_end"
    _pairs_are_transitions(states, lifecycles.TRAIN)


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


@given(configs, st.data())
def test_test_hook_calls_equal_the_plain_loops(cfg: Config, data: st.DataObject) -> None:
    """test() loads the right model, loops over the test items, and honours a stop."""
    oracle = Oracle(cfg)
    oracle.test()
    if data.draw(st.booleans()):
        cfg = dataclasses.replace(cfg, stop_at=data.draw(st.sampled_from(oracle.positions)))
    trainer = RecordingTrainer(cfg)
    trainer.test()
    assert trainer.calls == Oracle(cfg).test()
    _pairs_are_transitions([e.state for e in trainer.trace], lifecycles.TEST)


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
