"""Built-in callbacks, each usable in one line: ``trainer.add_callback(EarlyStopping("val_loss"))``.

A callback object is a bundle: each public method named after a state is attached to
that state (``on_epoch_end(self, trainer)``), and each method marked with
:func:`~statetrainer.callbacks.at` to the state or role it names. The built-ins attach to
roles (:mod:`statetrainer.roles`: ``epoch_end``, ``batch_end``, ``epoch_start``), so they
work on every lifecycle that declares those roles; adding one to a trainer whose main
lifecycle lacks a role it needs is an error naming the role. A built-in attaches exactly
its ``@at``-marked methods (``LRSchedulerStep`` only the one its ``interval`` needs): its
other methods (``StateTimer.table``, ``ModelCheckpoint.best_file``) are helpers, whatever
the lifecycle's states are called.

``on_exception(self, trainer, error)`` runs when a run fails; ``setup(self, trainer)``
once when added; ``teardown(self, trainer)`` when every run ends;
``state_dict``/``load_state_dict`` make it checkpointable. Built-ins read the runtime
directly, never a trainer method a subclass could shadow (``self.metrics = [...]`` is fine).
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from statetrainer._errors import ConfigurationError, UnknownStateError, close_matches
from statetrainer.callbacks import ON_EXCEPTION, Fn, Handle, at, attached_where, role_constant, role_name_error
from statetrainer.roles import BATCH_END, EPOCH_END, ROLES

_NOT_STATES = {"setup", "teardown", "state_dict", "load_state_dict"}


class Callback:
    """Base class for callback bundles; methods named after states (or marked with ``@at``) are attached."""

    order: int = 0

    def setup(self, trainer: Any) -> None:
        """Called once when the callback is added to ``trainer``."""

    def teardown(self, trainer: Any) -> None:
        """Called when each run ends, however it ends."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this callback."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def register_bundle(trainer: Any, obj: Any, order: int | None) -> list[Handle]:
    """Attach every state-named or ``@at``-marked method of ``obj``, all or nothing.

    Public methods that look like hooks (``on_*``, or close to a state name) but match no
    state are refused with a suggestion; other helper methods are left alone. Methods a
    built-in callback class defines attach only when marked with ``@at`` (see
    :func:`_declared`): their other methods are helpers, whatever the states are called.
    """
    rt = trainer._statetrainer
    if inspect.isroutine(obj) or isinstance(obj, type):
        raise TypeError(
            f"add_callback() takes a callback bundle (an object whose methods are named after states, or "
            f"marked with @statetrainer.at(...), like a statetrainer.Callback subclass), got {obj!r}; "
            f"to attach a function use trainer.on(state_or_role, fn)"
        )
    from statetrainer._runtime import main_roles, trainer_states

    states = set(trainer_states(type(trainer))) | {ON_EXCEPTION}
    targets: list[tuple[Any, str]] = []
    unknown = []
    for name in _public_methods(obj):
        if _builtin_name(type(obj), name):
            where = _declared_where(obj, name)
            if where is not None:
                targets.append((where, name))
            continue
        where = attached_where(getattr(obj, name))
        if where is not None:
            targets.append((where, name))
        elif name in states:
            targets.append((name, name))
        elif name.startswith("on_") or name in ROLES or close_matches(name, states):
            unknown.append(name)
    if unknown:
        what = f"state for method {type(obj).__name__}.{unknown[0]}:"
        if unknown[0] in ROLES:
            raise role_name_error(unknown[0], main_roles(type(trainer)), what=what,
                                  example=f"@statetrainer.at({role_constant(unknown[0])})")
        raise UnknownStateError(unknown[0], sorted(states), what=what)
    if not targets and not _own_setup(obj):
        raise TypeError(
            f"{type(obj).__name__} has no method named after a state or marked with @statetrainer.at(...), "
            f"so add_callback() would attach nothing; to attach a function use trainer.on(state_or_role, fn)"
        )
    chosen = order if order is not None else int(getattr(obj, "order", 0))
    handles = [rt.registry.prepare(where, getattr(obj, name), order=chosen) for where, name in targets]
    rt.registry.commit(handles)
    if callable(getattr(obj, "setup", None)):
        obj.setup(trainer)
    if callable(getattr(obj, "teardown", None)):
        rt.teardown.append(lambda: obj.teardown(trainer))
    rt.bundles.append(obj)
    return handles


