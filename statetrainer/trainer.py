"""``ConvnetTrainer``: farabio's trainer, run by a state machine.

A farabio trainer ports by changing its import to ``from statetrainer import
ConvnetTrainer``. Construction order, attribute names, defaults and hooks are farabio's;
``train()``, ``test()`` and the compound hooks run the lifecycles of
:mod:`statetrainer.lifecycles` through the driver.

Compound hooks (``train_loop``, ``train_epoch``, ``train_batch``, ``evaluate_epoch``,
``test_loop``):

* **not overridden**: the machine runs their body state by state;
* **overridden**: the state calls the override where farabio called it (once, once per
  epoch for ``train_epoch``, once per item for ``train_batch``) and then takes the
  compound's ``override`` edge; states the override runs by calling hooks directly do
  not appear in the trace;
* **called directly** (``self.evaluate_epoch()`` from a hook, or ``super().train_batch(args)``
  from an override): the body runs as a nested run, recorded in the trace with
  ``depth`` one more than the caller's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from statetrainer import lifecycles
from statetrainer._errors import ConfigurationError, NotRunningError, TrainerRunError
from statetrainer._runtime import COMPOUNDS, Builder, Runtime
from statetrainer.callbacks import ON_EXCEPTION, Handle, check_hook_takes_item
from statetrainer.driver import Program, Trace
from statetrainer.spec import Lifecycle

_ITEM_HOOKS = {
    "train": ("on_start_training_batch", "on_evaluate_batch_start", "evaluate_batch"),
    "evaluate": ("on_evaluate_batch_start", "evaluate_batch"),
    "test": ("test_step",),
}


def _torchrun_world() -> int:
    from statetrainer import parallel

    return int(os.environ.get("WORLD_SIZE", "1")) if parallel.launched_by_torchrun() else 1


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
    """

    #: Extra attributes a checkpoint keeps (picklable basic values: numbers, strings, lists, dicts).
    checkpoint_attrs: tuple[str, ...] = ()
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
    ) -> None:
        self._statetrainer = Runtime(self, trace_size)
        rt = self._statetrainer
        if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
            raise ConfigurationError(f"checkpoint_every must be an int >= 1 (batches), got {checkpoint_every!r}")
        if keep_checkpoints < 1:
            raise ConfigurationError(f"keep_checkpoints must be >= 1, got {keep_checkpoints!r}")
        rt.checkpoint_every, rt.checkpoint_epochs = checkpoint_every, checkpoint_epochs
        rt.keep_checkpoints = keep_checkpoints
        self._handle_signals = handle_signals
        self._status_interval = status_interval
        #: Log one ``transition_taken`` debug event per transition (costs a call each).
        self.log_transitions = False
        self.run_dir = run_dir
        self.config = config
        self.default_attr()
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
        """The lifecycles this trainer runs, by name (override to add custom ones)."""
        return dict(lifecycles.BUILTIN)

    @classmethod
    def overridden_hooks(cls) -> frozenset[str]:
        """Compound hooks this class overrides (they run their own body)."""
        return frozenset(
            name for name in COMPOUNDS if getattr(cls, name) is not getattr(ConvnetTrainer, name)
        )

    def train(self, resume_from: str | os.PathLike[str] | None = None) -> None:
        """Run the train lifecycle: ``on_train_start``, ``start_logger``, the epochs, ``on_train_end``.

        ``resume_from`` is a checkpoint file, or a run directory (its newest readable
        checkpoint is used, falling back past corrupt ones with a warning).
        """
        if self._statetrainer.running:
            raise ConfigurationError(
                "train() was called while a run is active; "
                "call it after the current run returns"
            )
        if resume_from is None:
            self._run_top("train")
            return
        from statetrainer import _resume
        from statetrainer import checkpoint as ck

        source = Path(resume_from)
        if source.is_dir():
            folder = source / ck.CHECKPOINT_DIR if (source / ck.CHECKPOINT_DIR).is_dir() else source
            source, data = ck.latest_good(folder)
        else:
            data = ck.read_checkpoint(source)
        _resume.check_compatible(self, data, str(source))
        state = _resume.restore(self, data)
        self._run_top(data["lifecycle"], start=state, resume=True)

    def save_checkpoint(self, path: str | os.PathLike[str] | None = None) -> None:
        """Write a checkpoint at the end of the current state (default: ``RUN_DIR/checkpoints``)."""
        if not self._statetrainer.running:
            raise NotRunningError(
                "save_checkpoint() was called while no run is active; call it from a hook or callback"
            )
        if path is None and self.run_dir is None:
            raise ConfigurationError("save_checkpoint(): give a path, or give the trainer a run_dir")
        self._checkpoint_at_boundary(path)

    def train_loop(self) -> None:
        """Compound hook: all epochs. Called directly, runs them as a nested run."""
        self._compound("train_loop")

    def train_epoch(self) -> None:
        """Compound hook: one epoch (batches, epoch end, evaluation when due, ``on_epoch_end``)."""
        self._compound("train_epoch")

    def train_batch(self, args: Any) -> None:
        """Compound hook: one training item (start, ``training_step``, end)."""
        self._compound("train_batch", args)

    def evaluate_epoch(self) -> None:
        """Compound hook: one evaluation epoch, all under ``torch.no_grad()``."""
        self._compound("evaluate_epoch")

    def test(self) -> None:
        """Run the test lifecycle: load the model, ``on_test_start``, the items, ``on_test_end``."""
        if self._statetrainer.running:
            self._nested("test", "test", None, frozenset())
        else:
            self._run_top("test")

    def test_loop(self) -> None:
        """Compound hook: the test items."""
        self._compound("test_loop")

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
            self.loss = self.default_step(self._statetrainer.train.item)
            self.log("train_loss", self.loss)

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
        self.stop("stop_train")

    def exit_trainer(self, *args: Any) -> None:
        """Request a graceful stop of whatever lifecycle is running."""
        self.stop("exit_trainer")

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

    @property
    def status(self) -> str:
        """``idle``, ``running``, ``stopping``, ``finished``, ``failed`` or ``stopped``."""
        return self._statetrainer.driver.position.status

    @property
    def trace(self) -> Trace:
        """The bounded trace of state entries (see :class:`~statetrainer.driver.TraceEntry`)."""
        return self._statetrainer.driver.trace

    @property
    def global_step(self) -> int:
        """Training items started over this trainer's life."""
        return self._statetrainer.driver.position.global_step

    # ------------------------------------------------------------------ metrics
    def log(self, name: str, value: Any) -> None:
        """Add ``value`` to ``name``'s mean for this epoch; tensors are not synced per batch."""
        self._statetrainer.metrics.log(name, value)

    def metrics(self) -> dict[str, float]:
        """Means of the values logged so far this epoch (after ``on_epoch_end``: the next epoch's)."""
        return self._statetrainer.metrics.compute()

    @property
    def metrics_history(self) -> list[dict[str, float]]:
        """One dict per finished epoch: ``epoch`` and the mean of each logged metric."""
        return self._statetrainer.metrics.history

    def observe(self, fn: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
        """Call ``fn(source, target)`` on every transition (read-only: it cannot steer)."""
        from statetrainer.callbacks import _check_signature

        _check_signature(fn, 2, "observe")
        self._statetrainer.driver.observers.append(fn)
        return fn

    # ------------------------------------------------------------------ callbacks
    def on(
        self,
        state: str,
        fn: Callable[[Any], Any] | None = None,
        *,
        order: int = 0,
        every: int | None = None,
        once: int | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Attach ``fn(trainer)`` to ``state``; returns a handle for :meth:`off`.

        Without ``fn``, returns a decorator. ``order < 0`` runs before the hook method.
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
        """Register each method of ``obj`` named after a state (a callback bundle)."""
        from statetrainer.builtin_callbacks import register_bundle

        return register_bundle(self, obj, order)

    # ------------------------------------------------------------------ control
    def stop(self, reason: str = "stop") -> None:
        """Request a graceful stop: no further batches or epochs; the lifecycle's end hook runs."""
        self._request("stop", "stop", reason)

    def stop_epoch(self) -> None:
        """Skip the rest of this epoch's batches; the epoch's end hooks and the next epoch run."""
        self._request("epoch_stop", "stop_epoch")

    def skip_batch(self) -> None:
        """Skip the rest of the current batch's states (in evaluation: farabio's ``_next_loop``)."""
        self._request("skip", "skip_batch")

    def _request(self, what: str, name: str, reason: str | None = None) -> None:
        rt = self._statetrainer
        if not rt.running:
            raise NotRunningError(
                f"{name}() was called while no run is active; call it from a hook or callback "
                f"during train() or test()"
            )
        guard = {"stop": "stop_requested", "epoch_stop": "epoch_stop_requested", "skip": "skip_requested"}[what]
        spec = self.lifecycles().get(rt.driver.position.lifecycle or "")
        if spec is not None and not any(guard in e.guard for e in spec.edges):
            raise ConfigurationError(
                f"{name}() has no edge in lifecycle {spec.name!r}: declare control edges with guard "
                f"{guard!r} (for a stop: statetrainer.with_stop_edges(lifecycle, target=...))"
            )
        from statetrainer import parallel

        if what == "stop" and parallel.distributed() and rt.driver.position.lifecycle == "train":
            # Every rank must take the same path: the ranks agree on stops at each epoch end.
            rt.dist_stop = reason or "stop"
            return
        rt.driver.control.request(what, reason)
        if what == "stop":
            rt.driver.position.status = "stopping"

    # ------------------------------------------------------------------ running
    def _program(self, name: str) -> Program:
        spec = self.lifecycles()[name]
        return Builder(self, spec).build()

    def _run_top(self, name: str, *, start: str | None = None, resume: bool = False) -> None:
        rt = self._statetrainer
        self._check_config(name)
        self._recorder()
        program = self._program(name)
        pos, ctl = rt.driver.position, rt.driver.control
        first = program.table.index[start] if start else program.table.initial
        if not resume:
            ctl.clear()
            epoch = self._epoch if name == "train" and isinstance(self._epoch, int) else None
            pos.epoch, pos.batch, pos.depth = epoch, -1, 0
        rt.registry.reset_counts() if not resume else None
        rt.last_error = None
        pos.status = "stopping" if ctl.stop else "running"
        rt.started = time.monotonic()
        # A resume inside evaluation has already disabled grad: restore the mode from before it.
        grad = rt.saved_grad if rt.saved_grad is not None else torch.is_grad_enabled()
        recorder = self._recorder()
        error: BaseException | None = None
        rt.signal = None
        rt.dist_stop = None
        from statetrainer import parallel
        from statetrainer._log import RunLog

        rt.driver.rank = parallel.rank() if parallel.distributed() else None
        context = {"trainer": type(self).__qualname__, "lifecycle": name,
                   "run_dir": str(self.run_dir) if self.run_dir else None}
        events = Path(str(self.run_dir)) / "events.jsonl" if recorder is not None else None
        rt.log = RunLog(context, events)
        rt.log.info("run_started", resume=resume, state=start)
        observer = self._transition_logger()
        try:
            if recorder is not None:
                recorder.write()
            with self._signals():
                rt.driver.run(program, first, resume=resume)
        except TrainerRunError as err:
            error = err
            self._fail(err)
            rt.log.error("run_failed", state=err.state, callback=err.callback, epoch=err.epoch,
                         batch=err.batch, error=repr(err.__cause__))
            raise
        except BaseException as exc:
            error = exc
            pos.status = "failed"
            raise
        else:
            pos.status = "stopped" if ctl.stop else "finished"
        finally:
            torch.set_grad_enabled(grad)
            rt.saved_grad = None
            if observer is not None:
                rt.driver.observers.remove(observer)
            self._teardown()
            if recorder is not None:
                recorder.write(error)
            if error is None:
                pos.state = -1
            rt.log.info("run_finished", status=pos.status, global_step=pos.global_step,
                        seconds=round(time.monotonic() - rt.started, 3))
            rt.log.close()

    # ------------------------------------------------------------------ checkpoints
    def _after_batch(self) -> None:
        rt = self._statetrainer
        if rt.recorder is not None:
            rt.recorder.maybe_write()
        every = rt.checkpoint_every
        if every and rt.driver.position.global_step % every == 0 and self.run_dir is not None:
            self._checkpoint_at_boundary()

    def _checkpoint_at_boundary(self, path: str | os.PathLike[str] | None = None) -> None:
        if self._statetrainer.driver.position.depth > 0:
            return  # nested runs have no resumable boundary; the enclosing run checkpoints
        self._statetrainer.driver.control.at_boundary(lambda s: self._write_checkpoint(path, s))

    def _write_checkpoint(self, path: str | os.PathLike[str] | None, state: int) -> None:
        from statetrainer import _resume, parallel
        from statetrainer import checkpoint as ck

        if not parallel.is_main_process():
            return
        rt = self._statetrainer
        pos = rt.driver.position
        if path is None:
            folder = Path(str(self.run_dir)) / ck.CHECKPOINT_DIR
            path = folder / f"ckpt-{pos.global_step:09d}-{rt.driver.trace.total:012d}.pt"
            _resume.write(self, path, pos.names[state])
            for old in ck.checkpoint_files(folder)[: -rt.keep_checkpoints]:
                old.unlink(missing_ok=True)
        else:
            _resume.write(self, path, pos.names[state])
        rt.log.info("checkpoint_written", path=str(path), state=pos.names[state], global_step=pos.global_step)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM: stop at the next transition with a checkpoint; a second SIGINT aborts."""
        rt = self._statetrainer
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: Any) -> None:
            if rt.signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            rt.signal = signum
            if rt.running:
                rt.driver.position.status = "stopping"
                rt.driver.control.at_boundary(lambda s: self._stop_for_signal(s, signum))

        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        if hasattr(signal, "SIGUSR1"):
            previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda signum, frame: self.dump_debug())
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _stop_for_signal(self, state: int, signum: int) -> None:
        """At a resumable boundary: write a checkpoint (with a run_dir) and stop; else wait for one.

        Inside a batch, hooks hold per-batch values in attributes that a resume would not
        re-create, so the stop waits for the batch's end (milliseconds later).
        """
        from statetrainer._resume import RESUMABLE

        rt = self._statetrainer
        pos = rt.driver.position
        if pos.lifecycle == "train" and pos.names[state] not in RESUMABLE:
            rt.driver.control.at_boundary(lambda s: self._stop_for_signal(s, signum))
            return
        if pos.lifecycle == "train" and self.run_dir is not None and pos.depth == 0:
            self._write_checkpoint(None, state)
        rt.driver.control.request("stop", f"signal {signal.Signals(signum).name}")

    @property
    def stopped_by_signal(self) -> int | None:
        """The signal number that stopped the last run, if one did (the CLI exits 128 + it)."""
        return self._statetrainer.signal

    def _transition_logger(self) -> Any:
        if not self.log_transitions:
            return None
        log = self._statetrainer.log

        def transition_taken(source: str, target: str) -> None:
            log.debug("transition_taken", source=source, target=target)

        self._statetrainer.driver.observers.append(transition_taken)
        return transition_taken

    def break_on(
        self, state: str, when: Callable[[Any], bool] | None = None,
        debugger: Callable[[Any], Any] | None = None,
    ) -> Handle:
        """Enter the debugger (pdb, or ``debugger(trainer)``) on entry to ``state``, before its hook."""
        import pdb
        import sys

        def breakpoint_(trainer: Any) -> None:
            if debugger is not None:
                debugger(trainer)
            else:
                pdb.Pdb().set_trace(sys._getframe(1))

        breakpoint_.__qualname__ = f"break_on({state!r})"
        return self._statetrainer.registry.add(state, breakpoint_, order=-(10**9), when=when)

    def dump_debug(self) -> str:
        """The snapshot and every thread's Python stack, as text; also logged (``debug_dump``)."""
        import sys
        import traceback

        snap = self.snapshot()
        lines = [f"statetrainer debug dump: {snap}"]
        for ident, frame in sys._current_frames().items():
            lines.append(f"--- Thread {ident} ---")
            lines.extend(line.rstrip() for line in traceback.format_stack(frame))
        text = "\n".join(lines) + "\n"
        rt = self._statetrainer
        getattr(rt, "log", None) and rt.log.warning("debug_dump", state=snap.state, epoch=snap.epoch,
                                                    batch=snap.batch, dump=text)
        if self.run_dir is not None:
            with (Path(str(self.run_dir)) / "dumps.txt").open("a") as handle:
                handle.write(text)
        return text

    def _recorder(self) -> Any:
        rt = self._statetrainer
        if self.run_dir is None:
            return None
        from statetrainer import parallel
        from statetrainer.inspect import RunRecorder

        if not parallel.is_main_process():
            return None
        if rt.recorder is None or str(rt.recorder.folder) != str(self.run_dir):
            rt.recorder = RunRecorder(self, self.run_dir, min_interval=self._status_interval)
        return rt.recorder

    def snapshot(self) -> Any:
        """A frozen :class:`~statetrainer.inspect.Snapshot` of where the run is."""
        from statetrainer.inspect import snapshot

        return snapshot(self)

    def _fail(self, err: TrainerRunError) -> None:
        rt = self._statetrainer
        rt.driver.position.status = "failed"
        rt.last_error = err
        before, after = rt.registry.for_state(ON_EXCEPTION)
        for handle in (*before, *after):
            try:
                handle.fn(self, err)  # type: ignore[call-arg]
            except Exception as exc:  # never mask the original failure
                err.add_note(f"{handle.name} (on_exception) also failed: {exc!r}")

    def _teardown(self) -> None:
        rt = self._statetrainer
        for feed in (rt.train, rt.valid, rt.test):
            feed.close()
        for fn in tuple(rt.teardown):
            try:
                fn()
            except Exception:  # teardown is best effort; the run's outcome stands
                pass
        rt.driver.control.clear()

    def _compound(self, hook: str, item: Any = None) -> None:
        lifecycle, start, last, outside = COMPOUNDS[hook]
        rt = self._statetrainer
        if not rt.running:
            with self._inside(hook, item):
                self._run_top(lifecycle, start=start)
            return
        self._nested(lifecycle, start, last, outside, hook, item)

    def _nested(
        self, lifecycle: str, start: str, last: str | None, outside: frozenset[str],
        hook: str | None = None, item: Any = None,
    ) -> None:
        rt = self._statetrainer
        program = self._program(lifecycle)
        index = program.table.index
        body = frozenset(i for n, i in index.items() if n not in outside) if outside else None
        pos = rt.driver.position
        pos.depth += 1
        try:
            with self._inside(hook, item):
                rt.driver.run(program, index[start], return_after=index[last] if last else -1, body=body)
        finally:
            pos.depth -= 1

    @contextlib.contextmanager
    def _inside(self, hook: str | None, item: Any) -> Iterator[None]:
        rt = self._statetrainer
        if hook is None:
            yield
            return
        added = hook not in rt.inside
        rt.inside.add(hook)
        saved_feed = (rt.train.peek, rt.train.blocked)
        if hook == "train_epoch":
            rt.user_epoch += 1
        if hook == "train_batch":
            rt.train.peek, rt.train.blocked = item, True
        try:
            yield
        finally:
            if added:
                rt.inside.discard(hook)
            if hook == "train_epoch":
                rt.user_epoch -= 1
            if hook == "train_batch":
                rt.train.peek, rt.train.blocked = saved_feed

    # ------------------------------------------------------------------ bookkeeping
    def _next_epoch(self) -> int:
        rt = self._statetrainer
        return int(self._epoch) + 1 if rt.epoch_started else int(self._start_epoch)

    def _begin_epoch(self) -> None:
        rt = self._statetrainer
        pos = rt.driver.position
        if not rt.user_epoch:
            self._epoch = self._next_epoch()
            rt.epoch_started = True
            from statetrainer import checkpoint, steps_data

            steps_data.set_sampler_epoch(self.train_loader, self._epoch)
            rt.epoch_rng = checkpoint.rng_state(self.train_loader)
        rt.train.reset()
        pos.epoch = int(self._epoch) if isinstance(self._epoch, int) else None
        pos.batch = -1

    def _no_grad_enter(self) -> None:
        rt = self._statetrainer
        if rt.saved_grad is None:
            rt.saved_grad = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def _no_grad_exit(self) -> None:
        rt = self._statetrainer
        if rt.saved_grad is not None:
            torch.set_grad_enabled(rt.saved_grad)
            rt.saved_grad = None

    def _check_config(self, lifecycle: str) -> None:
        if lifecycle == "train":
            for attr in ("_num_epochs", "_start_epoch"):
                value = getattr(self, attr)
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigurationError(
                        f"{type(self).__name__}.{attr} must be a non-negative int, got {value!r}; "
                        f"set it in define_train_attr"
                    )
            if self._has_eval:
                interval = self._eval_interval
                if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
                    raise ConfigurationError(
                        f"{type(self).__name__}._eval_interval must be an int >= 1, got {interval!r}; "
                        f"set it in define_train_attr (or set _has_eval = False)"
                    )
        for hook in _ITEM_HOOKS.get(lifecycle, ()):
            try:
                check_hook_takes_item(self, hook)
            except TypeError as exc:
                raise ConfigurationError(str(exc)) from None
        if lifecycle == "train" and "train_batch" in self.overridden_hooks():
            try:
                check_hook_takes_item(self, "train_batch")
            except TypeError as exc:
                raise ConfigurationError(str(exc)) from None

