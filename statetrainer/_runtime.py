"""Everything a trainer keeps while it runs, behind one attribute: ``trainer._statetrainer``.

The trainer's own attributes stay farabio's (and the user's); statetrainer's live in a
:class:`Runtime`, so a user's names never collide with ours. The runtime carries out what
the roles of :mod:`statetrainer.roles` mean — epochs, feeds, no-grad regions, periodic and
epoch checkpoint requests, control requests — for whichever lifecycle runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs

from statetrainer._errors import ConfigurationError, NotRunningError
from statetrainer._feeds import FeedState
from statetrainer.callbacks import Registry
from statetrainer.driver import Driver, Program, Request
from statetrainer.metrics import Metrics
from statetrainer.spec import Lifecycle

#: Which control guard each request needs an edge for.
_CONTROL_GUARDS = {"stop": "stop_requested", "epoch_stop": "epoch_stop_requested", "skip": "skip_requested"}


@attrs.define
class Settings:
    """How a trainer runs: where it records, when it checkpoints, signals, status rate."""

    run_dir: str | None = None
    checkpoint_every: int | None = None
    checkpoint_epochs: bool = False
    keep_checkpoints: int = 3
    handle_signals: bool = True
    status_interval: float = 0.5
    log_transitions: bool = False
    trace_size: int = 10_000
    overwrite: bool = False  # a fresh run may replace the run its run_dir holds (or write into a foreign folder)

    def check(self) -> None:
        """Refuse values no run could use, naming the argument."""
        every = self.checkpoint_every
        if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise ConfigurationError(f"checkpoint_every must be an int >= 1 (batches), got {every!r}")
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 1:
            raise ConfigurationError(f"keep_checkpoints must be an int >= 1, got {self.keep_checkpoints!r}")
        if not isinstance(self.status_interval, (int, float)) or self.status_interval < 0:
            raise ConfigurationError(f"status_interval must be >= 0 seconds, got {self.status_interval!r}")


class GradMode:
    """Enter and leave ``no_grad`` regions; the mode from before the region is restored."""

    __slots__ = ("saved",)

    def __init__(self) -> None:
        self.saved: bool | None = None

    def enter(self) -> None:
        """Disable grad, remembering the mode to restore (once per region)."""
        import torch

        if self.saved is None:
            self.saved = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def exit(self) -> None:
        """Restore the mode from before the region (nothing when outside one)."""
        if self.saved is not None:
            import torch

            torch.set_grad_enabled(self.saved)
            self.saved = None

    def outer(self) -> bool:
        """The grad mode outside any region."""
        import torch

        return self.saved if self.saved is not None else torch.is_grad_enabled()


class Runtime:
    """A trainer's statetrainer-side state: driver, callbacks, feeds, settings, run flags."""

    def __init__(self, trainer: Any, settings: Settings) -> None:
        settings.check()
        self.trainer = trainer
        self.settings = settings
        self.driver = Driver(settings.trace_size)
        self.registry = Registry(lambda: trainer_states(type(trainer)), lambda: main_roles(type(trainer)))
        self.registry.on_change = self.refresh_programs
        self.feeds: dict[str, FeedState] = {}
        self.grad = GradMode()
        self.epoch_started = False  # an epoch began in this run: the next one is the counter + 1
        self.batch_counted = False  # an overridden train_batch's runner counted the item
        self.metrics = Metrics()
        self.bundles: list[Any] = []
        self.teardown: list[Callable[[], Any]] = []
        self.recorder: Any = None
        self.started = 0.0
        self.signal: int | None = None
        self.stop_reason: str | None = None  # why the last run stopped (a stop request's reason)
        self.dist_stop: str | None = None
        self.last_error: BaseException | None = None
        self.spec: Lifecycle | None = None  # the lifecycle of the current (or last) top-level run
        self.step_feed: FeedState | None = None  # the running lifecycle's step-counting feed
        self.periodic_mark = 0  # global_step // checkpoint_every at the last periodic request
        self.run_id: str | None = None  # the run's identity (statetrainer.rundir): kept across resumes
        self.locked_dir: str | None = None  # the run directory whose writer lock this run holds
        self.agreeing: frozenset[str] = frozenset()  # data parallel: states after which ranks agree on requests
        self.dist_requests: set[str] = set()  # data parallel: epoch_stop/skip waiting for the ranks' agreement
        self.unsaved_warned = False
        self._programs: dict[tuple[int, str | None], tuple[int, Lifecycle, Program]] = {}
        #: A compound hook's lifecycle per (hook, running lifecycle): (spec, its item feed, running spec).
        self.batch_feed: FeedState | None = None
        self.compounds: dict[tuple[str, int | None], tuple[Lifecycle, str | None, Lifecycle | None]] = {}
        from statetrainer._log import RunLog

        self.log: Any = RunLog({}, None)

    @property
    def running(self) -> bool:
        """True while a top-level run is in progress."""
        return self.driver.position.status in ("running", "stopping")

    # -- programs ------------------------------------------------------------------------
    def program(self, spec: Lifecycle, scope: str | None = None) -> Program:
        """The program of ``spec`` (or of one pass through compound ``scope``), built once
        per set of callbacks: calling a compound hook per batch costs a dictionary lookup."""
        key = (id(spec), scope)
        cached = self._programs.get(key)
        if cached is not None and cached[0] == self.registry.version and cached[1] is spec:
            return cached[2]
        from statetrainer._program import Builder

        program = Builder(self, self.trainer, spec, scope).build()
        self._programs[key] = (self.registry.version, spec, program)
        return program

    def refresh_programs(self) -> None:
        """Callbacks changed during a run: swap every built program's calls in place, so
        the change takes effect from the next state entered (never mid-state)."""
        if not self.running:
            return
        from statetrainer._program import Builder

        for key, (_, spec, program) in list(self._programs.items()):
            builder = Builder(self, self.trainer, spec, key[1])
            program.calls[:] = builder.calls()
            program.call_names.update(builder.names)
            self._programs[key] = (self.registry.version, spec, program)

    # -- feeds -------------------------------------------------------------------------
    def feed(self, spec: Lifecycle, name: str) -> FeedState:
        """The live state of feed ``name`` (shared by the lifecycles that declare it)."""
        state = self.feeds.get(name)
        if state is None:
            opened_in = next((s.name for s in spec.states if s.opens == name), None)
            state = self.feeds[name] = FeedState(spec.feed(name), opened_in)
            state.capture_rng = _capture_rng
        return state

    def open_feed(self, feed: FeedState) -> None:
        """A pass over ``feed`` begins: forget the old iterator, note the RNG the pass starts with."""
        from statetrainer import steps_data

        feed.close()
        feed.active = True
        self.batch_feed = feed  # the feed the position's batch index now counts
        pos = self.driver.position
        pos.batch = -1
        loader = getattr(self.trainer, feed.spec.loader, None) if feed.spec.loader else None
        if pos.epoch is not None and loader is not None:
            steps_data.set_sampler_epoch(loader, pos.epoch)
        feed.open_rng = _capture_rng(loader)

    def close_feed(self, feed: FeedState) -> None:
        """The pass over ``feed`` is over; a training feed steps a partial gradient accumulation."""
        step = getattr(self.trainer, "default_step", None) if feed.spec.counts_steps else None
        if step is not None:
            step.flush()
        feed.close()

    # -- epochs ------------------------------------------------------------------------
    def next_epoch(self, spec: Lifecycle) -> int:
        """The epoch an ``epoch_start`` state would open now."""
        counter = spec.epochs
        if self.epoch_started:
            return int(getattr(self.trainer, counter.attr)) + 1
        return int(getattr(self.trainer, counter.first))

    def begin_epoch(self, spec: Lifecycle, advance: bool) -> None:
        """An epoch opens: advance the counter (unless a direct call's caller owns it)."""
        if advance:
            setattr(self.trainer, spec.epochs.attr, self.next_epoch(spec))
            self.epoch_started = True
        value = getattr(self.trainer, spec.epochs.attr, None)
        pos = self.driver.position
        pos.epoch = value if isinstance(value, int) and not isinstance(value, bool) else None
        pos.batch = -1

    def close_epoch(self, spec: Lifecycle, checkpoint: bool = True) -> None:
        """The epoch closes: ranks agree on stops, metrics close, the epoch checkpoint is requested."""
        pos = self.driver.position
        self._agree_on_stop()
        values = self.metrics.end_epoch(pos.epoch)
        self.log.info("epoch_finished", epoch=pos.epoch, global_step=pos.global_step, **values)
        if self.recorder is not None:
            self.recorder.write()
        if checkpoint and self.settings.checkpoint_epochs and self.settings.run_dir is not None:
            self.driver.control.add(Request("checkpoint"))

    def after_batch(self) -> None:
        """A training item is done: request the periodic checkpoint when ``checkpoint_every``
        more steps were taken since the last one (a batch end may follow several steps)."""
        every = self.settings.checkpoint_every
        mark = self.driver.position.global_step // every if every else 0
        if mark > self.periodic_mark and self.settings.run_dir is not None:
            self.periodic_mark = mark
            self.driver.control.add(Request("checkpoint"))

    def _agree_on_stop(self) -> None:
        from statetrainer import parallel

        if parallel.distributed() and parallel.any_rank(self.dist_stop is not None):
            self.driver.control.request("stop", self.dist_stop or "stop requested on another rank")
            self.driver.position.status = "stopping"

    # -- control -----------------------------------------------------------------------
    def request(self, what: str, name: str, reason: str | None = None) -> None:
        """A control request from ``stop()``, ``stop_epoch()`` or ``skip_batch()``."""
        if not self.running:
            raise NotRunningError(
                f"{name}() was called while no run is active; call it from a hook or callback "
                f"during train() or test()"
            )
        guard = _CONTROL_GUARDS[what]
        spec = self._running_spec()
        if spec is not None and not any(guard in e.guard for e in spec.edges):
            raise ConfigurationError(
                f"{name}() has no edge in lifecycle {spec.name!r}: declare control edges with guard "
                f"{guard!r} (for a stop: statetrainer.with_stop_edges(lifecycle, target=...))"
            )
        from statetrainer import parallel

        if what == "stop" and parallel.distributed() and spec is not None and spec.with_role("epoch_end"):
            # Every rank must take the same path: the ranks agree on stops at each epoch end.
            self.dist_stop = reason or "stop"
            return
        if what != "stop" and self.driver.position.state_name in self.agreeing:
            self.dist_requests.add(what)  # data parallel: every rank takes the edge, or none (_checkpointing.agree)
            return
        self.driver.control.request(what, reason)
        if what == "stop":
            self.driver.position.status = "stopping"

    def request_checkpoint(self, path: str | None) -> None:
        """``save_checkpoint()``: written at this state's end, or at the next resumable state."""
        if not self.running:
            raise NotRunningError(
                "save_checkpoint() was called while no run is active; call it from a hook or callback"
            )
        if path is None and self.settings.run_dir is None:
            raise ConfigurationError("save_checkpoint(): give a path, or give the trainer a run_dir")
        spec = self.spec
        if spec is not None and not spec.with_role("resumable"):
            raise ConfigurationError(
                f"save_checkpoint(): lifecycle {spec.name!r} declares no resumable state, so no checkpoint "
                f"could be resumed; give the states where no item is in flight roles={{'resumable'}}"
            )
        self.driver.control.add(Request("checkpoint", None if path is None else str(path)))

    def _running_spec(self) -> Lifecycle | None:
        name = self.driver.position.lifecycle
        if self.spec is not None and self.spec.name == name:
            return self.spec
        spec: Lifecycle | None = type(self.trainer).lifecycles().get(name or "")
        return spec

    def check_settings(self) -> None:
        """Checkpoint settings need roles of the main lifecycle: say which is missing."""
        spec = main_lifecycle(type(self.trainer))
        needs: list[tuple[str, str]] = []
        if self.settings.checkpoint_every:
            needs += [("checkpoint_every", "batch_end"), ("checkpoint_every", "resumable")]
        if self.settings.checkpoint_epochs:
            needs += [("checkpoint_epochs", "epoch_end"), ("checkpoint_epochs", "resumable")]
        for setting, role in needs:
            if not spec.with_role(role):
                raise ConfigurationError(
                    f"{setting}= needs a state with role {role!r}, and lifecycle {spec.name!r} has none; "
                    f"declare it: State(..., roles={{{role!r}}})"
                )


def _capture_rng(loader: Any) -> Any:
    from statetrainer import checkpoint

    return checkpoint.rng_state(loader)


def main_lifecycle(cls: type) -> Lifecycle:
    """A trainer class's main lifecycle: the first of ``cls.lifecycles()``."""
    specs: dict[str, Lifecycle] = cls.lifecycles()  # type: ignore[attr-defined]
    return next(iter(specs.values()))


def main_roles(cls: type) -> tuple[str, list[str]]:
    """The main lifecycle's name and the roles its states declare."""
    spec = main_lifecycle(cls)
    return spec.name, sorted({role for s in spec.states for role in s.roles})


def trainer_states(cls: type) -> list[str]:
    """Every state name a callback may attach to on a trainer of class ``cls``."""
    names: list[str] = []
    for spec in cls.lifecycles().values():  # type: ignore[attr-defined]
        names.extend(n for n in spec.state_names if n not in names)
    return names


def elapsed_since(started: float) -> float:
    """Seconds since ``started`` (a ``time.monotonic()`` value; 0 when never started)."""
    return round(time.monotonic() - started, 3) if started else 0.0
