"""``statetrainer demo`` and ``statetrainer run``: train (and test) a trainer, with a run directory.

This module has the demo and what both commands share (the run directory's claim, the
saved settings in ``RUN_DIR/run.json``, the train and test phases);
:mod:`statetrainer.cli.run_command` has ``run``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import shlex
import sys
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from statetrainer._errors import StateTrainerError
from statetrainer.cli import AttrDict, UsageError
from statetrainer.cli import main_process as _main_process

_DEMO_EXAMPLES = """examples:
  statetrainer demo                                  12 epochs, in a new folder under runs/
  statetrainer demo --epochs 1 --seed 3 --run-dir runs/demo
  statetrainer demo --resume --run-dir runs/demo     continue it with its saved settings
  statetrainer demo --threads 2                      two torch threads: another result, another speed
"""


def add_parsers(sub: Any) -> None:
    """Add ``demo`` and ``run``."""
    from statetrainer.cli import run_command

    d = sub.add_parser(
        "demo", help="train a small convnet on the shipped 8x8 digits", epilog=_DEMO_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a small convnet on the 8x8 handwritten digits shipped in the package (nothing is\n"
                    "downloaded), then test it. Prints its torch thread count, a table per epoch, the run\n"
                    "directory and the test accuracy.")
    d.add_argument("--epochs", type=int, default=12, metavar="N", help="epochs to train (default: 12)")
    d.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the data split, the shuffling and the initial weights (default: 0)")
    d.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads; the result and the speed depend on it (default: 1, the same result on "
                        "every machine and the fastest on a busy one)")
    d.add_argument("--run-dir", default=None, metavar="DIR", help="the run directory (default: a new "
                   "runs/demo-<time>)")
    d.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to train (default: auto, CUDA when there is one)")
    d.add_argument("--quiet", action="store_true", help="no progress bar or epoch table")
    d.add_argument("--resume", action="store_true", help="continue the run in --run-dir with its saved settings")
    d.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="a checkpoint every N training batches (default: none; epoch checkpoints always)")
    d.add_argument("--overwrite", action="store_true", help="replace the run --run-dir holds (or write into a "
                   "non-empty folder that holds none)")
    _run_options(d)
    d.set_defaults(func=_demo)
    run_command.add_parser(sub)


def _run_options(p: Any) -> None:
    """``--log-level``, ``--profile``, ``--traceback`` (on a parser or an argument group)."""
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="console log level; RUN_DIR/events.jsonl always gets info and above (default: warning)")
    p.add_argument("--profile", action="store_true",
                   help="print the time spent in each state at the end (default: off)")
    p.add_argument("--traceback", action="store_true",
                   help="on a failure, print the full traceback (default: the error, your file and line, and "
                        "where in the lifecycle)")


def _observe(trainer: Any, args: argparse.Namespace, run_dir: str) -> Any:
    """A console at --log-level (the trainer writes RUN_DIR/events.jsonl); a StateTimer with --profile."""
    from statetrainer import _log
    from statetrainer.builtin_callbacks import StateTimer

    _log.configure(args.log_level)
    import structlog

    # The command reports a failed or signal-stopped run itself, in one line: the console does not repeat it.
    structlog.configure(processors=[_drop_what_the_command_reports, *structlog.get_config()["processors"]])
    trainer.log_transitions = args.log_level == "debug"
    if not args.profile:
        return None
    timer = StateTimer()
    trainer.add_callback(timer)
    return timer


def _drop_what_the_command_reports(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    import structlog

    if event.get("event") in ("run_failed", "run_stopped"):
        raise structlog.DropEvent
    return event


def _print_profile(timer: Any) -> None:
    if timer is None:
        return
    rows = timer.table()
    total = sum(r[2] for r in rows) or 1.0
    print(f"{'state':<28} {'visits':>8} {'seconds':>9} {'share':>6}")
    for name, visits, seconds in rows:
        print(f"{name:<28} {visits:>8} {seconds:>9.3f} {seconds / total:>6.1%}")


def _default_run_dir() -> str:
    return str(Path("runs") / datetime.datetime.now().strftime("demo-%Y%m%d-%H%M%S-%f"))


def _demo(args: argparse.Namespace) -> int:
    from statetrainer import demo

    if args.epochs < 0:
        raise UsageError(f"--epochs must be >= 0, got {args.epochs}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    config = {"epochs": args.epochs, "seed": args.seed, "device": args.device, "quiet": args.quiet,
              "checkpoint_every": args.checkpoint_every, "threads": args.threads}
    run_dir = _run_dir(args, _default_run_dir)
    saved = _saved_settings(args, run_dir, "DigitsTrainer", _check_demo_config) if args.resume else None
    with _claimed(args, run_dir, "DigitsTrainer"):
        settings = saved or _new_settings(run_dir, "DigitsTrainer", config)
        config = AttrDict(settings["config"])
        import torch

        torch.manual_seed(config.seed)
        started = time.perf_counter()
        trainer = demo.build(config, run_dir, checkpoint_every=config.checkpoint_every)
        trainer._statetrainer.run_id = settings["run_id"]
        if saved is None:  # built without error: now the run directory gets its settings
            _save_settings(run_dir, settings)
        timer = _observe(trainer, args, run_dir)
        code = _train_phase(trainer, args.resume, run_dir, settings)
        if code:
            return code
        trainer.test()
        code = _test_stopped(trainer, run_dir)
        if code or not _main_process():
            return code
        _write_final_diagram(trainer, run_dir)
        _print_profile(timer)
        print(f"run directory: {run_dir}  ({time.perf_counter() - started:.1f} s)")
        print(f"test accuracy: {trainer.test_accuracy:.4f}")
    return 0


RUN_FILE = "run.json"
RUN_FORMAT = "statetrainer.run/1"


def _run_dir(args: argparse.Namespace, default: Any) -> str:
    """The run directory of this command: ``--run-dir``, or a new folder (not with --resume)."""
    import os

    if args.resume and not args.run_dir:
        raise UsageError("--resume needs --run-dir: the run directory to continue")
    if not args.run_dir and "LOCAL_RANK" in os.environ:
        raise UsageError("under torchrun, give --run-dir: every rank must use the same run directory")
    return str(args.run_dir or default())


@contextlib.contextmanager
def _claimed(args: argparse.Namespace, run_dir: str, trainer_name: str) -> Iterator[None]:
    """Hold the run directory's writer lock for the whole command (rank 0). A fresh run is
    refused, before anything is written, in a folder of another program, another kind of
    run, or another run (unless --overwrite, which then removes that run's files)."""
    from statetrainer import rundir

    if not _main_process():
        yield
        return
    if not args.resume:
        if not args.overwrite:
            _check_run_dir(run_dir, trainer_name)
        rundir.claim_fresh(run_dir, trainer_name, args.overwrite, cli=True, dry=True)  # refusals change nothing
    with rundir.locked(run_dir):
        if not args.resume:
            rundir.claim_fresh(run_dir, trainer_name, args.overwrite, cli=True)
        yield


def _new_settings(run_dir: str, trainer_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A fresh run's settings (written by :func:`_save_settings` once the trainer is built);
    no path to the run directory inside: a copied or moved directory resumes where it is."""
    from statetrainer import rundir

    return {"format": RUN_FORMAT, "run_id": rundir.new_run_id(), "trainer": trainer_name, "config": config,
            "train_finished": False, "run_dir": run_dir}


def _saved_settings(args: argparse.Namespace, run_dir: str, trainer_name: str, check_config: Any) -> dict[str, Any]:
    """On --resume: RUN_DIR/run.json, checked field by field (one-line errors naming the file)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise UsageError(f"--resume: {run_dir!r} has nothing to resume (no {RUN_FILE})")
    fix = "restore it from a copy, or start a new run with --overwrite"
    try:
        saved = json.loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"{str(path)!r} cannot be read: {exc.strerror}; check its permissions") from None
    except ValueError as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc).splitlines()[0]
        raise UsageError(f"{str(path)!r} is not JSON ({reason}); {fix}") from None
    if not isinstance(saved, dict):
        raise UsageError(f"{str(path)!r} holds {type(saved).__name__}, not an object of run settings; {fix}")
    if not isinstance(saved.get("trainer"), str):
        raise UsageError(f"{str(path)!r}: 'trainer' should be a string, not {_shown(saved.get('trainer'))}; {fix}")
    if saved["trainer"] != trainer_name:
        raise UsageError(f"--resume: {run_dir!r} belongs to another kind of run ({saved.get('trainer')})")
    problems = _settings_problems(saved) + (check_config(saved["config"]) if isinstance(saved.get("config"),
                                                                                          dict) else [])
    if problems:
        raise UsageError(f"{str(path)!r}: {problems[0]}; {fix}")
    return {**saved, "run_dir": run_dir}


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _settings_problems(saved: dict[str, Any]) -> list[str]:
    problems = []
    if not isinstance(saved.get("config"), dict):
        problems.append(f"'config' should be an object, not {_shown(saved.get('config'))}")
    if not isinstance(saved.get("train_finished", False), bool):
        problems.append(f"'train_finished' should be true or false, not {_shown(saved['train_finished'])}")
    if saved.get("run_id") is not None and not isinstance(saved["run_id"], str):
        problems.append(f"'run_id' should be a string, not {_shown(saved['run_id'])}")
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_problems(config: dict[str, Any], fields: dict[str, tuple[Any, str]], prefix: str) -> list[str]:
    return [f"'{prefix}.{name}' should be {should}, not {_shown(config.get(name))}"
            for name, (ok, should) in fields.items() if not ok(config.get(name))]


