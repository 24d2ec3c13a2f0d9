"""Running lifecycles: a top-level run, a nested run, one pass through a compound state.

* :func:`run_top` runs a lifecycle (or one compound's pass) as *the* run: status, run
  directory, signals, structlog events, failure handling and teardown.
* :func:`run_nested` runs a program inside a running one (``self.evaluate_epoch()`` from a
  hook, ``super().train_batch(args)`` from an override): one level deeper in the trace,
  the caller's position and grad mode restored when it returns.
* :func:`run_compound` is what a compound hook's default does when called.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from statetrainer._errors import SpecError, TrainerRunError
from statetrainer._runtime import Runtime
from statetrainer.callbacks import ON_EXCEPTION, check_hook_takes_item
from statetrainer.driver import Program
from statetrainer.spec import Lifecycle


def start(trainer: Any, name: str, resume_from: str | os.PathLike[str] | None = None) -> None:
    """Run lifecycle ``name`` as the trainer's run, or resume it from a checkpoint.

    ``resume_from`` is a checkpoint file, or a run directory (its newest readable
    checkpoint is used, falling back past corrupt ones with a warning).
    """
    from statetrainer._errors import CheckpointError, ConfigurationError

    if trainer._statetrainer.running:
        raise ConfigurationError(f"a run of {name!r} was started while a run is active; "
                                 f"start it after the current run returns")
    if resume_from is None:
        run_top(trainer, name)
        return
    from statetrainer import _resume, rundir
    from statetrainer import checkpoint as ck

    source = Path(resume_from)
    if source.is_dir():  # the newest good checkpoint of the run the directory holds
        inside = (source / ck.CHECKPOINT_DIR).is_dir()
        folder, run_dir = (source / ck.CHECKPOINT_DIR, source) if inside else (source, source.parent)
        source, data = ck.latest_good(folder, rundir.held_run_id(run_dir))
    else:
        data = ck.read_checkpoint(source)
    _resume.check_compatible(trainer, data, str(source))
    if data["lifecycle"] != name:
        raise CheckpointError(f"checkpoint {str(source)!r} is of lifecycle {data['lifecycle']!r}, not {name!r}")
    state = _resume.restore(trainer, data, str(source))
    run_top(trainer, name, start=state, resume=True)


def run_top(trainer: Any, name: str, *, start: str | None = None, resume: bool = False,
            scope: str | None = None) -> None:
    """Run lifecycle ``name`` from its initial state (or ``start``) as the trainer's run."""
    rt: Runtime = trainer._statetrainer
    spec = type(trainer).lifecycles()[name]
    check_run(trainer, spec)
    program = rt.program(spec, scope)
    from statetrainer import rundir
    from statetrainer._checkpointing import begin_run

    rundir.open_run(trainer, spec, resume)  # the directory's lock and the run's id; refusals write nothing
    pos, ctl = rt.driver.position, rt.driver.control
    if not resume:
        ctl.clear()
        rt.epoch_started = False
        rt.periodic_mark = 0
        rt.registry.reset_counts()
        pos.epoch = _epoch_value(trainer, spec)
        pos.batch = -1
    pos.depth = 0
    rt.spec = spec
    counting = next((f.name for f in spec.feeds if f.counts_steps), None)
    rt.step_feed = rt.feed(spec, counting) if counting else None
    # the feed the batch index counts: the step feed until a pass opens (a resumed one: its open feed)
    rt.batch_feed = next((f for f in rt.feeds.values() if f.active and f is not rt.step_feed), None) if resume else None
    rt.last_error = None
    rt.signal = rt.dist_stop = rt.stop_reason = None
    pos.status = "stopping" if ctl.stop else "running"
    rt.started = time.monotonic()
    outer_grad = rt.grad.outer()
    begin_run(trainer, spec)
    observer: Any = None
    error: BaseException | None = None
    first = program.table.index[start] if start else program.table.initial
    try:
        rt.recorder = _recorder(trainer, rt)
        _start_log(trainer, rt, name, resume, start)
        observer = _transition_logger(rt)
        if rt.recorder is not None:
            rt.recorder.start()
        from statetrainer._signals import handle_signals

        with handle_signals(trainer):
            rt.driver.run(program, first, resume=resume)
    except TrainerRunError as err:
        error = err
        fail(trainer, err)
        raise
    except BaseException as exc:
        error = exc
        pos.status = "failed"
        raise
    else:
        pos.status = "stopped" if ctl.stop else "finished"
        rt.stop_reason = ctl.stop_reason if ctl.stop else None
    finally:
        torch.set_grad_enabled(outer_grad)
        rt.grad.saved = None
        if observer is not None:
            rt.driver.observers.remove(observer)
        teardown(rt)
        if rt.recorder is not None:
            rt.recorder.stop(error)
        if error is None:
            pos.state = -1
        if error is None and pos.status == "stopped" and rt.signal is not None:
            # a Ctrl-C ends train() gracefully: say so, or a script goes on as if it had finished
            import signal

            rt.log.warning("run_stopped", signal=signal.Signals(rt.signal).name, lifecycle=name,
                           epoch=pos.epoch, global_step=pos.global_step,
                           resume="train(resume_from=RUN_DIR)" if rt.settings.run_dir is not None else None)
        rt.log.info("run_finished", status=pos.status, global_step=pos.global_step,
                    seconds=round(time.monotonic() - rt.started, 3))
        rt.log.close()
        rundir.close_run(trainer, error)


