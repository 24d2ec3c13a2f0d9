"""Callbacks on states: attach-time validation, order contract, filters, control, errors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from recording import Config, RecordingTrainer

from statetrainer import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LRSchedulerStep,
    ModelCheckpoint,
    NotRunningError,
    ProgressBar,
    StateTimer,
    TensorBoardLogger,
    TrainerRunError,
    UnknownStateError,
)


def _trainer(**kw: Any) -> RecordingTrainer:
    return RecordingTrainer(Config(**kw))


def test_order_contract_negative_before_hook_then_by_order_then_registration() -> None:
    """order<0 runs before the hook method; the rest after it, by order then registration."""
    t = _trainer(num_epochs=1, batches=0, has_eval=False)
    seen: list[str] = []
    t.on("on_train_start", lambda tr: seen.append("b+5"), order=5)
    t.on("on_train_start", lambda tr: seen.append("a0"))
    t.on("on_train_start", lambda tr: seen.append("c-1"), order=-1)
    t.on("on_train_start", lambda tr: seen.append("d0"))
    t.on("on_train_start", lambda tr: seen.append("e-9"), order=-9)
    original = t._rec
    t._rec = lambda hook, *a, **k: (seen.append("HOOK") if hook == "on_train_start" else None, original(hook, *a, **k))  # type: ignore[method-assign]
    t.train()
    assert seen == ["e-9", "c-1", "HOOK", "a0", "d0", "b+5"]


def test_decorator_off_and_nested_evaluate_states() -> None:
    """@trainer.on(state) works on nested evaluate states; off() detaches."""
    t = _trainer(num_epochs=2, valid_items=2)
    hits: list[int] = []

    @t.on("evaluate_batch")
    def count(tr: Any) -> None:
        hits.append(tr._epoch)

    handle = t.on("on_epoch_end", lambda tr: hits.append(-1))
    t.off(handle)
    t.train()
    assert hits == [1, 1, 2, 2]
    with pytest.raises(ValueError, match="is not registered"):
        t.off(handle)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda t: t.on("on_train_epoch_strat", lambda tr: None), UnknownStateError, r"did you mean 'on_train_epoch_start'"),
        (lambda t: t.on("on_epoch_end", lambda: None), TypeError, r"cannot be called as fn\(trainer\)"),
        (lambda t: t.on("on_epoch_end", lambda a, b: None), TypeError, r"give it exactly 1 positional parameter"),
        (lambda t: t.on("on_epoch_end", lambda tr: None, every=0), ValueError, r"every must be an int >= 1"),
        (lambda t: t.on("on_epoch_end", lambda tr: None, once=-2), ValueError, r"once must be an int >= 1"),
        (lambda t: t.on("on_epoch_end", lambda tr: None, every=2, once=1), ValueError, r"either every= or once="),
        (lambda t: t.stop(), NotRunningError, r"stop\(\) was called while no run is active"),
        (lambda t: t.skip_batch(), NotRunningError, r"skip_batch\(\)"),
        (lambda t: t.stop_epoch(), NotRunningError, r"stop_epoch\(\)"),
    ],
)
def test_bad_input_is_refused_at_attach_time(call: Any, error: type, match: str) -> None:
    """Misspelled states, wrong signatures, bad filters, control outside a run: clear errors."""
    with pytest.raises(error, match=match):
        call(_trainer())


def test_callback_bundle_and_unknown_method() -> None:
    """add_callback registers state-named methods; a stray public method is refused."""

    class Bundle(Callback):
        def __init__(self) -> None:
            self.log: list[str] = []

        def on_train_start(self, trainer: Any) -> None:
            self.log.append("start")

        def on_evaluate_epoch_end(self, trainer: Any) -> None:
            self.log.append("eval")

        def teardown(self, trainer: Any) -> None:
            self.log.append("teardown")

    bundle = Bundle()
    t = _trainer(num_epochs=2)
    t.add_callback(bundle)
    t.train()
    assert bundle.log == ["start", "eval", "eval", "teardown"]

    class Typo:
        def on_epoch_ned(self, trainer: Any) -> None: ...

    with pytest.raises(UnknownStateError, match=r"on_epoch_ned.*did you mean 'on_epoch_end'"):
        _trainer().add_callback(Typo())


@given(
    st.integers(0, 12), st.one_of(st.none(), st.integers(1, 5)), st.one_of(st.none(), st.integers(1, 12)),
    st.one_of(st.none(), st.integers(0, 3)),
)
def test_filters_match_an_oracle(batches: int, every: int | None, once: int | None, mod: int | None) -> None:
    """every/once/when fire exactly on the entries an independent count predicts."""
    if every is not None and once is not None:
        once = None
    t = _trainer(num_epochs=1, batches=batches, has_eval=False)
    fired: list[int] = []
    when = (lambda tr: tr._batch % 4 == mod) if mod is not None else None
    t.on("on_end_training_batch", lambda tr: fired.append(tr._batch), every=every, once=once, when=when)
    t.train()
    expected = [
        i for i in range(batches)
        if (every is None or (i + 1) % every == 0) and (once is None or i + 1 == once) and (mod is None or i % 4 == mod)
    ]
    assert fired == expected


def test_stop_is_graceful_and_takes_effect_at_the_next_transition() -> None:
    """stop() in a callback before the hook: the hook still runs, then on_train_end, once."""
    t = _trainer(num_epochs=3, batches=3)
    t.on("on_start_training_batch", lambda tr: tr.stop() if tr._epoch == 2 else None, order=-1, once=4)
    t.train()
    names = [c[0] for c in t.calls]
    assert names[-2:] == ["on_start_training_batch", "on_train_end"]
    assert names.count("on_train_end") == 1 and t.status == "stopped"
    assert names.count("training_step") == 3


def test_stop_epoch_skips_the_rest_of_the_epoch_only() -> None:
    """stop_epoch() in epoch 1's second training_step: batches 2 and 3 of epoch 1 are skipped; its
    epoch end, its evaluation and all of epoch 2 run."""
    t = _trainer(num_epochs=2, batches=4, valid_items=1)
    t.on("training_step", lambda tr: tr.stop_epoch(), once=2)
    t.train()
    steps = [(c[0], c[1][1], c[1][2]) for c in t.calls if c[0] == "on_start_training_batch"]
    assert steps == [("on_start_training_batch", 1, 0), ("on_start_training_batch", 1, 1)] + [
        ("on_start_training_batch", 2, i) for i in range(4)]
    names = [c[0] for c in t.calls]
    after = names[names.index("training_step", names.index("training_step") + 1) + 1:]
    assert after[:4] == ["on_train_epoch_end", "on_evaluate_epoch_start", "on_evaluate_batch_start", "evaluate_batch"]
    assert names.count("on_evaluate_epoch_start") == 2 and t.status == "finished"


def test_skip_batch_skips_that_batchs_remaining_states() -> None:
    """skip_batch() in batch 1's on_start_training_batch: that batch has no training_step or
    on_end_training_batch; batches 0 and 2 have both."""
    t = _trainer(num_epochs=1, batches=3, has_eval=False)
    t.on("on_start_training_batch", lambda tr: tr.skip_batch() if tr._batch == 1 else None)
    seen: list[tuple[str, int]] = []
    for state in ("on_start_training_batch", "training_step", "on_end_training_batch"):
        t.on(state, lambda tr, s=state: seen.append((s, tr._batch)))
    t.train()
    assert seen == [
        ("on_start_training_batch", 0), ("training_step", 0), ("on_end_training_batch", 0),
        ("on_start_training_batch", 1),
        ("on_start_training_batch", 2), ("training_step", 2), ("on_end_training_batch", 2),
    ]


def test_every_and_once_count_each_run_afresh() -> None:
    """Filter counters restart with each run: a second train() of the same trainer fires every=3
    and once=2 callbacks on the same batches as the first."""
    t = _trainer(num_epochs=1, batches=5, has_eval=False)
    fired: list[tuple[str, int]] = []
    t.on("on_end_training_batch", lambda tr: fired.append(("every", tr._batch)), every=3)
    t.on("training_step", lambda tr: fired.append(("once", tr._batch)), once=2)
    t.train()
    first = list(fired)
    fired.clear()
    t.train()
    assert first == [("once", 1), ("every", 2)] and fired == first


def test_errors_say_where_and_teardown_runs() -> None:
    """A failing callback: chained error with lifecycle/state/callback/epoch/batch, status failed."""
    t = _trainer(num_epochs=2, batches=3, has_eval=False)
    torn: list[str] = []
    t._statetrainer.teardown.append(lambda: torn.append("closed"))
    caught: list[Any] = []
    t.on("on_exception", lambda tr, err: caught.append(err))

    def boom(tr: Any) -> None:
        raise ZeroDivisionError("bad batch")

    t.on("training_step", boom, when=lambda tr: tr._epoch == 2 and tr._batch == 1)
    with pytest.raises(TrainerRunError, match=r"ZeroDivisionError: bad batch\n  raised in lifecycle 'train', state 'training_step'") as info:
        t.train()
    err = info.value
    assert isinstance(err.__cause__, ZeroDivisionError)
    assert (err.lifecycle, err.state, err.epoch, err.batch) == ("train", "training_step", 2, 1)
    assert "boom" in err.callback
    assert "last transitions:" in str(err) and "on_start_training_batch -> training_step" in str(err)
    assert t.status == "failed" and t.state == "training_step"
    assert caught == [err] and torn == ["closed"]


def test_metrics_log_without_per_batch_sync_and_builtin_callbacks(tmp_path: Path) -> None:
    """EarlyStopping, ModelCheckpoint, CSVLogger, TensorBoard, LR steps, timer, progress bar."""
    from farabio_like import TinyTrainer

    t = TinyTrainer(run_dir=tmp_path, epochs=6)
    scheduler = torch.optim.lr_scheduler.StepLR(t.optimizer, step_size=1, gamma=0.5)
    timer = StateTimer()
    stopper = EarlyStopping("val_loss", patience=1, mode="min", min_delta=10.0)
    for cb in (stopper, ModelCheckpoint(monitor="val_loss", save_top_k=2), CSVLogger(),
               TensorBoardLogger(), LRSchedulerStep(scheduler), timer, ProgressBar(file=io.StringIO())):
        t.add_callback(cb)
    t.train()
    assert t.status == "stopped" and stopper.stopped_epoch == 2
    assert len(t.metrics_history) == 2 and "val_loss" in t.metrics_history[0]
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    assert len(list((tmp_path / "checkpoints").glob("top-epoch*.pt"))) == 2
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("epoch,seconds,")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.25)
    assert dict((n, v) for n, v, _ in timer.table())["training_step"] == 2 * 4


def test_early_stopping_names_a_missing_metric() -> None:
    """Monitoring a metric nobody logs fails with the list of logged names and the fix."""
    from farabio_like import TinyTrainer

    t = TinyTrainer(epochs=1)
    t.add_callback(EarlyStopping("val_acc"))
    with pytest.raises(TrainerRunError, match=r"metric 'val_acc' was not logged.*logged: train_loss, val_loss"):
        t.train()


# -- callbacks on a custom lifecycle ---------------------------------------------------------------
# A lifecycle with epochs (epoch_start, epoch_end) but no batch_end, whose item states are named
# like the built-ins' helpers (StateTimer.table, ModelCheckpoint.best_file) and close to them.

_HELPER_NAMED = ("table", "stable", "tables", "best_file")


def _epochs_only_lifecycle() -> Any:
    from statetrainer import Edge, Feed, Lifecycle, State, with_stop_edges

    chain = ("take", *_HELPER_NAMED)
    return with_stop_edges(Lifecycle(
        name="e",
        states=(
            State("begin", roles={"resumable"}),
            State("epoch", roles={"epoch_start", "resumable"}, opens="data"),
            State("take", takes="data", item="data"),
            *(State(name) for name in _HELPER_NAMED),
            State("close", roles={"epoch_end", "resumable"}, closes="data"),
            State("done", roles={"resumable"}),
        ),
        edges=(
            Edge("begin", "epoch", guard="epochs_remaining"),
            Edge("begin", "done", "extension", reason="no epoch"),
            Edge("epoch", "take", guard="more"),
            Edge("epoch", "close", "extension", reason="no data"),
            *(Edge(a, b) for a, b in zip(chain, chain[1:])),
            Edge(chain[-1], "take", "loop", guard="more", label="items"),
            Edge(chain[-1], "close"),
            Edge("close", "epoch", "loop", guard="epochs_remaining", label="epochs"),
            Edge("close", "done"),
        ),
        initial="begin",
        finals=("done",),
        feeds=(Feed("data", guard="more", loader="train_loader", counts_steps=True),),
    ), target="done")


def _epochs_only_trainer() -> type:
    from statetrainer import LifecycleTrainer

    class EpochsOnly(LifecycleTrainer):
        lifecycle = _epochs_only_lifecycle()

        def define_train_attr(self) -> None:
            self._num_epochs = 3

        def get_trainloader(self) -> None:
            x = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
            self.train_loader = [(x[i : i + 8], x[i : i + 8].sum(1, keepdim=True)) for i in range(0, 32, 8)]

        def build_model(self) -> None:
            torch.manual_seed(0)
            self.model = torch.nn.Linear(3, 1)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

        def take(self, item: Any) -> None:
            x, y = item
            self.optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            self.log("loss", loss)

    return EpochsOnly


EpochsOnly = _epochs_only_trainer()


def _attached(trainer: Any) -> list[str]:
    """``where:function`` of every registered callback."""
    return sorted(f"{h.state.name if hasattr(h.state, 'name') else h.state}:{h.fn.__name__}"
                  for h in trainer._statetrainer.registry.all())


def test_lr_scheduler_step_attaches_only_to_the_role_its_interval_needs() -> None:
    """interval="epoch" needs epoch_end only: it runs on a lifecycle without batch_end and steps
    once per epoch; interval="batch" there is refused naming batch_end; on the built-in lifecycle
    interval="batch" steps once per training batch and attaches to batch_end only."""
    from farabio_like import TinyTrainer

    from statetrainer import ConfigurationError

    trainer = EpochsOnly()
    scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, step_size=1, gamma=0.5)
    trainer.add_callback(LRSchedulerStep(scheduler))
    assert _attached(trainer) == ["epoch_end:step_epoch"]
    trainer.run()
    assert trainer.status == "finished" and scheduler.last_epoch == 3
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    with pytest.raises(ConfigurationError, match=r"lifecycle 'e' has no state with role 'batch_end'"):
        EpochsOnly().add_callback(LRSchedulerStep(scheduler, interval="batch"))

    tiny = TinyTrainer(epochs=2)
    per_batch = torch.optim.lr_scheduler.StepLR(tiny.optimizer, step_size=1, gamma=0.5)
    tiny.add_callback(LRSchedulerStep(per_batch, interval="batch"))
    assert _attached(tiny) == ["batch_end:step_batch"]
    tiny.train()
    assert per_batch.last_epoch == 2 * 4


def test_builtin_helpers_are_never_hooks_whatever_the_states_are_called(tmp_path: Path) -> None:
    """States named take, table, stable, tables, best_file: every built-in attaches its declared
    methods only (its helpers are neither attached nor taken for misspelt hooks) and works; a
    user's bundle still attaches by state name, also in a subclass of a built-in, and an override
    of a built-in's hook keeps its place."""
    trainer = EpochsOnly()
    timer = StateTimer()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "models", monitor="loss")
    scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, step_size=1, gamma=0.5)
    for cb in (timer, checkpoint, EarlyStopping("loss", patience=5), CSVLogger(tmp_path / "metrics.csv"),
               LRSchedulerStep(scheduler), ProgressBar(file=io.StringIO())):
        trainer.add_callback(cb)
    assert not any(name.startswith(_HELPER_NAMED) for name in _attached(trainer))

    class Noting(StateTimer):  # a user's subclass: the methods it adds attach by name
        def __init__(self) -> None:
            super().__init__()
            self.noted = 0

        def stable(self, trainer: Any) -> None:
            self.noted += 1

    class Checking(EarlyStopping):  # overriding a built-in's hook keeps its @at place
        def check(self, trainer: Any) -> None:
            self.checked = getattr(self, "checked", 0) + 1
            super().check(trainer)

    noting, checking = Noting(), Checking("loss", patience=5)
    trainer.add_callback(noting)
    trainer.add_callback(checking)
    trainer.run()
    assert trainer.status == "finished"
    visits = {name: n for name, n, _ in timer.table()}
    assert all(visits[name] == 3 * 4 for name in ("take", *_HELPER_NAMED)) and visits["close"] == 3
    assert noting.noted == 3 * 4 and noting.table() and checking.checked == 3
    assert ModelCheckpoint.best_file(trainer) == tmp_path / "models" / "best.pt"
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda t: t.on("epoch_end", lambda tr: None),
         r"^unknown state 'epoch_end': it is a role, not a state name; attach to the role with "
         r"trainer.on\(statetrainer.EPOCH_END, fn\) \(it runs on every state that declares the role\)$",
                     id="on"),
        pytest.param(lambda t: t.on("batch_end")(lambda tr: None),
                     r"statetrainer.BATCH_END, fn\).*; lifecycle 'e' has no state with role 'batch_end' yet",
                     id="decorator-missing-role"),
        pytest.param(lambda t: t.break_on("no_grad"),
                     r"'no_grad': it is a role.*trainer.on\(statetrainer.Role\('no_grad'\), fn\)", id="break_on"),
        pytest.param(lambda t: t.add_callback(type("Bundle", (), {"epoch_end": lambda self, tr: None})()),
                     r"^unknown state for method Bundle.epoch_end: 'epoch_end': it is a role.*"
                     r"@statetrainer.at\(statetrainer.EPOCH_END\)", id="bundle-method"),
    ],
)
def test_a_roles_name_given_as_a_state_says_to_attach_the_role(call: Any, match: str) -> None:
    """A role's name where a state name goes (no state of that name): the error says it is a role
    and how to attach to one (a Role, never a string: a state may be named like a role), with no
    did-you-mean to other states."""
    trainer = EpochsOnly()
    with pytest.raises(UnknownStateError, match=match) as info:
        call(trainer)
    assert info.value.suggestions == () and "did you mean" not in str(info.value)
    assert trainer._statetrainer.registry.all() == []