_DEMO_FIELDS: dict[str, tuple[Any, str]] = {
    "epochs": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "seed": (_is_int, "an int"),
    "device": (lambda v: v in ("auto", "cpu", "cuda", "mps"), "one of auto, cpu, cuda, mps"),
    "quiet": (lambda v: isinstance(v, bool), "true or false"),
    "checkpoint_every": (lambda v: v is None or (_is_int(v) and v >= 1), "an int >= 1 or null"),
    "threads": (lambda v: v is None or (_is_int(v) and v >= 1), "an int >= 1 or null"),
}
_RUN_FIELDS: dict[str, tuple[Any, str]] = {
    "values": (lambda v: isinstance(v, dict), "an object"),
    "checkpoint_every": (lambda v: v is None or (_is_int(v) and v >= 1), "an int >= 1 or null"),
    "mode": (lambda v: v in ("train", "test", "both"), "one of train, test, both"),
    "epochs": (lambda v: v is None or (_is_int(v) and v >= 0), "an int >= 0 or null"),
    "limit_batches": (lambda v: v is None or (_is_int(v) and v >= 1), "an int >= 1 or null"),
    "seed": (lambda v: v is None or _is_int(v), "an int or null"),
    "callbacks": (lambda v: v is None or (isinstance(v, list) and all(isinstance(c, str) for c in v)),
                  "a list of MODULE:NAME strings or null"),
}