_C = TypeVar("_C", bound=type)
_DECLARED = "__statetrainer_declared__"
_ONLY_IF = "__statetrainer_only_if__"


def _declared(cls: _C) -> _C:
    """Mark a built-in callback class: the methods it defines attach only when marked with
    ``@at``. Its helpers (``StateTimer.table``, ``ModelCheckpoint.best_file``) are never
    attached nor taken for misspelt hooks, whatever the lifecycle's states are called. The mark
    is the class's own (a user's subclass attaches the methods it adds by the usual rules);
    an override of a built-in's method keeps the built-in's ``@at`` place."""
    setattr(cls, _DECLARED, True)
    return cls


def _only_if(predicate: Callable[[Any], bool]) -> Callable[[Fn], Fn]:
    """Attach an ``@at`` method of a built-in only on instances where ``predicate(self)`` holds."""

    def mark(fn: Fn) -> Fn:
        setattr(fn, _ONLY_IF, predicate)
        return fn

    return mark


def _builtin_name(cls: type, name: str) -> bool:
    """Whether a built-in callback class (marked with :func:`_declared`) defines ``name``."""
    return any(name in vars(c) and vars(c).get(_DECLARED, False) for c in cls.__mro__)


def _declared_where(obj: Any, name: str) -> Any:
    """Where a built-in's method ``name`` attaches on ``obj``: the ``@at`` mark of its nearest
    definition that has one (an override keeps it), ``None`` for a helper or a method whose
    :func:`_only_if` condition does not hold for ``obj``."""
    for cls in type(obj).__mro__:
        fn = getattr(vars(cls).get(name), "__func__", vars(cls).get(name))
        where = attached_where(fn)
        if where is not None:
            only_if = getattr(fn, _ONLY_IF, None)
            return where if only_if is None or only_if(obj) else None
    return None


def _own_setup(obj: Any) -> bool:
    """True when ``obj`` has a ``setup`` of its own (it may attach itself another way)."""
    setup = getattr(type(obj), "setup", None)
    return callable(setup) and setup is not Callback.setup


def _public_methods(obj: Any) -> list[str]:
    base = set(dir(Callback))
    names = []
    for name, _ in inspect.getmembers(type(obj), callable):
        if name.startswith("_") or name in _NOT_STATES or (name in base and isinstance(obj, Callback)):
            continue
        names.append(name)
    return names


def _metric(trainer: Any, monitor: str) -> float:
    values = trainer._statetrainer.metrics.compute()
    if monitor not in values:
        logged = ", ".join(sorted(values)) or "nothing yet"
        hint = close_matches(monitor, values)
        did = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigurationError(
            f"metric {monitor!r} was not logged this epoch (logged: {logged}){did}; "
            f"call trainer.log({monitor!r}, value) in a hook"
        )
    return float(values[monitor])


def _epoch(trainer: Any) -> int | None:
    epoch: int | None = trainer._statetrainer.driver.position.epoch
    return epoch


def _better(mode: str, value: float, best: float, min_delta: float = 0.0) -> bool:
    """Whether ``value`` improves on ``best``; a non-finite value never does."""
    if not math.isfinite(value):
        return False
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta


def _check_mode(mode: str) -> None:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")


