"""The run directory as a public contract: one run, one writer, paths relative to itself.

* **Identity.** A fresh run gets a run id (``uuid4().hex``); a resumed run keeps it. The id
  is in ``run.json`` (written by the CLI), ``status.json``, every line of ``trace.jsonl``
  (``run_id``), and every checkpoint: in its payload and in its file name
  (``checkpoints/ckpt-<run id>-<step>-<entry>.pt``), so choosing the checkpoint to resume
  from and pruning old ones look at the current run's files only.
* **One writer.** While a run writes its directory it holds an exclusive
  ``fcntl.flock`` on ``RUN_DIR/.lock``, a file naming the holder's pid and host; the
  operating system releases the lock when the process ends, however it ends. A second
  writer is refused with that pid; readers (``inspect``, ``verify-trace``, the web view)
  never lock. The lock is re-entrant within a process (the CLI holds it for the whole
  command, each run inside takes it again).
* **No accidental reuse.** A fresh run in a directory that holds another run is refused
  (``runs/x holds run 3f2a9c1e… (MyTrainer, epoch 7 of 20, stopped): pass --resume to
  continue it or --overwrite to replace it``), and so is a non-empty directory that holds
  no statetrainer run — before anything is written there. With ``overwrite`` the old
  run's files (statetrainer's own, listed in :data:`OWN_FILES`) are removed first; other
  files are left alone.
* **Relative paths.** Nothing in the directory names the directory itself, so a copy
  resumes into itself and a moved directory resumes where it now is.

Torch-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from statetrainer._errors import ConfigurationError

LOCK_FILE = ".lock"
RUN_FILE = "run.json"
STATUS_FILE = "status.json"
CHECKPOINT_DIR = "checkpoints"
#: Files of a run directory that statetrainer writes (``overwrite`` removes these only).
OWN_FILES = (
    RUN_FILE, STATUS_FILE, "trace.jsonl", "events.jsonl", "metrics.csv", "lifecycles.json",
    "lifecycle.dot", "lifecycle.svg", "dumps.txt", "model.pt", ".reserve",
)
#: Per-rank files of a data-parallel run.
OWN_PATTERNS = ("status.rank*.json", "failure.rank*.json")
#: Files statetrainer writes in ``checkpoints/``: run checkpoints and ModelCheckpoint's models.
CHECKPOINT_PATTERNS = ("ckpt-*.pt", "best.pt", "top-epoch*.pt", "epoch*.pt")
#: ``ckpt-<run id>-<step>-<entry>.pt``, or an id-less ``ckpt-<step>-<entry>.pt`` of statetrainer 0.1.
CHECKPOINT_NAME = re.compile(r"^ckpt-(?:(?P<run>[0-9a-f]{32})-)?(?P<step>\d+)-(?P<seq>\d+)\.pt$")


class RunDirError(ConfigurationError):
    """A run directory cannot be used by this run: another run's, another program's, locked, unwritable."""


def new_run_id() -> str:
    """A fresh run id: 32 hex digits."""
    return uuid.uuid4().hex


def short(run_id: str | None) -> str:
    """``3f2a9c1e…``: how messages name a run."""
    return f"{run_id[:8]}…" if run_id else "(no id: written by statetrainer 0.1)"


def checkpoint_name(run_id: str | None, step: int, seq: int) -> str:
    """The file name of a run's automatic checkpoint after ``step`` training steps and ``seq`` trace entries."""
    prefix = f"ckpt-{run_id}-" if run_id else "ckpt-"
    return f"{prefix}{step:09d}-{seq:012d}.pt"


def checkpoint_run(name: str) -> tuple[str | None, int, int] | None:
    """``(run id, step, entry)`` of a checkpoint file name; ``None`` when it is not one."""
    match = CHECKPOINT_NAME.match(name)
    if match is None:
        return None
    return match["run"], int(match["step"]), int(match["seq"])


# -- which run a directory holds --------------------------------------------------------


@attrs.frozen
class HeldRun:
    """What a run directory says about the run it holds (``None`` fields: not recorded)."""

    run_id: str | None
    trainer: str | None
    epoch: int | None
    num_epochs: int | None
    status: str | None

    def describe(self) -> str:
        """``run 3f2a9c1e… (MyTrainer, epoch 7 of 20, stopped)``."""
        facts = [self.trainer or "unknown trainer"]
        if self.epoch is not None:
            facts.append(f"epoch {self.epoch}" + (f" of {self.num_epochs}" if self.num_epochs is not None else ""))
        if self.status:
            facts.append(self.status)
        return f"run {short(self.run_id)} ({', '.join(facts)})"


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def checkpoint_runs(folder: str | os.PathLike[str]) -> list[str | None]:
    """The run ids of the checkpoints in ``folder``, the newest file's last."""
    found: list[tuple[float, str | None]] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        parsed = checkpoint_run(entry.name)
        if parsed is not None:
            with contextlib.suppress(OSError):
                found.append((entry.stat().st_mtime, parsed[0]))
    return [run for _, run in sorted(found, key=lambda x: x[0])]


