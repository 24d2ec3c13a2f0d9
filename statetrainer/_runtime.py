"""Everything a trainer keeps while it runs, and how its states become driver calls.

The trainer's own attributes stay farabio's; statetrainer's live under one attribute
(``trainer._statetrainer``, a :class:`Runtime`) so a user's names never collide with ours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from statetrainer import lifecycles
from statetrainer._feeds import Feed, lookahead
from statetrainer.callbacks import Registry
from statetrainer.driver import Call, Check, Driver, Program
from statetrainer.machine import CompiledMachine, compile_machine
from statetrainer.metrics import Metrics
from statetrainer.spec import Lifecycle

if TYPE_CHECKING:
    from statetrainer.trainer import ConvnetTrainer

#: Compound hooks and how a direct call runs their body: lifecycle, first state,
#: state after which to return (None: run until leaving the body), states outside the body.
COMPOUNDS: dict[str, tuple[str, str, str | None, frozenset[str]]] = {
    "train_loop": ("train", "train_loop", None, frozenset({"on_train_end"})),
    "train_epoch": ("train", "train_epoch", "on_epoch_end", frozenset()),
    "train_batch": ("train", "on_start_training_batch", "on_end_training_batch", frozenset()),
    "evaluate_epoch": ("evaluate", "evaluate_epoch", None, frozenset()),
    "test_loop": ("test", "test_loop", None, frozenset({"on_test_end"})),
}

_TABLES: dict[str, CompiledMachine] = {}


def table_for(spec: Lifecycle) -> CompiledMachine:
    """The compiled table of ``spec``, cached by fingerprint."""
    key = spec.fingerprint()
    if key not in _TABLES:
        _TABLES[key] = compile_machine(spec)
    return _TABLES[key]


class Runtime:
    """A trainer's statetrainer-side state: driver, callbacks, feeds, run flags."""

    def __init__(self, trainer: Any, trace_size: int) -> None:
        self.driver = Driver(trace_size)
        self.registry = Registry(lambda: trainer_states(trainer))
        self.train = Feed(
            "train_epoch_iter", "train_loader",
            "set self.train_loader in get_trainloader, or self.train_epoch_iter in on_train_epoch_start",
        )
        self.valid = Feed(
            "valid_epoch_iter", "valid_loader",
            "set self.valid_loader in get_trainloader, or self.valid_epoch_iter in on_evaluate_epoch_start",
        )
        self.test = Feed(
            "test_loop_iter", "test_loader",
            "set self.test_loader in get_testloader, or self.test_loop_iter in on_test_start",
        )
        self.epoch_started = False
        self.user_epoch = 0  # >0 inside a direct train_epoch() call: the caller owns _epoch
        self.batch_counted = False
        self.inside: set[str] = set()  # compound hooks whose body is running directly
        self.saved_grad: bool | None = None
        self.last_error: BaseException | None = None
        self.metrics = Metrics()
        self.bundles: list[Any] = []
        self.teardown: list[Callable[[], Any]] = []
        self.recorder: Any = None
        self.started = 0.0
        self.epoch_rng: Any = None
        self.signal: int | None = None
        self.dist_stop: str | None = None
        from statetrainer._log import RunLog

        self.log: Any = RunLog({}, None)
        self.checkpoint_every: int | None = None
        self.checkpoint_epochs = False
        self.keep_checkpoints = 3

    @property
    def running(self) -> bool:
        """True while a top-level run is in progress."""
        return self.driver.position.status in ("running", "stopping")


def trainer_states(trainer: Any) -> list[str]:
    """Every state name a callback may attach to on this trainer."""
    names: list[str] = []
    for spec in trainer.lifecycles().values():
        names.extend(n for n in spec.state_names if n not in names)
    return names


# -- building programs ---------------------------------------------------------------


