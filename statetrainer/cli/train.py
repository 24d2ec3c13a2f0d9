"""``statetrainer demo`` and ``statetrainer run``: train (and test) a trainer, with a run directory."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

from statetrainer._errors import StateTrainerError
from statetrainer.cli import AttrDict, UsageError, load_class
from statetrainer.cli import main_process as _main_process


def add_parsers(sub: Any) -> None:
    """Add ``demo`` and ``run``."""
    d = sub.add_parser("demo", help="train a small convnet on the shipped 8x8 digits")
    d.add_argument("--epochs", type=int, default=12)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--run-dir", default=None, help="default: a new folder under runs/")
    d.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    d.add_argument("--quiet", action="store_true", help="no progress bar or epoch table")
    d.add_argument("--resume", action="store_true", help="continue the run in --run-dir with its settings")
    d.add_argument("--checkpoint-every", type=int, default=None, metavar="N", help="checkpoint every N batches")
    _run_options(d)
    d.set_defaults(func=_demo)

    r = sub.add_parser("run", help="run a ConvnetTrainer subclass from a file")
    r.add_argument("target", help="path/to/file.py:TrainerClass (or module:Class)")
    r.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--mode", choices=["train", "test", "both"], default="train")
    r.add_argument("--run-dir", default=None)
    r.add_argument("--resume", action="store_true", help="continue the run in --run-dir with its settings")
    r.add_argument("--checkpoint-every", type=int, default=None, metavar="N")
    _run_options(r)
    r.set_defaults(func=_run)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="console log level (RUN_DIR/events.jsonl always gets info and above)")
    p.add_argument("--profile", action="store_true", help="print the time spent in each state at the end")


def _observe(trainer: Any, args: argparse.Namespace, run_dir: str) -> Any:
    """A console at --log-level (the trainer writes RUN_DIR/events.jsonl); a StateTimer with --profile."""
    from statetrainer import _log
    from statetrainer.builtin_callbacks import StateTimer

    _log.configure(args.log_level)
    trainer.log_transitions = args.log_level == "debug"
    if not args.profile:
        return None
    timer = StateTimer()
    trainer.add_callback(timer)
    return timer


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
    settings = _settings(args, "DigitsTrainer", {
        "epochs": args.epochs, "seed": args.seed, "device": args.device, "quiet": args.quiet,
        "checkpoint_every": args.checkpoint_every,
    })
    run_dir, config = settings["run_dir"], AttrDict(settings["config"])
    import torch

    torch.manual_seed(config.seed)
    started = time.perf_counter()
    trainer = demo.build(config, run_dir, checkpoint_every=config.checkpoint_every)
    timer = _observe(trainer, args, run_dir)
    code = _train_phase(trainer, args.resume, run_dir)
    if code:
        return code
    trainer.test()
    if not _main_process():
        return 0
    _write_final_diagram(trainer, run_dir)
    _print_profile(timer)
    print(f"run directory: {run_dir}  ({time.perf_counter() - started:.1f} s)")
    print(f"test accuracy: {trainer.test_accuracy:.4f}")
    return 0


RUN_FILE = "run.json"


def _settings(args: argparse.Namespace, trainer_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The run's settings: new ones written to RUN_DIR/run.json, or on --resume the saved ones."""
    if args.resume:
        if not args.run_dir:
            raise UsageError("--resume needs --run-dir: the run directory to continue")
        path = Path(args.run_dir) / RUN_FILE
        if not path.is_file():
            raise UsageError(f"--resume: {args.run_dir!r} has nothing to resume (no {RUN_FILE})")
        saved = json.loads(path.read_text())
        if saved.get("trainer") != trainer_name:
            raise UsageError(f"--resume: {args.run_dir!r} belongs to another kind of run ({saved.get('trainer')})")
        return dict(saved)
    import os

    if not args.run_dir and "LOCAL_RANK" in os.environ:
        raise UsageError("under torchrun, give --run-dir: every rank must use the same run directory")
    run_dir = args.run_dir or _default_run_dir()
    if _main_process():
        _check_run_dir(run_dir, trainer_name)
    settings = {"trainer": trainer_name, "run_dir": run_dir, "config": config, "train_finished": False}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    if _main_process():
        (Path(run_dir) / RUN_FILE).write_text(json.dumps(settings, indent=1))
    return settings


def _train_phase(trainer: Any, resume: bool, run_dir: str) -> int:
    """Train (or resume training); returns 128+signal when a signal stopped it, else 0."""
    path = Path(run_dir) / RUN_FILE
    settings = json.loads(path.read_text()) if path.is_file() else {}
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
        from statetrainer.checkpoint import CHECKPOINT_DIR, checkpoint_files

        if not checkpoint_files(Path(run_dir) / CHECKPOINT_DIR):
            raise UsageError(f"--resume: {run_dir!r} has no checkpoint yet; start it again without --resume")
        start(resume_from=run_dir)
    else:
        start()
    if trainer.stopped_by_signal:
        print(f"stopped by signal {trainer.stopped_by_signal}; resume with --resume --run-dir {run_dir}",
              file=sys.stderr)
        return 128 + int(trainer.stopped_by_signal)
    settings["train_finished"] = True
    if _main_process():
        path.write_text(json.dumps(settings, indent=1))
    return 0


def _check_run_dir(run_dir: str, trainer_name: str) -> None:
    status = Path(run_dir) / "status.json"
    if status.is_file():
        try:
            owner = json.loads(status.read_text()).get("trainer", "")
        except ValueError:
            owner = ""
        if not owner.endswith(trainer_name):
            raise UsageError(f"run directory {run_dir!r} belongs to another kind of run ({owner or 'unknown'}); "
                             f"choose a new --run-dir")


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


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _run(args: argparse.Namespace) -> int:
    from statetrainer.trainer import ConvnetTrainer

    cls = load_class(args.target)
    if not (isinstance(cls, type) and issubclass(cls, ConvnetTrainer)):
        raise UsageError(f"{args.target!r} is not a ConvnetTrainer subclass")
    config = AttrDict()
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--config expects KEY=VALUE, got {item!r}")
        config[key] = _parse_value(value)
    if not args.resume and not args.run_dir:
        args.run_dir = str(Path("runs") / datetime.datetime.now().strftime(f"{cls.__name__}-%Y%m%d-%H%M%S"))
    settings = _settings(args, cls.__qualname__, {"values": dict(config), "checkpoint_every": args.checkpoint_every,
                                                  "mode": args.mode})
    run_dir = settings["run_dir"]
    config = AttrDict(settings["config"]["values"])
    trainer = cls(config, run_dir=run_dir, checkpoint_every=settings["config"]["checkpoint_every"])
    timer = _observe(trainer, args, run_dir)
    if args.mode in ("train", "both"):
        code = _train_phase(trainer, args.resume, run_dir)
        if code:
            return code
    if args.mode in ("test", "both"):
        trainer.test()
    _print_profile(timer)
    print(f"run directory: {run_dir}  status: {trainer.status}")
    return 0