def held_run(folder: str | os.PathLike[str]) -> HeldRun | None:
    """The run ``folder`` holds, from ``status.json``, ``run.json`` and the checkpoint names;
    ``None`` when it holds none (unreadable files still count as a run of unknown details)."""
    path = Path(folder)
    has_status, has_run = (path / STATUS_FILE).exists(), (path / RUN_FILE).exists()
    ids = checkpoint_runs(path / CHECKPOINT_DIR)
    if not (has_status or has_run or ids):
        return None
    status = _json_object(path / STATUS_FILE) or {}
    run = _json_object(path / RUN_FILE) or {}
    trainer = _text(status.get("trainer")) or _text(run.get("trainer"))
    return HeldRun(
        run_id=_text(status.get("run_id")) or _text(run.get("run_id")) or (ids[-1] if ids else None),
        trainer=trainer.rpartition(":")[2] if trainer else None,
        epoch=_count(status.get("epoch")),
        num_epochs=_count(status.get("num_epochs")),
        status=_text(status.get("status")),
    )


def held_run_id(folder: str | os.PathLike[str]) -> str | None:
    """The id of the run ``folder`` holds (``None``: none, or one without an id)."""
    held = held_run(folder)
    return held.run_id if held is not None else None


def foreign_entries(folder: str | os.PathLike[str]) -> list[str]:
    """What a directory holding no statetrainer run contains (``.lock`` aside), sorted."""
    try:
        return sorted(name for name in os.listdir(folder) if name != LOCK_FILE)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunDirError(f"cannot read run directory {str(folder)!r}: {exc.strerror}; check its permissions") from None


# -- refusing a fresh run ----------------------------------------------------------------


def _hint(cli: bool, folder: str) -> str:
    if cli:
        return "pass --resume to continue it or --overwrite to replace it"
    return (f"pass --resume to continue it or --overwrite to replace it (in Python: train(resume_from={folder!r}), "
            f"or overwrite=True to the trainer's constructor)")


def check_not_foreign(folder: str | os.PathLike[str], overwrite: bool, cli: bool = False) -> None:
    """Refuse a non-empty directory that holds no statetrainer run (unless ``overwrite``)."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise RunDirError(f"{str(folder)} is a file, not a directory: choose a run directory (new or empty)")
    if overwrite or held_run(folder) is not None:
        return
    entries = foreign_entries(folder)
    if entries:
        shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
        flag = "--overwrite" if cli else "overwrite=True to the trainer's constructor"
        raise RunDirError(
            f"{str(folder)} is not empty ({shown}) and holds no statetrainer run: choose a new or empty run "
            f"directory, or pass {flag} to write into it anyway (its files are kept unless they are statetrainer's)"
        )


def claim_fresh(folder: str | os.PathLike[str], trainer: str, overwrite: bool, cli: bool = False,
                dry: bool = False) -> None:
    """A fresh run may start in ``folder`` (the caller holds its lock): refuse another run's
    directory, or with ``overwrite`` remove that run's files first. ``dry``: check only (before
    the lock is taken, so that a refusal leaves the folder exactly as it was)."""
    held = held_run(folder)
    if held is None:
        check_not_foreign(folder, overwrite, cli)
        return
    if not overwrite:
        raise RunDirError(f"{str(folder)} holds {held.describe()}: {_hint(cli, str(folder))}")
    if not dry:
        remove_run(folder)


def remove_run(folder: str | os.PathLike[str]) -> list[str]:
    """Delete the statetrainer files of the run ``folder`` holds; returns their names."""
    path = Path(folder)
    victims = [path / name for name in OWN_FILES]
    victims += [p for pattern in OWN_PATTERNS for p in path.glob(pattern)]
    victims += [p for pattern in CHECKPOINT_PATTERNS for p in (path / CHECKPOINT_DIR).glob(pattern)]
    victims += stale_temps(path)
    removed = []
    for victim in victims:
        if victim.is_file():
            try:
                victim.unlink()
            except OSError as exc:
                raise RunDirError(f"cannot replace the run in {str(folder)}: removing {str(victim)!r} failed "
                                  f"({exc.strerror}); remove it by hand or choose another run directory") from None
            removed.append(str(victim.relative_to(path)))
    return removed


# -- the writer's lock -------------------------------------------------------------------


class _Held:
    __slots__ = ("fd", "count")

    def __init__(self, fd: int) -> None:
        self.fd, self.count = fd, 1


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def _key(folder: str | os.PathLike[str]) -> str:
    return os.path.realpath(folder)


def holds_lock(folder: str | os.PathLike[str]) -> bool:
    """True when this process holds ``folder``'s lock."""
    return _key(folder) in _HELD


def acquire(folder: str | os.PathLike[str]) -> None:
    """Take ``folder``'s exclusive writer lock (creating the folder); re-entrant within a process.

    Raises :class:`RunDirError` naming the holder's pid when another process holds it, or
    the operating system's reason when the folder cannot be written.
    """
    key = _key(folder)
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:
            held.count += 1
            return
        fd = _open_lock(Path(folder))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise RunDirError(
                f"{str(folder)} is being written by {holder} (it holds {LOCK_FILE}): one writer per run "
                f"directory; wait for that run to end or stop it, then try again"
            ) from None
        _HELD[key] = _Held(fd)
        _write_holder(fd)
        _clean_stale(Path(folder))


