"""No silent mistakes: misnamed hooks and attributes, the epoch count, metrics, callbacks."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch
from farabio_like import TinyTrainer

from statetrainer import ConvnetTrainer, EarlyStopping, ModelCheckpoint, TrainerRunError
from statetrainer._checks import AttributeNameWarning, HookNameWarning
from statetrainer._errors import ConfigurationError

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))


def _define(name: str, body: dict[str, object]) -> type:
    return type(name, (ConvnetTrainer,), {"__module__": "user_module", **body})


@pytest.mark.parametrize(("method", "hint"), [
    ("on_train_epoch_strat", "did you mean 'on_train_epoch_start'"),
    ("on_validation_epoch_end", "did you mean 'on_evaluate_epoch_end' (farabio's name for it)"),
    ("validation_step", "did you mean 'evaluate_batch' (farabio's name for it)"),
    ("on_train_batch_end", "did you mean 'on_end_training_batch'"),
    ("trainig_step", "did you mean 'training_step'"),
    ("configure_optimizers", "farabio's hook is 'build_model'"),
    ("on_batch_ready", "no state has that name"),
])
def test_a_method_that_looks_like_a_hook_but_is_none_warns_when_the_class_is_defined(method: str, hint: str) -> None:
    """The warning names the class and method, says what was meant, and points at the method's line."""

    def hook(self):  # type: ignore[no-untyped-def]
        pass

    with pytest.warns(HookNameWarning, match=rf"Mine\.{method}\(\) looks like a hook, but no state calls it") as record:
        _define("Mine", {method: hook})
    assert hint in str(record[0].message)
    assert record[0].filename == __file__ and record[0].lineno == hook.__code__.co_firstlineno


def test_real_hooks_helpers_and_custom_states_do_not_warn() -> None:
    """Hooks, private helpers, plain helper names, overrides of a user base, and custom states are fine."""
    from grad_accumulation import AccumulatingTrainer

    def fn(self):  # type: ignore[no-untyped-def]
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        base = _define("Base", {"training_step": fn, "on_epoch_end": fn, "_helper": fn, "compute_loss": fn,
                                "evaluate_batch": fn, "build_model": fn, "has_next_batch": fn})
        type("Child", (base,), {"__module__": "user_module", "compute_loss": fn})
        type("Acc", (AccumulatingTrainer,), {"__module__": "user_module", "micro_batch": fn, "step_due": fn})


def test_a_near_miss_of_a_farabio_attribute_warns_at_construction() -> None:
    """self.num_epochs = 2 trains farabio's default 10 epochs: the warning says to set _num_epochs."""

    def define_train_attr(self):  # type: ignore[no-untyped-def]
        self.num_epochs = 2
        self._eval_intervall = 3
        self.val_loader = [1]

    cls = _define("Typos", {"define_train_attr": define_train_attr})
    with pytest.warns(AttributeNameWarning) as record:
        cls()
    messages = sorted(str(w.message) for w in record)
    assert any("sets self.num_epochs = 2, which statetrainer never reads; farabio's attribute is self._num_epochs "
               "(now 10)" in m for m in messages)
    assert any("self._eval_intervall = 3" in m and "self._eval_interval (now 1)" in m for m in messages)
    assert any("self.val_loader = [1]" in m and "self.valid_loader (now None)" in m for m in messages)