def test_unknown_state_suggestions_come_from_the_trainers_lifecycles() -> None:
    """A misspelt state on a custom lifecycle suggests its own states; the role attaches."""
    from statetrainer import EPOCH_END

    trainer = EpochsOnly()
    with pytest.raises(UnknownStateError, match=r"unknown state 'tabel'; did you mean 'table'") as info:
        trainer.on("tabel", lambda tr: None)
    assert set(info.value.suggestions) <= set(trainer.lifecycle.state_names)
    closed: list[int] = []
    trainer.on(EPOCH_END, lambda tr: closed.append(tr._statetrainer.driver.position.epoch))
    trainer.run()
    assert closed == [1, 2, 3]


def _gan_example() -> Any:
    """examples/gan_lifecycle.py under a module name of its own (checkpoints pickle by module)."""
    import importlib.util
    import sys

    name = "statetrainer_test_callbacks_gan"
    if name not in sys.modules:
        path = Path(__file__).parent.parent / "examples" / "gan_lifecycle.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _gan(run_dir: Path | None) -> Any:
    return _gan_example().GanLoop({"epochs": 3}, run_dir=run_dir, checkpoint_every=5 if run_dir else None,
                                  checkpoint_epochs=run_dir is not None)


def _epochs_only(run_dir: Path | None) -> Any:
    return EpochsOnly(run_dir=run_dir, checkpoint_epochs=run_dir is not None)


