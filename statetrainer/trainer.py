"""``ConvnetTrainer``: farabio's trainer, run by a state machine.

A farabio trainer ports by changing its import to ``from statetrainer import
ConvnetTrainer``. Construction order, attribute names, defaults and hooks are farabio's;
``train()``, ``test()`` and the compound hooks run the lifecycles of
:mod:`statetrainer.lifecycles` through the driver.

This class is farabio's hook surface plus a small public API (``on``, ``off``,
``add_callback``, ``stop*``, ``state``, ``status``, ``snapshot``, ``trace``, ``log``,
``metrics``, ``save_checkpoint``, ``break_on``). Everything else statetrainer keeps lives
behind one attribute, ``self._statetrainer``; the runtime never calls a public method a
subclass could shadow (a trainer may set ``self.metrics = [...]``, as farabio's YOLOv3 does).

Compound hooks (``train_loop``, ``train_epoch``, ``train_batch``, ``evaluate_epoch``,
``test_loop``):

* **not overridden**: the machine runs their body state by state;
* **overridden**: the state calls the override where farabio called it (once, once per
  epoch for ``train_epoch``, once per item for ``train_batch``) and then takes the
  compound's ``override`` edge; states the override runs by calling hooks directly do
  not appear in the trace;
* **called directly** (``self.evaluate_epoch()`` from a hook, or ``super().train_batch(args)``
  from an override): one pass through the body runs as a nested run, recorded in the trace
  with ``depth`` one more than the caller's. Outside a run, ``train_epoch()`` runs one
  epoch and ``train_batch(item)`` one item.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from statetrainer import lifecycles
from statetrainer._errors import ConfigurationError
from statetrainer._program import CompoundHook, overridden_compounds
from statetrainer._runtime import Runtime, Settings, main_lifecycle
from statetrainer.callbacks import Handle, check_signature
from statetrainer.driver import Trace
from statetrainer.metrics import MetricsHistory
from statetrainer.roles import Role
from statetrainer.spec import Lifecycle


def _torchrun_world() -> int:
    from statetrainer import parallel

    return int(os.environ.get("WORLD_SIZE", "1")) if parallel.launched_by_torchrun() else 1


def _read_only(trainer: Any, name: str, what: str) -> None:
    raise ConfigurationError(
        f"{type(trainer).__name__} sets self.{name}, but {name} is statetrainer's ({what}, read-only); "
        f"rename your attribute (e.g. self._{name})"
    )


class ConvnetTrainer:
    """farabio's ConvnetTrainer with its lifecycle as an explicit state machine.

    Example::

        class MyTrainer(ConvnetTrainer):
            def get_trainloader(self):
                self.train_loader = ...
            def build_model(self):
                self.model = torch.nn.Linear(4, 1)
            def on_start_training_batch(self, args):
                self.x, self.y = args
            def training_step(self):
                ...

        MyTrainer(config).train()

    The epoch count is farabio's ``self._num_epochs`` (default 10). ``num_epochs=`` (or
    ``epochs=``) and a ``num_epochs``/``epochs`` key of ``config`` set it too: a keyword
    beats a config key, and a hook setting ``self._num_epochs`` beats both. A method that
    looks like a hook but is none (``on_validation_epoch_end``) warns when the class is
    defined, an attribute that is a near miss of farabio's (``self.num_epochs``) when the
    trainer is built.
    """

    #: Attributes checkpoints leave out (besides loaders, live iterators and ``config``).
    checkpoint_exclude: ClassVar[tuple[str, ...]] = ()
    #: Kept for compatibility: checkpoints now capture every attribute that can be pickled.
    checkpoint_attrs: ClassVar[tuple[str, ...]] = ()
    # farabio's attributes, set in default_attr()
    train_loader: Any
    valid_loader: Any
    test_loader: Any
    model: Any
    train_epoch_iter: Any
    valid_epoch_iter: Any
    test_loop_iter: Any

    def __init__(
        self,
        config: Any = None,
        *,
        trace_size: int = 10_000,
        run_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        checkpoint_epochs: bool = False,
        keep_checkpoints: int = 3,
        handle_signals: bool = True,
        status_interval: float = 0.5,
        overwrite: bool = False,
        num_epochs: int | None = None,
        epochs: int | None = None,
    ) -> None:
        settings = Settings(
            run_dir=None if run_dir is None else str(run_dir), checkpoint_every=checkpoint_every,
            checkpoint_epochs=checkpoint_epochs, keep_checkpoints=keep_checkpoints,
            handle_signals=handle_signals, status_interval=status_interval, trace_size=trace_size,
            overwrite=bool(overwrite),
        )
        self._statetrainer = Runtime(self, settings)
        rt = self._statetrainer
        rt.check_settings()
        from statetrainer._checkpointing import serve

        rt.driver.serve = lambda program, state: serve(self, program, state)
        self.config = config
        self.default_attr()
        from statetrainer import _checks

        farabio_names = set(vars(self))
        _checks.apply_epoch_count(self, main_lifecycle(type(self)).epochs.total,
                                  {"num_epochs": num_epochs, "epochs": epochs})
        self.init_attr()
        from statetrainer import parallel

        if self._data_parallel and parallel.launched_by_torchrun():
            parallel.init_process_group()
        self.get_trainloader()
        if parallel.distributed():
            self.train_loader = parallel.distribute_loader(self.train_loader, seed=int(getattr(self, "_seed", 0)))
        self.get_testloader()
        if self._data_parallel:
            self.build_parallel_model()
        else:
            self.build_model()
        _checks.check_attributes(self, farabio_names)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        from statetrainer._checks import check_hook_names

        check_hook_names(cls)

    # ------------------------------------------------------------------ attributes
    def default_attr(self, *args: Any) -> None:
        """farabio's defaults; hooks of ``init_attr`` override them."""
        self._num_epochs = 10
        self._mode = "train"
        self._save_epoch = 1
        self._start_epoch = 1
        self._has_eval = True
        self._eval_interval = 1
        self.train_loader = None
        self.valid_loader = None
        self.test_loader = None
        self.model = None
        self._model_path: Any = None
        self.train_epoch_iter = None
        self.valid_epoch_iter = None
        self.test_loop_iter = None
        self._use_tqdm = False
        # Under torchrun with several processes, data parallel is on by default.
        self._data_parallel: Any = True if _torchrun_world() > 1 else None
        self._next_loop = False
        self._epoch = 1
        self._backbone = False
        #: A :class:`~statetrainer.steps.StepHelper`; when set, the default training_step uses it.
        self.default_step: Any = None

    def init_attr(self, *args: Any) -> None:
        """Calls the seven ``define_*_attr`` hooks, in farabio's order."""
        self.define_data_attr()
        self.define_model_attr()
        self.define_train_attr()
        self.define_test_attr()
        self.define_log_attr()
        self.define_compute_attr()
        self.define_misc_attr()

    def define_data_attr(self, *args: Any) -> None:
        """Hook: define data-related attributes."""

    def define_model_attr(self, *args: Any) -> None:
        """Hook: define model-related attributes."""

    def define_train_attr(self, *args: Any) -> None:
        """Hook: define training attributes (``_num_epochs``, ``_eval_interval``...)."""

    def define_test_attr(self, *args: Any) -> None:
        """Hook: define test attributes."""

    def define_log_attr(self, *args: Any) -> None:
        """Hook: define logging attributes."""

    def define_compute_attr(self, *args: Any) -> None:
        """Hook: define compute attributes (device, ``_data_parallel``)."""

    def define_misc_attr(self, *args: Any) -> None:
        """Hook: define anything else."""

    # ------------------------------------------------------------------ building
    def build_model(self, *args: Any) -> None:
        """Hook: build ``self.model`` (and optimizer)."""

    def build_parallel_model(self, *args: Any) -> None:
        """Hook: build the model for data-parallel training."""
        from statetrainer import parallel

        parallel.build_parallel_model(self)

    def get_trainloader(self, *args: Any) -> None:
        """Hook: set ``self.train_loader`` (and ``self.valid_loader``)."""

    def get_testloader(self, *args: Any) -> None:
        """Hook: set ``self.test_loader``."""

    # ------------------------------------------------------------------ lifecycles
    @classmethod
    def lifecycles(cls) -> dict[str, Lifecycle]:
        """The lifecycles this trainer runs, by name, the main one first (override to add yours)."""
        return dict(lifecycles.BUILTIN)

    @classmethod
    def overridden_hooks(cls) -> frozenset[str]:
        """Compound hooks this class overrides (they run their own body)."""
        out: frozenset[str] = frozenset()
        for spec in cls.lifecycles().values():
            out |= overridden_compounds(cls, spec)
        return out

    def train(self, resume_from: str | os.PathLike[str] | None = None) -> None:
        """Run the train lifecycle: ``on_train_start``, ``start_logger``, the epochs, ``on_train_end``.

        ``resume_from`` is a checkpoint file, or a run directory (its newest readable
        checkpoint is used, falling back past corrupt ones with a warning).
        """
        from statetrainer import _run

        _run.start(self, "train", resume_from)

    def save_checkpoint(self, path: str | os.PathLike[str] | None = None) -> None:
        """Write a checkpoint at the end of the current state (default: ``RUN_DIR/checkpoints``).

        In a state that is not resumable (an item is in flight: ``training_step``, or a
        nested run) the checkpoint is written at the next resumable state instead.
        """
        self._statetrainer.request_checkpoint(None if path is None else str(path))

    train_loop = CompoundHook("Compound hook: all epochs. Called directly, runs them as a nested run.")
    train_epoch = CompoundHook(
        "Compound hook: one epoch (batches, epoch end, evaluation when due, ``on_epoch_end``).")
    train_batch = CompoundHook("Compound hook: one training item (start, ``training_step``, end); takes the item.")
    evaluate_epoch = CompoundHook("Compound hook: one evaluation epoch, all under ``torch.no_grad()``.")
    test_loop = CompoundHook("Compound hook: the test items.")

    def test(self) -> None:
        """Run the test lifecycle: load the model, ``on_test_start``, the items, ``on_test_end``."""
        from statetrainer import _run

        _run.run_lifecycle(self, "test")

    # ------------------------------------------------------------------ farabio hooks
    def on_train_start(self) -> None:
        """Hook: at the start of training."""
        self.batch_training_loss = 0

    def start_logger(self, *args: Any) -> None:
        """Hook: start loggers."""

    def on_train_epoch_start(self) -> None:
        """Hook: at the start of each epoch; may set ``self.train_epoch_iter``."""
        self.batch_training_loss = 0
        if isinstance(self.model, torch.nn.Module):
            self.model.train()

    def on_start_training_batch(self, *args: Any) -> None:
        """Hook: receives the training item exactly as iterated."""

    def optimizer_zero_grad(self, *args: Any) -> None:
        """Hook: zero the gradients (called by your ``training_step``)."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)

    def training_step(self, *args: Any) -> None:
        """Hook: the training step of one item.

        By default (farabio's) it does nothing; with ``self.default_step`` set (a
        :class:`~statetrainer.steps.StepHelper`) it runs that step on the current item and
        logs ``train_loss``.
        """
        if self.default_step is not None:
            rt = self._statetrainer
            self.loss = self.default_step(rt.step_feed.item if rt.step_feed is not None else None)
            rt.metrics.log("train_loss", self.loss)

    def loss_backward(self, *args: Any) -> None:
        """Hook: back-propagate ``self.loss``."""
        loss = getattr(self, "loss", None)
        if loss is not None:
            loss.backward()

    def optimizer_step(self) -> None:
        """Hook: step ``self.optimizer``."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None:
            optimizer.step()

    def on_end_training_batch(self, *args: Any) -> None:
        """Hook: at the end of each training item."""

    def on_train_epoch_end(self, *args: Any) -> None:
        """Hook: after the epoch's training items."""

    def on_epoch_end(self, *args: Any) -> None:
        """Hook: at the very end of each epoch, after evaluation."""

    def on_train_end(self) -> None:
        """Hook: at the end of training (also after a stop)."""

    def stop_train(self, *args: Any) -> None:
        """Request a graceful stop (farabio called ``sys.exit()``); ``on_train_end`` still runs."""
        self._statetrainer.request("stop", "stop_train", "stop_train")

    def exit_trainer(self, *args: Any) -> None:
        """Request a graceful stop of whatever lifecycle is running."""
        self._statetrainer.request("stop", "exit_trainer", "exit_trainer")

    def on_evaluate_epoch_start(self) -> None:
        """Hook: at the start of evaluation; may set ``self.valid_epoch_iter``."""
        if isinstance(self.model, torch.nn.Module):
            self.model.eval()

    def on_evaluate_batch_start(self, *args: Any) -> None:
        """Hook: receives the evaluation item; set ``self._next_loop = True`` to skip it."""

    def evaluate_batch(self, *args: Any) -> None:
        """Hook: evaluate one item (receives the item)."""

    def on_evaluate_batch_end(self) -> None:
        """Hook: after each evaluation item."""

    def on_evaluate_epoch_end(self, *args: Any) -> None:
        """Hook: at the end of evaluation."""

    def on_evaluate_start(self, *args: Any) -> None:
        """farabio hook kept for compatibility; no lifecycle state calls it."""

    def on_evaluate_end(self, *args: Any) -> None:
        """farabio hook kept for compatibility; no lifecycle state calls it."""

    def on_test_start(self, *args: Any) -> None:
        """Hook: at the start of testing; may set ``self.test_loop_iter``."""

    def on_start_test_batch(self, *args: Any) -> None:
        """Hook: before each test item (farabio passes no argument)."""

    def test_step(self, *args: Any) -> None:
        """Hook: test one item (receives the item)."""

    def on_end_test_batch(self, *args: Any) -> None:
        """Hook: after each test item."""

    def on_test_end(self, *args: Any) -> None:
        """Hook: at the end of testing."""

    def load_model(self, *args: Any) -> None:
        """Hook: load ``self.model`` before testing."""
        from statetrainer import checkpoint

        checkpoint.default_load_model(self)

    def load_parallel_model(self, *args: Any) -> None:
        """Hook: load the data-parallel model before testing."""
        from statetrainer import checkpoint

        checkpoint.default_load_model(self, parallel=True)

    def save_model(self, *args: Any) -> None:
        """Hook: save ``self.model``'s ``state_dict`` atomically (called by your hooks)."""
        from statetrainer import checkpoint

        checkpoint.default_save_model(self)

    def save_parallel_model(self, *args: Any) -> None:
        """Hook: save the data-parallel model's ``state_dict`` (rank 0 only)."""
        from statetrainer import checkpoint

        checkpoint.default_save_model(self, parallel=True)

    # ------------------------------------------------------------------ live state
    @property
    def state(self) -> str | None:
        """The current state's name; ``None`` when idle (the failing state after a failure)."""
        return self._statetrainer.driver.position.state_name

    @state.setter
    def state(self, value: Any) -> None:
        _read_only(self, "state", "the current state's name")

    @property
    def status(self) -> str:
        """``idle``, ``running``, ``stopping``, ``finished``, ``failed`` or ``stopped``."""
        return self._statetrainer.driver.position.status

    @status.setter
    def status(self, value: Any) -> None:
        _read_only(self, "status", "the run's status")

    @property
    def trace(self) -> Trace:
        """The bounded trace of state entries (see :class:`~statetrainer.driver.TraceEntry`)."""
        return self._statetrainer.driver.trace

    @trace.setter
    def trace(self, value: Any) -> None:
        _read_only(self, "trace", "the trace of the run")

    @property
    def global_step(self) -> int:
        """Training items started over this trainer's life."""
        return self._statetrainer.driver.position.global_step

    @global_step.setter
    def global_step(self, value: Any) -> None:
        _read_only(self, "global_step", "the step count")

    @property
    def run_dir(self) -> str | None:
        """The run directory (status, trace, events, checkpoints), or ``None``."""
        return self._statetrainer.settings.run_dir

    @run_dir.setter
    def run_dir(self, value: str | os.PathLike[str] | None) -> None:
        self._statetrainer.settings.run_dir = None if value is None else str(value)

    @property
    def log_transitions(self) -> bool:
        """Log one ``transition_taken`` debug event per transition (costs a call each)."""
        return self._statetrainer.settings.log_transitions

    @log_transitions.setter
    def log_transitions(self, value: bool) -> None:
        self._statetrainer.settings.log_transitions = bool(value)

    @property
    def stopped_by_signal(self) -> int | None:
        """The signal number that stopped the last run, if one did (the CLI exits 128 + it)."""
        return self._statetrainer.signal

    def snapshot(self) -> Any:
        """A frozen :class:`~statetrainer.inspect.Snapshot` of where the run is."""
        from statetrainer.inspect import snapshot

        return snapshot(self)

    # ------------------------------------------------------------------ metrics
    def log(self, name: str, value: Any, *, on_step: bool = False, on_epoch: bool = True) -> None:
        """Log one number (a float or a one-element tensor; checked now, without a device sync).

        ``on_epoch``: add it to ``name``'s mean for this epoch. ``on_step``: also keep it
        with the global step, for ``CSVLogger``/``TensorBoardLogger`` (converted at the
        epoch's end: no sync per batch).
        """
        rt = self._statetrainer
        rt.metrics.log(name, value, on_step=on_step, on_epoch=on_epoch, step=rt.driver.position.global_step)

    def metrics(self) -> dict[str, float]:
        """The latest means: this epoch's once something is logged in it, else the last finished
        epoch's (so after ``train()`` the last epoch's)."""
        return self._statetrainer.metrics.latest()

    @property
    def metrics_history(self) -> MetricsHistory:
        """One dict per finished epoch (``epoch`` and each metric's mean); call it, like ``metrics()``,
        or read it as an attribute (0.1's spelling): both give the same list."""
        return MetricsHistory(self._statetrainer.metrics.history)

    # ------------------------------------------------------------------ callbacks
    def observe(self, fn: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
        """Call ``fn(source, target)`` on every transition (read-only: it cannot steer)."""
        check_signature(fn, 2, "observe")
        self._statetrainer.driver.observers.append(fn)
        return fn

    def on(
        self,
        state: str | Role,
        fn: Callable[[Any], Any] | None = None,
        *,
        order: int = 0,
        every: int | None = None,
        once: int | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Attach ``fn(trainer)`` to ``state`` (a state name or a role); returns a handle for :meth:`off`.

        Without ``fn``, returns a decorator. ``order < 0`` runs before the hook method.
        A callback attached during a run takes effect from the next state entered.
        """
        registry = self._statetrainer.registry
        if fn is None:
            registry.check_state(state)

            def decorate(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
                registry.add(state, f, order=order, every=every, once=once, when=when)
                return f

            return decorate
        return registry.add(state, fn, order=order, every=every, once=once, when=when)

    def off(self, handle: Handle) -> None:
        """Detach a callback attached with :meth:`on`."""
        self._statetrainer.registry.remove(handle)

    def add_callback(self, obj: Any, *, order: int | None = None) -> list[Handle]:
        """Register a callback bundle: each method named after a state or marked with
        :func:`statetrainer.at` (built-ins attach to roles). All or nothing."""
        from statetrainer.builtin_callbacks import register_bundle

        return register_bundle(self, obj, order)

    # ------------------------------------------------------------------ control
    def stop(self, reason: str = "stop") -> None:
        """Request a graceful stop: no further batches or epochs; the lifecycle's end hook runs."""
        self._statetrainer.request("stop", "stop", reason)

    def stop_epoch(self) -> None:
        """Skip the rest of this epoch's batches; the epoch's end hooks and the next epoch run."""
        self._statetrainer.request("epoch_stop", "stop_epoch")

    def skip_batch(self) -> None:
        """Skip the rest of the current batch's states (in evaluation: farabio's ``_next_loop``)."""
        self._statetrainer.request("skip", "skip_batch")

    # ------------------------------------------------------------------ debugging
    def break_on(
        self, state: str | Role, when: Callable[[Any], bool] | None = None,
        debugger: Any = None,
    ) -> Handle:
        """Stop in pdb on entry to ``state``, before its hook, with ``trainer`` and ``item`` in scope.

        When the hook is your method, ``c`` stops again on its first line. ``debugger`` is a
        ``pdb.Pdb`` instance to use, or a function called as ``debugger(trainer)`` instead.
        """
        from statetrainer._debug import break_callback

        return self._statetrainer.registry.add(state, break_callback(state, debugger), order=-(10**9), when=when)

    def dump_debug(self) -> str:
        """The snapshot and every thread's Python stack, as text; also logged (``debug_dump``)."""
        from statetrainer.inspect import dump_debug

        return dump_debug(self)
