"""Serving boundary requests: checkpoints and signal stops, at the states that allow them.

The driver calls :func:`serve` after a state's calls when requests are queued (see
:class:`statetrainer.driver.Control` for the order). In a lifecycle that declares
resumable states, every request waits for one: a checkpoint there resumes exactly, and a
signal stop writes one before it stops. Two requests at one boundary both happen: an
explicit ``save_checkpoint(path)`` writes its file, the automatic requests (periodic,
epoch, signal) share one run-directory checkpoint, then a signal stop becomes a stop.

Under data parallel every rank runs the same machine and must take the same edges: a
``stop_epoch()`` or ``skip_batch()`` made on one rank in a state outside a ``no_grad``
region (where DDP's collectives run) is held back, and after that state's calls the ranks
agree on it (one small all-reduce, at the states that have such a control edge only): every
rank takes the edge, or none does. A standing ``agree`` request keeps :func:`serve` called
after each state while the run is distributed; a single process never pays for it.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from statetrainer.driver import Program, Request

#: The standing request of a distributed run (see the module docstring).
AGREE = Request("agree")
#: The control guards whose edges make ranks agree after a state.
_AGREED_GUARDS = {"epoch_stop_requested": "epoch_stop", "skip_requested": "skip"}


def begin_run(trainer: Any, spec: Any) -> None:
    """A top-level run starts: under data parallel, the states after which ranks agree on requests."""
    from statetrainer import parallel

    rt = trainer._statetrainer
    rt.dist_requests = set()
    rt.agreeing = frozenset()
    if not parallel.distributed():
        return
    quiet = spec.no_grad_states()
    rt.agreeing = frozenset(
        e.source for e in spec.edges if e.source not in quiet and any(g in _AGREED_GUARDS for g in e.guard)
    )
    rt.driver.control.add(AGREE)


def serve(trainer: Any, program: Program, state: int) -> None:
    """Serve the queued requests that can be served after ``state``'s calls; requeue the rest."""
    rt = trainer._statetrainer
    ctl = rt.driver.control
    name = program.names[state]
    if rt.agreeing:
        _agree(rt, name)
        if ctl.requests == [AGREE]:
            return
    spec = program.table.lifecycle
    needs_resumable = bool(spec.with_role("resumable"))
    here = spec.state(name).has("resumable")
    if needs_resumable and not here:
        return  # nothing can be served here; the requests stay queued for the next resumable state
    requests = [r for r in ctl.take_requests() if r is not AGREE]
    if rt.agreeing:
        ctl.add(AGREE)
    explicit = [r.path for r in requests if r.kind == "checkpoint" and r.path is not None]
    signals = [r for r in requests if r.kind == "signal"]
    automatic = any(r.kind == "checkpoint" and r.path is None for r in requests)
    automatic |= bool(signals) and needs_resumable
    for path in explicit:
        write(trainer, Path(path), name)
    if automatic and rt.settings.run_dir is not None:
        write_automatic(trainer, name)
    for request in signals:
        _stop_for(rt, request)
    ctl.pending = ctl.stop or ctl.epoch_stop or ctl.skip or bool(ctl.requests)


def _agree(rt: Any, state: str) -> None:
    """Data parallel: after ``state``, every rank takes the epoch stop or skip any rank asked for."""
    from statetrainer import parallel

    if state not in rt.agreeing:
        return
    asked = parallel.any_ranks([what in rt.dist_requests for what in ("epoch_stop", "skip")])
    rt.dist_requests = set()
    for what, agreed in zip(("epoch_stop", "skip"), asked):
        if agreed:
            rt.driver.control.request(what)


def _stop_for(rt: Any, request: Request) -> None:
    signum = request.signum or signal.SIGTERM
    rt.driver.control.request("stop", f"signal {signal.Signals(signum).name}")
    rt.driver.position.status = "stopping"


def write(trainer: Any, path: Path, state: str) -> None:
    """Write a checkpoint of ``trainer`` (its machine having completed ``state``) to ``path``."""
    from statetrainer import _resume, parallel

    if not parallel.is_main_process():
        return
    rt = trainer._statetrainer
    _resume.write(trainer, path, state)
    rt.log.info("checkpoint_written", path=str(path), state=state, global_step=rt.driver.position.global_step)


def write_automatic(trainer: Any, state: str) -> None:
    """The next automatic checkpoint in ``RUN_DIR/checkpoints``, named with the run's id; keep
    the run's last ``keep_checkpoints`` (other runs' files are never chosen nor pruned)."""
    from statetrainer import checkpoint as ck
    from statetrainer import parallel, rundir

    if not parallel.is_main_process():
        return
    rt = trainer._statetrainer
    folder = Path(rt.settings.run_dir) / ck.CHECKPOINT_DIR
    pos = rt.driver.position
    path = folder / rundir.checkpoint_name(rt.run_id, pos.global_step, rt.driver.trace.total)
    write(trainer, path, state)
    for old in ck.checkpoint_files(folder, rt.run_id)[: -rt.settings.keep_checkpoints]:
        old.unlink(missing_ok=True)