@pytest.mark.parametrize(
    ("build", "interrupt_in", "nth"),
    [(_gan, "generator_loss", 11), (_epochs_only, "table", 6), (_epochs_only, "close", 2)],
    ids=["gan-mid-epoch", "epochs-only-mid-epoch", "epochs-only-at-an-epoch-end"],
)
def test_state_timer_resumes_with_the_visits_of_an_uninterrupted_run(
    tmp_path: Path, build: Any, interrupt_in: str, nth: int,
) -> None:
    """SIGINT, then a resume from the run directory: the resumed StateTimer's visits per state
    (and its table's) are an uninterrupted run's; resuming the finished run adds none."""
    import os
    import signal

    def timed(run_dir: Path | None) -> tuple[Any, StateTimer]:
        trainer, timer = build(run_dir), StateTimer()
        trainer.add_callback(timer)
        return trainer, timer

    reference, expected = timed(None)
    reference.run()
    first, interrupted = timed(tmp_path)
    first.on(interrupt_in, lambda t: os.kill(os.getpid(), signal.SIGINT), once=nth)
    first.run()
    assert first.status == "stopped" and first.stopped_by_signal == signal.SIGINT
    second, resumed = timed(tmp_path)
    second.run(resume_from=tmp_path)
    assert second.status == "finished" and second.trace.entries()[0].note == "resume"
    assert resumed.visits == expected.visits and interrupted.visits != expected.visits
    assert sorted((n, v) for n, v, _ in resumed.table()) == sorted((n, v) for n, v, _ in expected.table())
    assert all(seconds >= 0 for _, _, seconds in resumed.table())
    third, again = timed(tmp_path)
    third.run(resume_from=tmp_path)  # from the last epoch's end into the final state: no transition is observed
    assert [e.state for e in third.trace][1:] == [[e.state for e in reference.trace][-1]]
    assert again.visits == expected.visits