def release(folder: str | os.PathLike[str]) -> None:
    """Give back one hold of ``folder``'s lock; the last one unlocks it."""
    key = _key(folder)
    with _GUARD:
        held = _HELD.get(key)
        if held is None:
            return
        held.count -= 1
        if held.count == 0:
            del _HELD[key]
            os.close(held.fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def locked(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``folder``'s writer lock for the ``with`` block."""
    acquire(folder)
    try:
        yield
    finally:
        release(folder)


def unwritable(path: str | os.PathLike[str], exc: OSError) -> RunDirError:
    """The one-line error for a run directory that cannot be written."""
    where = exc.filename if exc.filename else str(path)
    return RunDirError(f"cannot write run directory {str(path)!r}: {exc.strerror} ({where}); "
                       f"choose a writable run directory")


def _open_lock(folder: Path) -> int:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise unwritable(folder, exc) from None


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        data = {}
    pid = data.get("pid") if isinstance(data, dict) else None
    host = data.get("host") if isinstance(data, dict) else None
    if not isinstance(pid, int):
        return "another process"
    return f"process {pid}" + (f" on {host}" if isinstance(host, str) and host != socket.gethostname() else "")


def _write_holder(fd: int) -> None:
    with contextlib.suppress(OSError):  # the lock holds even if the note cannot be written
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)


def stale_temps(folder: Path) -> list[Path]:
    """Temp files of statetrainer's atomic writes in ``folder`` (``.<name>.<random>.tmp``)."""
    found = [p for name in (*OWN_FILES, *OWN_PATTERNS) for p in folder.glob(f".{name}.*tmp")]
    return found + [p for name in CHECKPOINT_PATTERNS for p in (folder / CHECKPOINT_DIR).glob(f".{name}*.tmp")]


def _clean_stale(folder: Path) -> None:
    """Temp files a killed writer left (safe: this process is now the only writer)."""
    for stale in stale_temps(folder):
        with contextlib.suppress(OSError):
            stale.unlink()


# -- a run opens and closes its directory ------------------------------------------------


def open_run(trainer: Any, spec: Any, resume: bool) -> None:
    """A top-level run starts: take the run directory's lock and settle the run's identity.

    Refuses (before anything is written) a foreign non-empty directory, a directory another
    process writes, and a fresh run of the main lifecycle in a directory holding another
    run — unless the trainer was made with ``overwrite=True``, which replaces that run. A
    run of another lifecycle (``test()``) in a directory holding a run of the same trainer
    joins that run's record.
    """
    rt = trainer._statetrainer
    folder = rt.settings.run_dir
    if folder is None or not _main_process():
        rt.run_id = rt.run_id or new_run_id()
        return
    check_not_foreign(folder, rt.settings.overwrite)
    _identity(trainer, folder, spec, resume, dry=True)  # a refusal leaves the folder as it was (no lock file)
    acquire(folder)
    try:
        rt.run_id = _identity(trainer, folder, spec, resume)  # again, now that no other process writes
    except BaseException:
        release(folder)
        raise
    rt.locked_dir = folder


def close_run(trainer: Any, error: BaseException | None) -> None:
    """A top-level run ended: a data-parallel rank other than 0 records its failure; the lock is given back."""
    rt = trainer._statetrainer
    if error is not None and rt.settings.run_dir is not None and not _main_process():
        from statetrainer.inspect import write_rank_failure

        write_rank_failure(trainer, Path(rt.settings.run_dir), error)
    if rt.locked_dir is not None:
        release(rt.locked_dir)
        rt.locked_dir = None


def _identity(trainer: Any, folder: str, spec: Any, resume: bool, dry: bool = False) -> str:
    rt = trainer._statetrainer
    mine: str | None = rt.run_id
    held = held_run(folder)
    if held is None or (mine is not None and held.run_id == mine):
        return mine or new_run_id()
    if resume and (mine is None or held.run_id is None):
        return mine or held.run_id or new_run_id()  # a checkpoint of statetrainer 0.1, or its directory
    same_trainer = held.trainer in (None, type(trainer).__qualname__)
    if not resume and mine is None and same_trainer and spec.name != _main_lifecycle(trainer):
        return held.run_id or new_run_id()  # test() after a training run: the same run's record
    if rt.settings.overwrite:
        if not dry:
            remove_run(folder)
        return mine or new_run_id()
    if resume:
        raise RunDirError(f"{folder} holds {held.describe()}, not run {short(mine)} that is being resumed: resume "
                          f"into its own run directory or a new one, or pass overwrite=True to the trainer's "
                          f"constructor to replace that run")
    raise RunDirError(f"{folder} holds {held.describe()}: {_hint(False, folder)}")


def _main_lifecycle(trainer: Any) -> str:
    return str(next(iter(type(trainer).lifecycles())))


def _main_process() -> bool:
    from statetrainer import parallel  # a trainer runs: torch is imported already

    return parallel.is_main_process()