@_declared
class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (at each epoch's end).

    A non-finite value (NaN, inf) is never an improvement; with ``check_finite`` (the
    default) it stops the run at once, saying so.
    """

    def __init__(self, monitor: str, patience: int = 3, mode: str = "min", min_delta: float = 0.0,
                 check_finite: bool = True) -> None:
        _check_mode(mode)
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an int >= 1, got {patience!r}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.check_finite = check_finite
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.stopped_epoch: int | None = None
        self.reason: str | None = None

    @at(EPOCH_END)
    def check(self, trainer: Any) -> None:
        """Count an epoch without improvement; stop after ``patience`` of them."""
        value = _metric(trainer, self.monitor)
        if self.check_finite and not math.isfinite(value):
            self._stop(trainer, f"EarlyStopping: {self.monitor} is {value} (not finite)")
            return
        if _better(self.mode, value, self.best, self.min_delta):
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self._stop(trainer, f"EarlyStopping: {self.monitor} did not improve for {self.patience} epochs")

    def _stop(self, trainer: Any, reason: str) -> None:
        self.stopped_epoch, self.reason = _epoch(trainer), reason
        trainer._statetrainer.request("stop", "stop", reason)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


@_declared
class ModelCheckpoint(Callback):
    """Keep the best ``save_top_k`` models by ``monitor`` and/or one every ``every_n_epochs``.

    At each epoch's end, the ``module`` attribute (``model`` by default; ``netG`` for a
    GAN) is saved by ``state_dict``. Files go to ``dirpath`` (default ``RUN_DIR/checkpoints``);
    ``best.pt`` is always the best so far. Every file is written atomically. A non-finite
    monitored value (NaN, inf) is never kept as best.
    """

    def __init__(
        self,
        dirpath: str | os.PathLike[str] | None = None,
        monitor: str | None = None,
        mode: str = "min",
        save_top_k: int = 1,
        every_n_epochs: int | None = None,
        module: str = "model",
    ) -> None:
        _check_mode(mode)
        if monitor is None and every_n_epochs is None:
            raise ValueError("ModelCheckpoint needs monitor= (keep the best) or every_n_epochs= (periodic)")
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs!r}")
        if save_top_k < 1:
            raise ValueError(f"save_top_k must be >= 1, got {save_top_k!r}")
        self.dirpath = Path(dirpath) if dirpath else None
        self.monitor, self.mode, self.save_top_k, self.every_n_epochs = monitor, mode, save_top_k, every_n_epochs
        self.module = module
        self.kept: list[tuple[float, str]] = []
        self.best_path: Path | None = None

    def _folder(self, trainer: Any) -> Path:
        if self.dirpath is not None:
            return self.dirpath
        run_dir = trainer._statetrainer.settings.run_dir
        if not run_dir:
            raise ConfigurationError("ModelCheckpoint: give dirpath= or run the trainer with a run_dir")
        return Path(run_dir) / "checkpoints"

    def _model(self, trainer: Any) -> Any:
        import torch

        model = getattr(trainer, self.module, None)
        if not isinstance(model, torch.nn.Module):
            raise ConfigurationError(
                f"ModelCheckpoint: {type(trainer).__name__}.{self.module} is {type(model).__name__}, not a "
                f"torch.nn.Module; pass module= the attribute holding the model to save (e.g. module='netG')"
            )
        return model

    @at(EPOCH_END)
    def save(self, trainer: Any) -> None:
        """Save the periodic file and, when the monitored value ranks, the top-k and best files."""
        from statetrainer import parallel
        from statetrainer.checkpoint import save_state_dict

        if not parallel.is_main_process():
            return
        folder, epoch, model = self._folder(trainer), _epoch(trainer), self._model(trainer)
        if self.every_n_epochs and epoch is not None and epoch % self.every_n_epochs == 0:
            save_state_dict(model, folder / f"epoch{epoch}.pt")
        if self.monitor is None:
            return
        value = _metric(trainer, self.monitor)
        if not math.isfinite(value):
            return
        name = f"top-epoch{epoch}.pt"
        ranked = sorted([*self.kept, (value, name)], reverse=self.mode == "max")
        if (value, name) not in ranked[: self.save_top_k]:
            return
        save_state_dict(model, folder / name)
        for _, old in ranked[self.save_top_k :]:
            (folder / old).unlink(missing_ok=True)
        self.kept = ranked[: self.save_top_k]
        if self.kept[0][1] == name:
            self.best_path = save_state_dict(model, folder / "best.pt")

    @staticmethod
    def best_file(trainer: Any) -> Path | None:
        """The best model file of the trainer's ModelCheckpoint, if one was written."""
        for bundle in trainer._statetrainer.bundles:
            if isinstance(bundle, ModelCheckpoint) and bundle.best_path is not None:
                return bundle._folder(trainer) / bundle.best_path.name  # this run's folder (a copy's own)
        return None

    def state_dict(self) -> dict[str, Any]:
        """The kept files and the best one, by name: a copied or moved run directory resumes into itself."""
        return {"kept": list(self.kept), "best": self.best_path.name if self.best_path else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = [tuple(x) for x in state["kept"]]  # type: ignore[misc]
        self.best_path = Path(Path(state["best"]).name) if state.get("best") else None


@_declared
class ProgressBar(Callback):
    """A tqdm bar per pass over each data feed: training, validation and test alike.

    The bars follow the running lifecycle's feeds (:class:`~statetrainer.spec.Feed`): a bar
    opens where a feed's loop begins, advances on each item taken, and closes where the
    loop ends — on any lifecycle that declares feeds. The postfix shows the live state and
    the item being processed (redrawn every ``live_interval`` seconds on a terminal, so a
    slow step shows where it is), and the loss, read every ``refresh_every`` items only (no
    host-device sync per batch). ``feeds`` limits the bars to the named feeds.

    While a bar is open, ``print()`` from a hook or callback goes above the bars instead of
    breaking them (standard output is routed through tqdm's clear-and-redraw).
    """

    def __init__(self, refresh_every: int = 20, leave: bool = False, file: Any = None,
                 feeds: Any = None, live_interval: float = 0.5) -> None:
        self.refresh_every, self.leave, self.file, self.live_interval = refresh_every, leave, file, live_interval
        self.feeds = None if feeds is None else set(feeds)
        self.bars: dict[str, Any] = {}
        self._loss = ""
        self._bindings: dict[str, list[tuple[str, str]]] = {}
        self._printer: Any = None  # statetrainer._progress.PrintAboveBars while bars are open
        self._refresher: Any = None  # statetrainer._progress.Refresher on a terminal
        self._trainer: Any = None

    @property
    def bar(self) -> Any:
        """The bar of the training feed (0.1's single bar), or ``None``."""
        return next(iter(self.bars.values()), None)

    def setup(self, trainer: Any) -> None:
        """Attach to the states that open, take from and leave each feed of the trainer's lifecycles."""
        from statetrainer import _progress

        self._trainer = trainer
        self._bindings = _progress.feed_bindings(type(trainer).lifecycles().values(), self.feeds)
        for state in self._bindings:
            trainer._statetrainer.registry.add(state, self._enter)

    def _enter(self, trainer: Any) -> None:
        """A state of a feed's loop: open, advance or close that feed's bar."""
        rt = trainer._statetrainer
        for action, feed in self._bindings.get(rt.driver.position.state_name or "", ()):
            if action == "open":
                self._open(trainer, feed)
            elif action == "take":
                self._advance(trainer, feed)
            else:
                self._close_bar(feed)

    def _open(self, trainer: Any, feed: str) -> None:
        from statetrainer import _progress

        self._close_bar(feed)
        rt = trainer._statetrainer
        spec = rt.spec.feed(feed) if rt.spec is not None and feed in [f.name for f in rt.spec.feeds] else None
        total = _progress.feed_length(trainer, spec)
        training = spec is not None and spec.counts_steps
        self.bars[feed] = _progress.live_bar(
            total=total, leave=self.leave, file=self._stream(), desc=_progress.describe(trainer, feed, spec),
            live=lambda bar: _progress.postfix(trainer, bar, self._loss if training else ""))
        self._start_helpers()

    def _advance(self, trainer: Any, feed: str) -> None:
        bar = self.bars.get(feed)
        if bar is None:
            return
        bar.update(1)
        if bar.n % self.refresh_every == 0:
            loss = getattr(trainer, "loss", None)
            if loss is not None:
                self._loss = f"{float(loss.detach() if hasattr(loss, 'detach') else loss):.4f}"

    def _stream(self) -> Any:
        import sys

        if self.file is not None:
            return self.file
        return sys.stderr

    def _start_helpers(self) -> None:
        from statetrainer import _progress

        if self._printer is None:
            self._printer = _progress.PrintAboveBars.install(self.bars)
        if self._refresher is None and self.live_interval > 0 and _progress.is_terminal(self._stream()):
            self._refresher = _progress.Refresher(self.bars, self.live_interval)

    def teardown(self, trainer: Any) -> None:
        for feed in list(self.bars):
            self._close_bar(feed)
        if self._refresher is not None:
            self._refresher.stop()
            self._refresher = None
        if self._printer is not None:
            self._printer.uninstall()
            self._printer = None

    def _close_bar(self, feed: str) -> None:
        bar = self.bars.pop(feed, None)
        if bar is not None:
            bar.close()


@_declared
class CSVLogger(Callback):
    """One row per epoch (epoch, seconds since the run started, every logged metric) in ``path``.

    ``path`` defaults to ``RUN_DIR/metrics.csv``, rewritten atomically each epoch. Values
    logged with ``trainer.log(name, value, on_step=True)`` also go, one row per value, to
    ``steps_path`` (default: ``metrics_steps.csv`` beside ``path``) with the columns
    ``step,epoch,metric,value``; that file grows by appending at each epoch's end, and a
    resumed run first cuts it back to what its checkpoint had written.
    """

    STEP_FIELDS = ("step", "epoch", "metric", "value")

    def __init__(self, path: str | os.PathLike[str] | None = None,
                 steps_path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else None
        self.steps_path = Path(steps_path) if steps_path else None
        self.rows: list[dict[str, Any]] = []
        self.steps_written = 0
        self._trim = False

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows], "steps_written": self.steps_written}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state["rows"]]
        self.steps_written = int(state.get("steps_written", 0))
        self._trim = True

    @at(EPOCH_END)
    def write_row(self, trainer: Any) -> None:
        """Add this epoch's row and rewrite the file atomically; append this epoch's step values."""
        from statetrainer._runtime import elapsed_since

        rt = trainer._statetrainer
        row = {"epoch": _epoch(trainer), "seconds": elapsed_since(rt.started)}
        row.update(rt.metrics.compute())
        self.rows.append(row)
        steps = rt.metrics.steps()
        path = self._path(trainer)
        from statetrainer import parallel

        if path is None or not parallel.is_main_process():
            return
        self._write_epochs(path)
        if steps:
            self._append_steps(self.steps_path or path.with_name(path.stem + "_steps.csv"), steps, _epoch(trainer))

    def _path(self, trainer: Any) -> Path | None:
        run_dir = trainer._statetrainer.settings.run_dir
        return self.path or (Path(run_dir) / "metrics.csv" if run_dir else None)

    def _write_epochs(self, path: Path) -> None:
        fields: list[str] = []
        for r in self.rows:
            fields += [k for k in r if k not in fields]
        from statetrainer.checkpoint import atomic_write

        def write(handle: Any) -> None:
            import io

            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)
            handle.write(text.getvalue().encode())

        atomic_write(path, write)

    def _append_steps(self, path: Path, steps: list[tuple[int, str, float]], epoch: int | None) -> None:
        if self._trim or self.steps_written == 0:
            self._cut_steps(path)
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(self.STEP_FIELDS)
            writer.writerows((step, epoch, name, value) for step, name, value in steps)
        self.steps_written += len(steps)

    def _cut_steps(self, path: Path) -> None:
        """Keep the header and the first ``steps_written`` rows (a resumed run's, or none for a new run)."""
        self._trim = False
        if not path.exists():
            return
        keep = path.read_text().splitlines(keepends=True)[: 1 + self.steps_written] if self.steps_written else []
        from statetrainer.checkpoint import atomic_write

        def write(handle: Any) -> None:
            handle.write("".join(keep).encode())

        atomic_write(path, write)
        if not keep:
            path.unlink()


