"""What ``statetrainer run`` prints: the epoch table, the resume line, where a failure happened.

* :class:`EpochTable`: one row per epoch of the means ``trainer.log`` collected, printed
  from the ``epoch_end`` role (after the state's hook and callbacks), read from the
  runtime — never from a trainer method a subclass could shadow.
* :func:`announce_resume`: ``resumed run 3f2a9c1e… at epoch 2, batch 3 (checkpoint …)``,
  printed at the resumed machine's first transition, followed by the table's header; the
  position and the checkpoint are read from the trace's ``resume`` entry (the machine has
  moved on by then).
* :func:`user_frame`: the last traceback frame in the user's code (not statetrainer's,
  torch's or the standard library's), for a failure's ``at FILE:LINE`` line.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import time
import traceback
from pathlib import Path
from typing import Any

#: Width of a value column (a metric's name is the header; longer names widen their column).
COLUMN = 10


class EpochTable:
    """Prints ``epoch``, each logged metric's mean and the epoch's seconds, one row per epoch.

    The columns are the metrics of the first row (or, on resume, of the last finished
    epoch); a metric that appears later adds a column and the header is printed again; a
    metric missing from an epoch (evaluation not due) shows ``-``.
    """

    def __init__(self) -> None:
        self.columns: list[str] = []
        self.headed = False  # the header was printed (once, even when nothing is logged)
        self.started = time.monotonic()

    def attach(self, trainer: Any) -> None:
        """Attach to the ``epoch_start`` (timing) and ``epoch_end`` roles of ``trainer``'s main lifecycle."""
        from statetrainer._runtime import main_lifecycle
        from statetrainer.roles import EPOCH_END, EPOCH_START

        spec = main_lifecycle(type(trainer))
        if spec.with_role("epoch_start"):
            trainer.on(EPOCH_START, self.epoch_started, order=-(10**6))
        if spec.with_role("epoch_end"):
            trainer.on(EPOCH_END, self.epoch_ended, order=10**6)  # after the hook and the other callbacks

    def epoch_started(self, trainer: Any) -> None:
        """Note when the epoch began."""
        self.started = time.monotonic()

    def epoch_ended(self, trainer: Any) -> None:
        """Print this epoch's row (and the header, when the columns are new)."""
        rt = trainer._statetrainer
        values = rt.metrics.compute()
        new = [name for name in values if name not in self.columns]
        if new or not self.headed:
            self.columns += new
            self.print_header()
        epoch = rt.driver.position.epoch
        cells = [_cell(values.get(name), name) for name in self.columns]
        print("  ".join([f"{'-' if epoch is None else epoch:>5}", *cells, f"{time.monotonic() - self.started:>6.1f}s"]))
        self.started = time.monotonic()

    def print_header(self) -> None:
        """``epoch  train_loss  valid_loss    time``."""
        self.headed = True
        print("  ".join([f"{'epoch':>5}", *(f"{name:>{max(COLUMN, len(name))}}" for name in self.columns),
                        f"{'time':>7}"]))

    def resume_from(self, trainer: Any) -> None:
        """Take the columns of the last finished epoch, and print the header when there is one."""
        history = trainer._statetrainer.metrics.history
        if history:
            self.columns = [name for name in history[-1] if name != "epoch"]
            self.print_header()


def _cell(value: float | None, name: str) -> str:
    width = max(COLUMN, len(name))
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.4f}"


def announce_resume(trainer: Any, run_dir: str, table: EpochTable | None) -> Any:
    """Print the resume line (and the table header) at the resumed machine's first transition.

    Returns a function that prints it if the run ended, or failed, before a transition
    (resumed at its final state); it prints nothing when the line was already printed, or
    when nothing was resumed (no ``resume`` entry in the trace: the resume was refused).
    """
    rt = trainer._statetrainer
    printed = False

    def resumed(source: str = "", target: str = "") -> None:
        nonlocal printed
        if resumed in rt.driver.observers:
            rt.driver.observers.remove(resumed)  # once: the transitions after it cost nothing
        if printed:
            return
        line = resume_line(trainer, run_dir)
        if line is None:
            return
        printed = True
        print(line)
        if table is not None:
            table.resume_from(trainer)

    trainer.observe(resumed)
    return resumed


def resume_line(trainer: Any, run_dir: str) -> str | None:
    """``resumed run 3f2a9c1e… at epoch 2, batch 3 (checkpoint checkpoints/ckpt-….pt)``: the
    position of the trace's ``resume`` entry, which is the checkpoint's (by the first
    transition the machine has entered the next state, maybe taken an item); ``None``
    without a resume entry."""
    from statetrainer import rundir

    rt = trainer._statetrainer
    entry = next((e for e in reversed(rt.driver.trace.entries()) if e.note == "resume"), None)
    if entry is None:
        return None
    batch = "-" if entry.batch is None else str(entry.batch)
    where = checkpoint_used(run_dir, rt.run_id, entry.seq)
    return f"resumed run {rundir.short(rt.run_id)} at epoch {entry.epoch}, batch {batch} (checkpoint {where})"


def checkpoint_used(run_dir: str, run_id: str | None, seq: int) -> str:
    """The checkpoint a resume read, relative to the run directory: the run's automatic
    checkpoint written when its trace had ``seq`` entries (the resume entry's number)."""
    from statetrainer import checkpoint, rundir

    folder = Path(run_dir) / checkpoint.CHECKPOINT_DIR
    found = [p for p in checkpoint.checkpoint_files(folder, run_id) if (rundir.checkpoint_run(p.name) or
                                                                        (None, -1, -1))[2] == seq]
    return str(found[-1].relative_to(run_dir)) if found else f"in {folder}"


# -- where a failure happened -------------------------------------------------------------


def _library_folders() -> tuple[str, ...]:
    """Folders whose code is not the user's: statetrainer, the standard library, installed packages."""
    import statetrainer

    paths = sysconfig.get_paths()
    folders = {str(Path(statetrainer.__file__).parent), paths["stdlib"], paths["platstdlib"], paths["purelib"],
               paths["platlib"]}
    return tuple(os.path.join(os.path.realpath(f), "") for f in folders)


def user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The last frame of ``exc``'s traceback that runs the user's code, or ``None``."""
    library = _library_folders()
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        name = frame.filename
        if name.startswith("<") or os.path.realpath(name).startswith(library):
            continue
        return frame
    return None


def where_line(exc: BaseException) -> str | None:
    """``at first_trainer.py:42 in training_step: loss = self.model(x)``, or ``None`` without a user frame."""
    frame = user_frame(exc)
    if frame is None:
        return None
    code = f": {frame.line.strip()}" if frame.line else ""
    return f"at {shown_path(frame.filename)}:{frame.lineno} in {frame.name}{code}"


def shown_path(name: str) -> str:
    """``name`` relative to the working directory when it is inside it, else as it is."""
    try:
        return str(Path(name).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return name


def print_traceback(exc: BaseException) -> None:
    """The full traceback of ``exc`` and its causes, on stderr."""
    traceback.print_exception(exc, file=sys.stderr)