def run_nested(trainer: Any, program: Program, start: int) -> None:
    """Run ``program`` from ``start`` inside the current run, one level deeper."""
    rt: Runtime = trainer._statetrainer
    pos = rt.driver.position
    mode, saved = torch.is_grad_enabled(), rt.grad.saved
    rt.grad.saved = None
    pos.depth += 1
    try:
        rt.driver.run(program, start)
    finally:
        pos.depth -= 1
        if torch.is_grad_enabled() is not mode:
            torch.set_grad_enabled(mode)
        rt.grad.saved = saved


def run_compound(trainer: Any, name: str, *args: Any) -> None:
    """One pass through compound state ``name``'s body; ``args`` is the item it handles."""
    rt: Runtime = trainer._statetrainer
    running = rt.running
    key = (name, id(rt.spec) if running else None)
    found = rt.compounds.get(key)
    if found is None or found[2] is not rt.spec:
        spec = lifecycle_for(trainer, name)
        found = rt.compounds[key] = (spec, spec.state(name).item, rt.spec)
    spec, per_item = found[0], found[1]
    feed = rt.feed(spec, per_item) if per_item and args else None
    saved = (feed.peek, feed.blocked, feed.iterator) if feed is not None else None
    if feed is not None:  # the item is handed in: the pass takes it and sees no other
        feed.peek, feed.blocked, feed.iterator = args[0], True, iter(())
    try:
        if not running:
            run_top(trainer, spec.name, start=name, scope=name)
        else:
            program = rt.program(spec, name)
            run_nested(trainer, program, program.table.index[name])
    finally:
        if feed is not None and saved is not None:
            feed.peek, feed.blocked, feed.iterator = saved


def run_lifecycle(trainer: Any, name: str) -> None:
    """Run lifecycle ``name`` whole: as the run, or nested when a run is active (``test()`` from a hook)."""
    rt: Runtime = trainer._statetrainer
    if not rt.running:
        run_top(trainer, name)
        return
    spec = type(trainer).lifecycles()[name]
    program = rt.program(spec)
    run_nested(trainer, program, program.table.initial)


def lifecycle_for(trainer: Any, compound: str) -> Lifecycle:
    """The lifecycle a direct call of ``compound`` runs in: the one it starts, else the
    running one, else the first that has it."""
    specs: dict[str, Lifecycle] = type(trainer).lifecycles()
    for spec in specs.values():
        if spec.initial == compound:
            return spec
    running: Lifecycle | None = trainer._statetrainer.spec
    candidates = ([running] if running is not None else []) + list(specs.values())
    for spec in candidates:
        if compound in spec.state_names and spec.state(compound).compound:
            return spec
    raise AttributeError(f"{type(trainer).__name__} has no lifecycle with a compound state {compound!r}")