@_declared
class TensorBoardLogger(Callback):
    """Write every logged metric per epoch as TensorBoard scalars (needs ``tensorboard``).

    Epoch means are written at step = epoch; values logged with ``on_step=True`` are written
    at step = the global step under ``<name>_step`` (at each epoch's end: no sync per batch).
    """

    def __init__(self, log_dir: str | os.PathLike[str] | None = None) -> None:
        self.log_dir = log_dir
        self.writer: Any = None

    def setup(self, trainer: Any) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "TensorBoardLogger needs the tensorboard package: pip install 'statetrainer[tensorboard]'"
            ) from exc
        self._writer_cls = SummaryWriter

    @at(EPOCH_END)
    def write_scalars(self, trainer: Any) -> None:
        """This epoch's means as scalars at step = epoch, and its step values at their global step."""
        rt = trainer._statetrainer
        if self.writer is None:
            run_dir = rt.settings.run_dir
            folder = self.log_dir or (Path(run_dir) / "tensorboard" if run_dir else "runs/tensorboard")
            self.writer = self._writer_cls(log_dir=str(folder))
        for name, value in rt.metrics.compute().items():
            self.writer.add_scalar(name, value, _epoch(trainer))
        for step, name, value in rt.metrics.steps():
            self.writer.add_scalar(f"{name}_step", value, step)
        self.writer.flush()

    def teardown(self, trainer: Any) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@_declared
