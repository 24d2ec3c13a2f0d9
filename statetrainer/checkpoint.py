"""Model files and runtime checkpoints, written atomically.

Every file is written to a temporary file in the same folder, flushed and ``fsync``-ed,
then renamed over the target: a crash mid-write never replaces a good file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from statetrainer._errors import CheckpointError, ConfigurationError

MODEL_FILE = "model.pt"


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(fileobj)`` atomically (temp file, fsync, rename).

    The file gets the mode a plain ``open()`` would give it (``0o666`` less the umask), so a
    group sharing a run directory can read models and checkpoints. A failing write (a full
    disk, a read-only file system) raises :class:`OSError` naming ``path``, even when the
    writer (``torch.save``) reported it as something else; the previous file is kept.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _naming(exc, target) from exc
    sink = _Sink(os.fdopen(fd, "wb"))
    try:
        with sink.handle:
            write(sink)  # type: ignore[arg-type]
            sink.handle.flush()
            os.fsync(sink.handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        with _quiet():
            os.unlink(tmp)
        first = sink.error or (exc if isinstance(exc, OSError) else None)
        if first is not None:
            raise _naming(first, target) from exc
        raise
    _fsync_dir(target.parent)
    return target


class _Sink:
    """A file object that remembers the first ``OSError`` of a write: ``torch.save`` turns it
    into a ``RuntimeError`` ("file write failed") that no longer says why."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.handle.flush()

    def fileno(self) -> int:
        return self.handle.fileno()


def _naming(exc: OSError, target: Path) -> OSError:
    """``exc`` (``No space left on device``...) as an OSError of the same kind naming ``target``."""
    return OSError(exc.errno, exc.strerror or str(exc), str(target))


def _umask() -> int:
    """The process's umask (read from /proc where possible: setting it to read it races threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with _quiet():
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]


def model_path(trainer: Any) -> Path | None:
    """Where the model file goes: ``_model_path``, else ``RUN_DIR/model.pt``, else ``None``."""
    path = getattr(trainer, "_model_path", None)
    if path:
        return Path(path)
    run_dir = getattr(trainer, "run_dir", None)
    return Path(run_dir) / MODEL_FILE if run_dir else None


def unwrap(model: Any) -> Any:
    """The module inside ``DistributedDataParallel``/``DataParallel`` wrappers."""
    while hasattr(model, "module") and isinstance(model, torch.nn.Module) and isinstance(
        model.module, torch.nn.Module
    ):
        model = model.module
    return model


def save_state_dict(module: torch.nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save ``module``'s ``state_dict`` (unwrapped) to ``path`` atomically."""
    state = unwrap(module).state_dict()
    return atomic_write(path, lambda f: torch.save(state, f))


def _load(path: str | os.PathLike[str], what: str, missing_hint: str = "") -> Any:
    """``torch.load`` (CPU, weights only) with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} {str(p)!r} does not exist{missing_hint}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{what} {str(p)!r} is truncated or corrupt: {type(exc).__name__}: {exc}") from exc


def load_state_dict(module: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a ``state_dict`` saved by :func:`save_state_dict` into ``module``.

    A file of another model (other parameter names or shapes) is a
    :class:`~statetrainer.CheckpointError` naming the file and the first differences.
    """
    state = _load(path, "model file", "; train and save_model() first")
    target = unwrap(module)
    problems = state_dict_mismatch(target.state_dict(), state) if isinstance(state, dict) else ["not a state_dict"]
    if problems:
        raise CheckpointError(
            f"model file {str(path)!r} does not fit {type(target).__name__}: {'; '.join(problems)}; load it into "
            f"the model it was saved from (same architecture and sizes)"
        )
    target.load_state_dict(state)


def state_dict_mismatch(have: Any, saved: Any, limit: int = 3) -> list[str]:
    """How a saved ``state_dict`` differs from a module's (names, tensor shapes), at most ``limit`` items."""
    problems: list[str] = []
    missing, extra = sorted(set(have) - set(saved)), sorted(set(saved) - set(have))
    if missing:
        problems.append(f"missing {', '.join(missing[:limit])}")
    if extra:
        problems.append(f"unexpected {', '.join(extra[:limit])}")
    for key in sorted(set(have) & set(saved)):
        a, b = have[key], saved[key]
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
            problems.append(f"{key} has shape {list(b.shape)} in the file, {list(a.shape)} here")
    return problems[:limit]


def default_save_model(trainer: Any, parallel: bool = False) -> Path | None:
    """The default ``save_model``: the model's ``state_dict`` to :func:`model_path`."""
    from statetrainer import parallel as par

    if not par.is_main_process():  # rank 0 alone writes model files
        return None
    if not isinstance(trainer.model, torch.nn.Module):
        raise ConfigurationError("save_model(): self.model is not a torch.nn.Module; set it in build_model")
    path = model_path(trainer)
    if path is None:
        raise ConfigurationError(
            "save_model(): nowhere to save; set self._model_path (or give the trainer a run_dir)"
        )
    return save_state_dict(trainer.model, path)