class Builder:
    """Turns a lifecycle into a :class:`Program` bound to one ConvnetTrainer."""

    def __init__(self, trainer: ConvnetTrainer, spec: Lifecycle) -> None:
        self.t = trainer
        self.rt: Runtime = trainer._statetrainer
        self.spec = spec
        self.table = table_for(spec)
        self.names: dict[int, str] = {}
        self.builtin = spec is lifecycles.BUILTIN.get(spec.name)

    def build(self) -> Program:
        calls = [self._calls(name) for name in self.table.names]
        guards = [self._guard(g) for g in self.table.guards]
        return Program(self.table, calls, guards, self.names)

    def _calls(self, state: str) -> tuple[Call, ...]:
        before, after = self.rt.registry.for_state(state)
        hook = self._hook(state)
        pre, post = self._bookkeeping(state)
        out: list[Call] = [*pre]
        for handles in (before, None, after):
            if handles is None:
                for item in hook:
                    self.names[id(item)] = f"hook {type(self.t).__name__}.{state}"
                    out.append(item)
                continue
            for handle in handles:
                call = handle.bind(self.t)
                self.names[id(call)] = handle.name
                out.append(call)
        for p in (*pre, *post):
            self.names.setdefault(id(p), f"statetrainer bookkeeping of {state}")
        out.extend(post)
        return tuple(out)

    # -- hooks -------------------------------------------------------------------
    def _hook(self, state: str) -> list[Call]:
        t, _rt = self.t, self.rt
        builtin = self.builtin
        special = _ITEM_HOOKS.get(state) if builtin else None
        if special is not None:
            return [special(self)]
        if builtin and (state in COMPOUNDS or state in ("train", "test")):
            return self._compound_hook(state)
        method = getattr(t, state, None)
        if not callable(method):
            return []
        if not builtin and (state in COMPOUNDS or state in ("train", "test")):
            from statetrainer.trainer import ConvnetTrainer

            if getattr(type(t), state) is getattr(ConvnetTrainer, state):
                return []  # the inherited compound would start a built-in lifecycle
        return [method]

    def _compound_hook(self, state: str) -> list[Call]:
        if state not in self.t.overridden_hooks():
            return []
        if state == "train_epoch":
            return [self._epochs_override()]
        if state == "train_batch":
            return [self._batches_override()]
        method = getattr(self.t, state)
        rt = self.rt

        def call_override() -> None:
            if state not in rt.inside:
                method()

        return [call_override]

    def _epochs_override(self) -> Call:
        t, rt, ctl = self.t, self.rt, self.rt.driver.control
        method, remaining = t.train_epoch, self._guard("epochs_remaining")

        def run_epochs() -> None:
            if "train_epoch" in rt.inside:
                return
            while not ctl.stop and remaining():
                t._begin_epoch()
                method()
                ctl.epoch_stop = ctl.skip = False
                ctl.pending = ctl.stop

        return run_epochs

    def _batches_override(self) -> Call:
        t, rt, ctl = self.t, self.rt, self.rt.driver.control
        method, has_next, pos = t.train_batch, self._guard("has_next_batch"), rt.driver.position

        def run_batches() -> None:
            if "train_batch" in rt.inside:
                return
            while not (ctl.stop or ctl.epoch_stop) and has_next():
                item = rt.train.take()
                pos.batch += 1
                pos.global_step += 1
                rt.batch_counted = True
                try:
                    method(item)
                finally:
                    rt.batch_counted = False
                ctl.skip = False
                ctl.pending = ctl.stop or ctl.epoch_stop

        return run_batches

    # -- bookkeeping -------------------------------------------------------------
    def _bookkeeping(self, state: str) -> tuple[list[Call], list[Call]]:
        t, rt = self.t, self.rt
        pos = rt.driver.position
        if not self.builtin:
            return [], []
        if state == "train_loop":
            def start_loop() -> None:
                rt.epoch_started = False
            return [start_loop], []
        if state == "on_train_epoch_start":
            return [t._begin_epoch], []
        if state == "on_train_epoch_end":
            def flush_accumulation() -> None:
                if t.default_step is not None:
                    t.default_step.flush()
            return [flush_accumulation], []
        if state == "on_epoch_end":
            def close_epoch() -> None:
                from statetrainer import parallel

                if parallel.distributed() and parallel.any_rank(rt.dist_stop is not None):
                    rt.driver.control.request("stop", rt.dist_stop or "stop requested on another rank")
                    pos.status = "stopping"
                values = rt.metrics.end_epoch(t._epoch)
                rt.log.info("epoch_finished", epoch=t._epoch, global_step=pos.global_step, **values)
                if rt.recorder is not None:
                    rt.recorder.write()
                if rt.checkpoint_epochs:
                    t._checkpoint_at_boundary()
            return [], [close_epoch]
        if state == "evaluate_epoch":
            if self.spec.name == "train" and "evaluate_epoch" in t.overridden_hooks():
                return [], []

            def open_evaluation() -> None:
                t._no_grad_enter()
                rt.valid.reset()
                pos.batch = -1
            return [open_evaluation], []
        if state == "on_evaluate_epoch_end":
            return [], [t._no_grad_exit]
        if state in ("on_train_end", "on_test_end"):
            return [t._no_grad_exit], []
        if state == "on_end_training_batch" and (rt.recorder is not None or rt.checkpoint_every):
            return [], [t._after_batch]  # a clock check per batch; writes are rare
        if state == "test_loop":
            def open_test() -> None:
                rt.test.reset()
                pos.batch = -1
            return [open_test], []
        return [], []

    # -- guards ------------------------------------------------------------------
    def _guard(self, name: str) -> Check:
        t, rt = self.t, self.rt
        ctl = rt.driver.control
        if name == "stop_requested":
            return lambda: ctl.stop
        if name == "epoch_stop_requested":
            return lambda: ctl.epoch_stop
        if name == "skip_requested":
            return lambda: ctl.skip
        if not self.builtin:
            return self._custom_guard(name)
        if name == "epochs_remaining":
            return lambda: t._next_epoch() <= t._num_epochs
        if name == "eval_due":
            return lambda: bool(t._has_eval) and t._epoch % t._eval_interval == 0
        if name == "data_parallel":
            return lambda: bool(t._data_parallel)
        feed = {"has_next_batch": rt.train, "has_next_valid_batch": rt.valid,
                "has_next_test_batch": rt.test}.get(name)
        if feed is not None:
            return lookahead(t, feed)
        if name.endswith("_overridden"):
            hook = name[: -len("_overridden")]
            overridden = hook in t.overridden_hooks()
            return lambda: overridden and hook not in rt.inside
        return self._custom_guard(name)

    def _custom_guard(self, name: str) -> Check:
        method = getattr(self.t, name, None)
        if not callable(method):
            raise AttributeError(
                f"lifecycle {self.spec.name!r} uses guard {name!r}: define a method "
                f"{type(self.t).__name__}.{name}(self) -> bool"
            )
        return lambda: bool(method())