def _check_demo_config(config: dict[str, Any]) -> list[str]:
    return _field_problems(config, _DEMO_FIELDS, "config")


def _check_run_config(config: dict[str, Any]) -> list[str]:
    return _field_problems(config, _RUN_FIELDS, "config")


def _train_phase(trainer: Any, resume: bool, run_dir: str, settings: dict[str, Any],
                 command: str = "statetrainer demo") -> int:
    """Train (or resume training); returns 128+signal when a signal stopped it, else 0.

    ``command`` starts the resume command a signal stop prints (``statetrainer run TARGET``).
    """
    if resume and settings.get("train_finished"):
        print(f"training in {run_dir} had finished; running the test phase only")
        from statetrainer.checkpoint import load_state_dict, model_path

        model = model_path(trainer)
        if model is not None and model.exists():
            load_state_dict(trainer.model, model)
        return 0
    from statetrainer.custom import LifecycleTrainer

    start = trainer.run if isinstance(trainer, LifecycleTrainer) else trainer.train
    if resume:
        _check_resumable(run_dir)
        start(resume_from=run_dir)
    else:
        start()
    if trainer.stopped_by_signal:
        import signal

        name = signal.Signals(trainer.stopped_by_signal).name
        print(f"stopped by signal {name} (a checkpoint was written); resume with: "
              f"{command} --resume --run-dir {shlex.quote(str(run_dir))}", file=sys.stderr)
        return 128 + int(trainer.stopped_by_signal)
    _save_settings(run_dir, {**settings, "train_finished": True})
    return 0


def _check_resumable(run_dir: str) -> None:
    from statetrainer import rundir
    from statetrainer.checkpoint import CHECKPOINT_DIR, checkpoint_files

    if not checkpoint_files(Path(run_dir) / CHECKPOINT_DIR, rundir.held_run_id(run_dir)):
        raise UsageError(f"--resume: {run_dir!r} has no checkpoint yet; start it again with --overwrite "
                         f"(without --resume)")


def _save_settings(run_dir: str, settings: dict[str, Any]) -> None:
    """Write RUN_DIR/run.json atomically (rank 0); a folder that cannot be written is one line."""
    from statetrainer import rundir
    from statetrainer.inspect import write_json_atomic

    if not _main_process():
        return
    try:
        write_json_atomic(Path(run_dir) / RUN_FILE, {k: v for k, v in settings.items() if k != "run_dir"})
    except OSError as exc:
        raise rundir.unwritable(run_dir, exc) from None


def _test_stopped(trainer: Any, run_dir: str) -> int:
    """A test stopped by a signal says so and exits 128+signal: no result is printed as if complete."""
    if trainer.status != "stopped":
        return 0
    import signal

    sig = trainer.stopped_by_signal
    why = f"signal {signal.Signals(sig).name}" if sig else "a stop request"
    print(f"test stopped by {why} before its end: no test result (status 'stopped' in {run_dir})", file=sys.stderr)
    return 128 + int(sig) if sig else 1


def _check_run_dir(run_dir: str, trainer_name: str) -> None:
    """A fresh run in a folder holding another kind of run: refused, naming that kind."""
    status = Path(run_dir) / "status.json"
    if not status.is_file():
        return
    try:
        data = json.loads(status.read_bytes())
    except (OSError, ValueError):
        data = None
    owner = data.get("trainer") if isinstance(data, dict) else None
    owner = owner if isinstance(owner, str) else ""
    if not owner.endswith(trainer_name):
        raise UsageError(f"run directory {run_dir!r} belongs to another kind of run ({owner or 'unknown'}); "
                         f"choose a new --run-dir, or pass --overwrite to replace that run")


def _write_final_diagram(trainer: Any, run_dir: str) -> None:
    from statetrainer import diagrams
    from statetrainer._runtime import main_lifecycle

    spec = main_lifecycle(type(trainer))
    last = [e for e in trainer.trace if e.lifecycle == spec.name]
    state = last[-1].state if last else None
    dot = diagrams.to_dot(spec, highlight=state)
    Path(run_dir, "lifecycle.dot").write_text(dot)
    try:
        Path(run_dir, "lifecycle.svg").write_bytes(diagrams.render(dot, "svg"))
    except StateTrainerError:
        pass  # Graphviz missing: the DOT file is there