def test_an_alias_that_agrees_with_farabios_attribute_does_not_warn() -> None:
    """A user keeping self.epochs beside self._num_epochs (equal values) is not told anything."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TinyTrainer(epochs=3)._num_epochs == 3


def test_the_epoch_count_from_a_keyword_or_the_config_and_farabios_attribute_wins() -> None:
    """num_epochs=/epochs= or a config key set _num_epochs; a hook setting _num_epochs still wins."""
    plain = _define("Plain", {})
    assert plain(num_epochs=3)._num_epochs == 3
    assert plain(epochs=4)._num_epochs == 4
    assert plain({"epochs": 5})._num_epochs == 5
    assert plain({"num_epochs": 6}, epochs=2)._num_epochs == 2
    assert plain()._num_epochs == 10

    def define_train_attr(self):  # type: ignore[no-untyped-def]
        self._num_epochs = 7

    assert _define("Hooked", {"define_train_attr": define_train_attr})(num_epochs=3)._num_epochs == 7
    with pytest.raises(ConfigurationError, match=r"num_epochs=3 and epochs=4 disagree"):
        plain(num_epochs=3, epochs=4)
    with pytest.raises(ConfigurationError, match=r"config\['epochs'\] must be a non-negative int"):
        plain({"epochs": "many"})


def test_an_epoch_count_keyword_trains_that_many_epochs() -> None:
    """The keyword is not just stored: train() runs that many epochs."""
    trainer = _define("Short", {})(num_epochs=2)
    trainer.train_loader, trainer.valid_loader = [torch.zeros(1)], []
    trainer.train()
    assert [e.state for e in trainer.trace].count("on_epoch_end") == 2


def test_logging_a_tensor_with_many_elements_fails_at_once_naming_the_metric() -> None:
    """The shape is checked when logged (no device sync): the error names the metric and the shape."""

    def training_step(self):  # type: ignore[no-untyped-def]
        self.log("x", torch.ones(384))

    trainer = _define("Wide", {"training_step": training_step, "get_trainloader": _one_item})(num_epochs=1)
    with pytest.raises(TrainerRunError, match=r"trainer\.log\('x', value\): a metric is one number, but value is a "
                                              r"tensor of shape \(384,\) \(384 elements\)") as info:
        trainer.train()
    assert info.value.state == "training_step"
    with pytest.raises(TypeError, match=r"trainer\.log\('name', value\): a metric is a number"):
        trainer.log("name", "high")


def _one_item(self):  # type: ignore[no-untyped-def]
    self.train_loader = [torch.zeros(1)]


@pytest.mark.parametrize("callback", [lambda: EarlyStopping("val_los"), lambda: ModelCheckpoint(monitor="val_los")])
def test_a_monitored_metric_never_logged_lists_the_logged_ones_and_a_did_you_mean(callback, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """EarlyStopping and ModelCheckpoint name the metric, what was logged, and the close one."""
    trainer = TinyTrainer(epochs=1, run_dir=tmp_path)
    trainer.add_callback(callback())
    with pytest.raises(TrainerRunError, match=r"metric 'val_los' was not logged this epoch \(logged: train_loss, "
                                              r"val_loss\); did you mean 'val_loss'\?"):
        trainer.train()


@pytest.mark.parametrize("thing", [lambda t: None, object(), ConvnetTrainer])
def test_add_callback_refuses_what_attaches_nothing(thing: object) -> None:
    """A function, a plain object or a class is a TypeError saying what a bundle is (not a silent [])."""
    trainer = TinyTrainer(epochs=1)
    with pytest.raises(TypeError, match=r"(callback bundle|would attach nothing)"):
        trainer.add_callback(thing)


def test_a_hook_that_needs_arguments_its_state_never_passes_warns_where_the_batch_arrives() -> None:
    """Lightning's training_step(self, batch, batch_idx): warned when the class is defined, at the
    method's line, naming the state that hands over the batch; a hook that takes the item it is
    given (or has defaults) is fine."""
    import warnings

    from statetrainer import ConvnetTrainer, HookSignatureWarning

    with pytest.warns(HookSignatureWarning, match=r"Lit\.training_step\(self, batch, batch_idx\) needs 2 "
                                                  r"argument\(s\), but its state passes no argument; a batch "
                                                  r"arrives as the argument of on_start_training_batch\(self, args\)"):
        class Lit(ConvnetTrainer):
            def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
                pass
    with pytest.warns(HookSignatureWarning, match=r"Two\.evaluate_batch\(self, x, y\) needs 2 argument\(s\), "
                                                  r"but its state passes the item it handles"):
        class Two(ConvnetTrainer):
            def evaluate_batch(self, x, y):  # type: ignore[no-untyped-def]
                pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class Fine(ConvnetTrainer):
            def training_step(self, scale=1.0):  # type: ignore[no-untyped-def]
                pass

            def evaluate_batch(self, args):  # type: ignore[no-untyped-def]
                pass
    assert Lit.__name__ and Two.__name__ and Fine.__name__