def _train_item_hook(b: Builder) -> Call:
    hook, feed, rt = b.t.on_start_training_batch, b.rt.train, b.rt
    pos = rt.driver.position

    def on_start_training_batch() -> None:
        item = feed.take()
        if not rt.batch_counted:
            pos.batch += 1
            pos.global_step += 1
        hook(item)

    return on_start_training_batch


def _valid_start_hook(b: Builder) -> Call:
    t, feed, ctl = b.t, b.rt.valid, b.rt.driver.control
    hook, pos = t.on_evaluate_batch_start, b.rt.driver.position

    def on_evaluate_batch_start() -> None:
        item = feed.take()
        pos.batch += 1
        hook(item)
        if t._next_loop:  # farabio's way to skip this evaluation item
            t._next_loop = False
            ctl.request("skip")

    return on_evaluate_batch_start


def _valid_batch_hook(b: Builder) -> Call:
    hook, feed = b.t.evaluate_batch, b.rt.valid
    return lambda: hook(feed.item)


def _test_start_hook(b: Builder) -> Call:
    hook, feed, pos = b.t.on_start_test_batch, b.rt.test, b.rt.driver.position

    def on_start_test_batch() -> None:
        feed.take()
        pos.batch += 1
        hook()

    return on_start_test_batch


def _test_step_hook(b: Builder) -> Call:
    hook, feed = b.t.test_step, b.rt.test
    return lambda: hook(feed.item)


_ITEM_HOOKS: dict[str, Callable[[Builder], Call]] = {
    "on_start_training_batch": _train_item_hook,
    "on_evaluate_batch_start": _valid_start_hook,
    "evaluate_batch": _valid_batch_hook,
    "on_start_test_batch": _test_start_hook,
    "test_step": _test_step_hook,
}

