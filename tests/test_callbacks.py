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