def check_run(trainer: Any, spec: Lifecycle) -> None:
    """What a run of ``spec`` needs from the trainer, checked before its first state."""
    from statetrainer import lifecycles
    from statetrainer._errors import ConfigurationError
    from statetrainer._program import overridden_compounds

    problems = reserved_state_problems(type(trainer), spec)
    if problems:
        raise SpecError(spec.name, problems)
    if spec.with_role("epoch_start"):
        lifecycles.check_epoch_counter(trainer, spec)
    for guard in spec.guards:
        if guard.check is not None:
            guard.check(trainer)
    hooks = [s.name for s in spec.states if s.item and not s.compound and callable(getattr(trainer, s.name, None))]
    hooks += [name for name in overridden_compounds(type(trainer), spec) if spec.state(name).item]
    for hook in hooks:
        try:
            check_hook_takes_item(trainer, hook)
        except TypeError as exc:
            raise ConfigurationError(str(exc)) from None


def reserved_state_problems(cls: type, spec: Lifecycle) -> list[str]:
    """States named like a statetrainer attribute of ``cls`` that is no hook of theirs.

    Entering such a state would call statetrainer's method (``log``, ``stop``, ...): a spec
    error, unless the class overrides the method (then it is meant as the state's hook).
    """
    from statetrainer import lifecycles

    hooks = {n for s in (*lifecycles.BUILTIN.values(), *lifecycles.GAN.values()) for n in s.state_names}
    problems = []
    for state in spec.state_names:
        if state.startswith("_") or state in hooks:
            continue
        owner = next((k for k in cls.__mro__ if state in vars(k)), None)
        if owner is None or not owner.__module__.startswith("statetrainer."):
            continue
        kind = "method" if callable(vars(owner)[state]) else "attribute"
        problems.append(
            f"state {state!r} is named like statetrainer's {owner.__name__}.{state} {kind}: entering it would "
            f"call that, not a hook of yours; rename the state (or override {state}() in your trainer)"
        )
    return problems


def fail(trainer: Any, err: TrainerRunError) -> None:
    """A run failed: record it, then run the ``on_exception`` callbacks (their own errors are noted)."""
    rt: Runtime = trainer._statetrainer
    rt.driver.position.status = "failed"
    rt.last_error = err
    rt.log.error("run_failed", state=err.state, callback=err.callback, epoch=err.epoch,
                 batch=err.batch, error=repr(err.__cause__))
    before, after = rt.registry.for_state(ON_EXCEPTION)
    for handle in (*before, *after):
        try:
            handle.fire(trainer, err)
        except Exception as exc:  # never mask the original failure
            err.add_note(f"{handle.name} (on_exception) also failed: {exc!r}")


def teardown(rt: Runtime) -> None:
    """However a run ends: close the feeds, run the callbacks' teardown, forget requests."""
    for feed in rt.feeds.values():
        feed.close()
    for fn in tuple(rt.teardown):
        try:
            fn()
        except Exception:  # teardown is best effort; the run's outcome stands
            pass
    rt.driver.control.clear()


def _recorder(trainer: Any, rt: Runtime) -> Any:
    """The run directory's writer (rank 0 only), kept while the run directory stays the same."""
    from statetrainer import parallel

    run_dir = rt.settings.run_dir
    if run_dir is None or not parallel.is_main_process():
        return None
    if rt.recorder is None or str(rt.recorder.folder) != str(run_dir):
        from statetrainer.inspect import RunRecorder

        return RunRecorder(trainer, run_dir, min_interval=rt.settings.status_interval)
    return rt.recorder


def _epoch_value(trainer: Any, spec: Lifecycle) -> int | None:
    if not spec.with_role("epoch_start"):
        return None
    value = getattr(trainer, spec.epochs.attr, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _start_log(trainer: Any, rt: Runtime, name: str, resume: bool, start: str | None) -> None:
    from statetrainer import parallel
    from statetrainer._log import RunLog

    rt.driver.rank = parallel.rank() if parallel.distributed() else None
    run_dir = rt.settings.run_dir
    context = {"trainer": type(trainer).__qualname__, "lifecycle": name, "run_dir": run_dir}
    events = Path(run_dir) / "events.jsonl" if run_dir is not None and rt.recorder is not None else None
    rt.log = RunLog(context, events)
    rt.log.info("run_started", resume=resume, state=start)


def _transition_logger(rt: Runtime) -> Any:
    if not rt.settings.log_transitions:
        return None
    log = rt.log

    def transition_taken(source: str, target: str) -> None:
        log.debug("transition_taken", source=source, target=target)

    rt.driver.observers.append(transition_taken)
    return transition_taken
