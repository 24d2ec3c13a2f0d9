"""Serving boundary requests: checkpoints and signal stops, at the states that allow them.

The driver calls :func:`serve` after a state's calls when requests are queued (see
:class:`statetrainer.driver.Control` for the order). In a lifecycle that declares
resumable states, every request waits for one: a checkpoint there resumes exactly, and a
signal stop writes one before it stops. Two requests at one boundary both happen: an
explicit ``save_checkpoint(path)`` writes its file, the automatic requests (periodic,
epoch, signal) share one run-directory checkpoint, then a signal stop becomes a stop.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from statetrainer.driver import Program, Request


def serve(trainer: Any, program: Program, state: int) -> None:
    """Serve the queued requests that can be served after ``state``'s calls; requeue the rest."""
    rt = trainer._statetrainer
    ctl = rt.driver.control
    spec = program.table.lifecycle
    needs_resumable = bool(spec.with_role("resumable"))
    here = spec.state(program.names[state]).has("resumable")
    if needs_resumable and not here:
        return  # nothing can be served here; the requests stay queued for the next resumable state
    requests = ctl.take_requests()
    explicit = [r.path for r in requests if r.kind == "checkpoint" and r.path is not None]
    signals = [r for r in requests if r.kind == "signal"]
    automatic = any(r.kind == "checkpoint" and r.path is None for r in requests)
    automatic |= bool(signals) and needs_resumable
    name = program.names[state]
    for path in explicit:
        write(trainer, Path(path), name)
    if automatic and rt.settings.run_dir is not None:
        write_automatic(trainer, name)
    for request in signals:
        _stop_for(rt, request)
    ctl.pending = ctl.stop or ctl.epoch_stop or ctl.skip or bool(ctl.requests)


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
    """The next automatic checkpoint in ``RUN_DIR/checkpoints``; keep the last ``keep_checkpoints``."""
    from statetrainer import checkpoint as ck
    from statetrainer import parallel

    if not parallel.is_main_process():
        return
    rt = trainer._statetrainer
    folder = Path(rt.settings.run_dir) / ck.CHECKPOINT_DIR
    pos = rt.driver.position
    path = folder / f"ckpt-{pos.global_step:09d}-{rt.driver.trace.total:012d}.pt"
    write(trainer, path, state)
    for old in ck.checkpoint_files(folder)[: -rt.settings.keep_checkpoints]:
        old.unlink(missing_ok=True)