def default_load_model(trainer: Any, parallel: bool = False) -> bool:
    """The default ``load_model``: load :func:`model_path` when it exists; returns whether it did.

    With no model path configured, the in-memory model is kept (farabio's default did nothing).
    """
    path = model_path(trainer)
    if path is None or not isinstance(trainer.model, torch.nn.Module):
        return False
    if not path.exists():
        if getattr(trainer, "_model_path", None):
            raise CheckpointError(
                f"load_model(): {str(path)!r} does not exist; call save_model() during training "
                f"or set self._model_path to an existing file"
            )
        return False
    load_state_dict(trainer.model, path)
    return True


# -- runtime checkpoints ---------------------------------------------------------------

FORMAT = "statetrainer.checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"


def _generators(*loaders: Any) -> list[torch.Generator]:
    """The torch Generators the loaders' shuffling draws from (deduplicated)."""
    found: list[torch.Generator] = []
    for loader in loaders:
        batch_sampler = getattr(loader, "batch_sampler", None)
        for obj in (loader, getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None)):
            g = getattr(obj, "generator", None)
            if isinstance(g, torch.Generator) and all(g is not x for x in found):
                found.append(g)
    return found


def rng_state(*loaders: Any) -> dict[str, Any]:
    """Python, numpy (when imported), torch CPU/CUDA and the loaders' generator states."""
    import random
    import sys

    state: dict[str, Any] = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "generators": [g.get_state() for g in _generators(*loaders)],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        kind, keys, pos, has_gauss, cached = numpy.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(cached))
    return state


def set_rng_state(state: dict[str, Any], *loaders: Any) -> None:
    """Restore what :func:`rng_state` captured."""
    import random
    import sys

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    for g, s in zip(_generators(*loaders), state.get("generators", [])):
        g.set_state(s)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = sys.modules.get("numpy")
    if numpy is not None and "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        numpy.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))


def stateful_attributes(trainer: Any) -> dict[str, Any]:
    """The trainer's modules, optimizers, LR schedulers and grad scalers, by attribute name."""
    kinds: tuple[type, ...] = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
    scaler = getattr(getattr(torch, "amp", None), "GradScaler", None)
    if isinstance(scaler, type):
        kinds += (scaler,)
    from statetrainer.steps import StepHelper

    kinds += (StepHelper,)
    return {name: value for name, value in sorted(vars(trainer).items()) if isinstance(value, kinds)}


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check a checkpoint file; a clear error naming the file when it is bad."""
    p = Path(path)
    data = _load(p, "checkpoint")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{str(p)!r} is not a statetrainer checkpoint")
    version = data.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {str(p)!r} has format version {version!r}, newer than this statetrainer "
            f"reads ({VERSION}); upgrade statetrainer"
        )
    wrong = [f"{key!r} ({kind.__name__} expected)" for key, kind in _PAYLOAD.items()
             if not isinstance(data.get(key), kind)]
    if wrong:
        raise CheckpointError(f"checkpoint {str(p)!r} is damaged: {', '.join(wrong)} missing or of the wrong type; "
                              f"resume from an earlier checkpoint")
    return data


#: The payload fields every checkpoint has, with their types.
_PAYLOAD: dict[str, type] = {
    "trainer": str, "lifecycle": str, "fingerprint": str, "state": str, "position": dict, "runtime": dict,
    "feeds": dict, "control": dict, "objects": dict, "rng": dict, "metrics": dict, "callbacks": list,
}


def checkpoint_files(folder: str | os.PathLike[str], run_id: str | None = None) -> list[Path]:
    """Automatic checkpoint files in ``folder``, oldest first (by step, then trace entry).

    With ``run_id``, only that run's files (``ckpt-<run id>-...``); otherwise every run's.
    """
    from statetrainer.rundir import checkpoint_run

    found: list[tuple[int, int, Path]] = []
    for path in Path(folder).glob("ckpt-*.pt"):
        parsed = checkpoint_run(path.name)
        if parsed is not None and (run_id is None or parsed[0] == run_id):
            found.append((parsed[1], parsed[2], path))
    return [path for _, _, path in sorted(found)]


def latest_good(folder: str | os.PathLike[str], run_id: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The newest readable checkpoint in ``folder`` (of run ``run_id`` when given), falling
    back past corrupt ones with a warning. Reads only: stale temp files are the writer's to
    clean (:mod:`statetrainer.rundir` does when it takes the directory's lock)."""
    import warnings

    files = checkpoint_files(folder, run_id)
    if not files:
        of = f" of run {run_id[:8]}…" if run_id else ""
        raise CheckpointError(f"nothing to resume: no checkpoint{of} in {str(folder)!r}")
    for path in reversed(files):
        try:
            return path, read_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(f"{exc}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2)
    raise CheckpointError(f"no readable checkpoint in {str(folder)!r} (all {len(files)} are corrupt)")