class LRSchedulerStep(Callback):
    """Step an LR scheduler each epoch (or each batch); ``ReduceLROnPlateau`` gets ``monitor``.

    It attaches to the role its ``interval`` needs only: ``epoch_end`` for ``"epoch"``,
    ``batch_end`` for ``"batch"`` (a lifecycle without batch ends takes epoch steps).
    """

    def __init__(self, scheduler: Any, interval: str = "epoch", monitor: str | None = None) -> None:
        if interval not in ("epoch", "batch"):
            raise ValueError(f"interval must be 'epoch' or 'batch', got {interval!r}")
        self.scheduler, self.interval, self.monitor = scheduler, interval, monitor

    @_only_if(lambda self: self.interval == "batch")
    @at(BATCH_END)
    def step_batch(self, trainer: Any) -> None:
        """Step after each training item (``interval="batch"``)."""
        self.scheduler.step()

    @_only_if(lambda self: self.interval == "epoch")
    @at(EPOCH_END)
    def step_epoch(self, trainer: Any) -> None:
        """Step at each epoch's end (``interval="epoch"``), with the monitored value if given."""
        if self.monitor is not None:
            self.scheduler.step(_metric(trainer, self.monitor))
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])


@_declared
class StateTimer(Callback):
    """Cumulative wall time and visits per state, from the driver's transitions.

    Checkpointed: a resumed run's table goes on from the interrupted run's (the visits of an
    interrupted and resumed run are an uninterrupted run's; the time spent restoring is in no
    state). Unlike the other checkpointed callbacks it may be added to or left out of a
    resumed trainer (``--profile`` on one run only): it then starts afresh.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self.visits: dict[str, int] = {}
        self._last: tuple[str, float] | None = None
        self._runtime: Any = None
        self._resuming = False  # loaded from a checkpoint; the resumed run's first entry not yet counted
        self._resume_seq = 0  # the trace number of the resume entry

    def setup(self, trainer: Any) -> None:
        self._runtime = trainer._statetrainer
        self._runtime.driver.observers.append(self._observe)

    def _observe(self, source: str, target: str) -> None:
        now = self.clock()
        if self._resuming:
            self._settle(source)
        if self._last is not None and self._last[0] == source:
            self.seconds[source] = self.seconds.get(source, 0.0) + now - self._last[1]
        self.visits[target] = self.visits.get(target, 0) + 1
        self._last = (target, now)

    def _settle(self, source: str | None = None) -> None:
        """Count the state a resumed run entered first. The machine moves on from the
        checkpointed state (the trace's ``resume`` entry) into the next one without a transition
        observers see; the trace's entry after the resume entry names it. ``source``: called for
        a transition from ``source``; when nothing is recorded after the resume entry yet, that
        transition is the resume's own and is counted as any other."""
        trace = self._runtime.driver.trace
        recorded = trace.total - self._resume_seq  # entries since the resume entry, itself included
        if recorded < 2:
            self._resuming = source is None
            return
        first = self._resume_seq + 1
        entered = next((e.state for e in trace.tail(recorded)[:2] if e.seq == first), source)
        if entered is not None:
            self.visits[entered] = self.visits.get(entered, 0) + 1
        self._resuming = False

    def teardown(self, trainer: Any) -> None:
        if self._resuming:  # resumed into a final state: no transition was observed
            self._settle()
            self._resuming = False

    def state_dict(self) -> dict[str, Any]:
        """The visits and seconds per state so far (a checkpoint keeps them)."""
        if self._resuming:
            self._settle()
        return {"seconds": dict(self.seconds), "visits": dict(self.visits)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seconds = {str(k): float(v) for k, v in state["seconds"].items()}
        self.visits = {str(k): int(v) for k, v in state["visits"].items()}
        self._last = None  # the clock of another process: the resumed state's time is not counted
        if self._runtime is not None:  # restored for a resume: its trace numbering starts at the resume entry
            self._resume_seq = self._runtime.driver.trace.total
            self._resuming = True

    def table(self) -> list[tuple[str, int, float]]:
        """``(state, visits, seconds)`` rows, slowest first."""
        if self._resuming:
            self._settle()
        names = set(self.seconds) | set(self.visits)
        rows = [(n, self.visits.get(n, 0), self.seconds.get(n, 0.0)) for n in names]
        return sorted(rows, key=lambda r: -r[2])
