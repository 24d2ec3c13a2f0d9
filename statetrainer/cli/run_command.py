"""``statetrainer run TARGET``: build a trainer class from a file or module, and run it.

What it prints is the demo's: a progress bar per pass over each data feed (on a terminal),
a table of each epoch's logged means, and the run directory at the end. The settings are
saved in ``RUN_DIR/run.json``, so ``--resume`` needs only ``--run-dir``.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from statetrainer._errors import StateTrainerError
from statetrainer.cli import BuildError, UsageError, load_class, main_process, train
from statetrainer.cli.run_options import PRECISIONS

_EXAMPLES = """examples:
  statetrainer run first_trainer.py:FirstTrainer               train, in a new runs/FirstTrainer-<time>
  statetrainer run first_trainer.py:FirstTrainer --epochs 2 --mode both --run-dir runs/first
  statetrainer run first_trainer.py:FirstTrainer --fast-dev-run    one batch of each lifecycle, no files kept
  statetrainer run first_trainer.py:FirstTrainer --config lr=0.2 --config settings.toml
  statetrainer run my_package.trainers:Trainer --limit-batches 10 --seed 1 --device cuda --precision bf16
  statetrainer run first_trainer.py:FirstTrainer --callback my_callbacks.py:early_stopping
  statetrainer run first_trainer.py:FirstTrainer --resume --run-dir runs/first

--device and --precision only set config keys: a trainer reads them, e.g.
  StepHelper(model, optimizer, loss, device=self.config.get("device", "auto"),
             precision=self.config.get("precision", "32"))
"""

_DESCRIPTION = """Import TARGET, build it with a config and a run directory, and run it: train, then test with
--mode both. The trainer file's folder goes first on sys.path (its sibling modules import, as
with `python file.py`). On a terminal a progress bar follows each pass over the data; a table
prints each epoch's means of what the trainer logged; the last line names the run directory.
A failing hook prints your file and line, the lifecycle, state, callback, epoch and batch."""

#: The options that change a run's settings: --resume reuses the saved ones instead.
SETTINGS_FLAGS = {"config": "--config", "epochs": "--epochs", "limit_batches": "--limit-batches",
                  "seed": "--seed", "device": "--device", "precision": "--precision", "callback": "--callback",
                  "mode": "--mode", "checkpoint_every": "--checkpoint-every", "fast_dev_run": "--fast-dev-run"}


def add_parser(sub: Any) -> None:
    """Add ``run``."""
    r = sub.add_parser("run", help="run a ConvnetTrainer subclass from a file or module", description=_DESCRIPTION,
                       epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("target", metavar="TARGET", help="path/to/file.py:Class or module:Class (a ConvnetTrainer "
                   "subclass; LifecycleTrainer and GanTrainer ones too)")
    _trainer_options(r.add_argument_group("what the trainer gets"))
    _amount_options(r.add_argument_group("how much to run"))
    where = r.add_argument_group("run directory")
    where.add_argument("--run-dir", default=None, metavar="DIR",
                       help="the run directory (default: a new runs/<Class>-<time>)")
    where.add_argument("--resume", action="store_true",
                       help="continue the run in --run-dir with the settings saved in its run.json (default: off, "
                            "a new run)")
    where.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                       help="a checkpoint every N training batches (default: none)")
    where.add_argument("--overwrite", action="store_true",
                       help="replace the run --run-dir holds (default: off, a fresh run there is refused)")
    out = r.add_argument_group("output")
    out.add_argument("--quiet", action="store_true",
                     help="no progress bar and no epoch table (default: both; the bar only when standard output "
                          "is a terminal)")
    train._run_options(out)
    r.set_defaults(func=_run)


def _trainer_options(group: Any) -> None:
    group.add_argument("--config", action="append", default=[], metavar="KEY=VALUE|FILE",
                       help="a config key, or a .json/.toml file of them; repeatable, a later one wins; a value is "
                            "parsed as JSON when it can be (epochs=1 is an int, name=abc a string); the trainer gets "
                            "a dict that also allows config.key (default: an empty config)")
    group.add_argument("--epochs", type=int, default=None, metavar="N",
                       help="epochs to train: the constructor's epochs= and the config's 'epochs' key; a hook "
                            "setting _num_epochs still wins, with a warning (default: the trainer's)")
    group.add_argument("--seed", type=int, default=None, metavar="N",
                       help="seed Python's, torch's and numpy's random numbers before the trainer is built; also "
                            "the config's 'seed' key (default: not seeded)")
    group.add_argument("--device", default=None, metavar="NAME",
                       help="the config's 'device' key, for the trainer to read: auto, cpu, cuda, cuda:N or mps "
                            "(default: not set)")
    group.add_argument("--precision", default=None, choices=PRECISIONS,
                       help="the config's 'precision' key, for the trainer to read: auto, 32, bf16 or 16 "
                            "(default: not set)")
    group.add_argument("--callback", action="append", default=[], metavar="MODULE:NAME",
                       help="add a callback: NAME is a callback class (built with no arguments) or a function "
                            "taking the trainer and returning callbacks; module or file.py; repeatable "
                            "(default: none)")


def _amount_options(group: Any) -> None:
    group.add_argument("--mode", choices=["train", "test", "both"], default=None,
                       help="train; test; or both, train then test (default: train; both with --fast-dev-run)")
    group.add_argument("--limit-batches", type=int, default=None, metavar="N",
                       help="at most N batches per pass over each data feed: train, validation and test "
                            "(default: all)")
    group.add_argument("--fast-dev-run", action="store_true",
                       help="one epoch of at most one batch per pass, train and test, in a temporary run directory "
                            "removed at the end: a quick check that every hook runs (default: off)")


def _run(args: argparse.Namespace) -> int:
    from statetrainer.trainer import ConvnetTrainer

    _check_flags(args)
    cls = load_class(args.target, of=ConvnetTrainer)
    if not (isinstance(cls, type) and issubclass(cls, ConvnetTrainer)):
        raise UsageError(f"{args.target!r} is not a ConvnetTrainer subclass")
    if args.fast_dev_run:
        return _fast_dev_run(args, cls)
    _check_mode(args.mode, cls)
    name = cls.__qualname__
    run_dir = train._run_dir(args, lambda: Path("runs") / datetime.datetime.now().strftime(
        f"{cls.__name__}-%Y%m%d-%H%M%S"))
    saved = train._saved_settings(args, run_dir, name, train._check_run_config) if args.resume else None
    # a bad --config, --device or --callback is refused before the run directory is claimed
    config = saved["config"] if saved else _settings_config(args)
    _check_callbacks(config.get("callbacks") or [])
    with train._claimed(args, run_dir, name):
        settings = saved or train._new_settings(run_dir, name, config)
        code, trainer = _run_in(args, cls, run_dir, settings, fresh=saved is None)
        if code == 0 and main_process():
            ran = trainer.status != "idle"  # not when a finished training was "resumed"
            print(f"run directory: {run_dir}" + (f"  status: {trainer.status}" if ran else ""))
    return code


def _check_flags(args: argparse.Namespace) -> None:
    """Flags that cannot work together, or values no run could use: one line, exit 2."""
    if args.epochs is not None and args.epochs < 0:
        raise UsageError(f"--epochs must be >= 0, got {args.epochs}")
    if args.limit_batches is not None and args.limit_batches < 1:
        raise UsageError(f"--limit-batches must be >= 1, got {args.limit_batches}")
    if args.resume:
        given = [flag for dest, flag in SETTINGS_FLAGS.items() if getattr(args, dest) not in (None, [], False)]
        if given:
            raise UsageError(f"--resume continues with the settings saved in RUN_DIR/run.json: leave out "
                             f"{', '.join(given)} (or start a new run to change them)")
    if args.fast_dev_run:
        clash = [flag for dest, flag in (("run_dir", "--run-dir"), ("overwrite", "--overwrite"),
                                         ("epochs", "--epochs"), ("limit_batches", "--limit-batches"))
                 if getattr(args, dest) not in (None, False)]
        if clash:
            raise UsageError(f"--fast-dev-run runs one epoch of one batch per pass in a temporary run directory: "
                             f"leave out {', '.join(clash)}")


def _settings_config(args: argparse.Namespace) -> dict[str, Any]:
    """What run.json keeps of a new run's options (``--resume`` reuses it)."""
    from statetrainer.cli import run_options

    return {"values": run_options.config_values(args.config, args), "checkpoint_every": args.checkpoint_every,
            "mode": args.mode or "train", "epochs": args.epochs, "limit_batches": args.limit_batches,
            "seed": args.seed, "callbacks": list(args.callback)}


def _check_callbacks(specs: list[str]) -> None:
    """Each ``--callback MODULE:NAME`` imports and names a class or function (before anything is
    written; a function of the trainer is called once the trainer is built)."""
    for spec in specs:
        found = load_class(spec, what="--callback")
        if not callable(found):
            raise UsageError(f"--callback {spec}: {type(found).__name__} is neither a callback class nor a function")


def _fast_dev_run(args: argparse.Namespace, cls: type) -> int:
    """One epoch of at most one batch per pass, in a temporary run directory removed at the end."""
    # a trainer without a test lifecycle (a LifecycleTrainer's own loop) is checked by training
    tests = "test" in cls.lifecycles()  # type: ignore[attr-defined]
    args.epochs, args.limit_batches, args.mode = 1, 1, args.mode or ("both" if tests else "train")
    _check_mode(args.mode, cls)
    name = cls.__qualname__
    config = _settings_config(args)
    _check_callbacks(config["callbacks"])
    with tempfile.TemporaryDirectory(prefix="statetrainer-fast-dev-run-") as folder:
        run_dir = str(Path(folder) / "run")
        with train._claimed(args, run_dir, name):
            settings = train._new_settings(run_dir, name, config)
            code, trainer = _run_in(args, cls, run_dir, settings, fresh=True)
    if code == 0:
        print(f"fast dev run: {trainer.status} ({_phases(args.mode)}: one epoch, at most one batch per pass); "
              f"its temporary run directory is removed")
    return code


def _check_mode(mode: str | None, cls: type) -> None:
    """``--mode test|both`` needs a lifecycle called ``test``: refused before anything is written."""
    names = list(cls.lifecycles())  # type: ignore[attr-defined]
    if mode in ("test", "both") and "test" not in names:
        raise UsageError(f"--mode {mode}: {cls.__name__} has no test lifecycle (its lifecycles: {', '.join(names)}); "
                         f"use --mode train, or give the class a 'test' lifecycle")


def _phases(mode: str) -> str:
    return {"train": "train", "test": "test", "both": "train and test"}[mode]


def _run_in(args: argparse.Namespace, cls: type, run_dir: str, settings: dict[str, Any],
            fresh: bool) -> tuple[int, Any]:
    """Build the trainer with the settings, attach what the options ask for, run its phases."""
    from statetrainer.cli import run_options

    conf = settings["config"]
    config = run_options.RunConfig(conf["values"])
    run_options.seed_everything(conf.get("seed"))
    trainer = _build(cls, config, run_dir, conf)
    trainer._statetrainer.run_id = settings.get("run_id")
    timer = train._observe(trainer, args, run_dir)
    _check_epochs(trainer, conf.get("epochs"), forced=args.fast_dev_run)
    if conf.get("limit_batches"):
        from statetrainer.cli.limits import limit_batches

        limit_batches(trainer, conf["limit_batches"])
    run_options.attach_callbacks(trainer, conf.get("callbacks") or [])
    if fresh:  # built and its callbacks attached without error: now the run directory gets its settings
        train._save_settings(run_dir, settings)
    code = _phases_run(trainer, args, run_dir, settings, _console(trainer, args))
    for line in run_options.unread_keys(config, cls.__name__):
        print(f"statetrainer: warning: {line}", file=sys.stderr)
    if code == 0:
        train._print_profile(timer)
    return code, trainer


def _build(cls: type, config: Any, run_dir: str, conf: dict[str, Any]) -> Any:
    """The trainer; an exception of its own hooks is a :class:`BuildError` (the user's file and line)."""
    keywords: dict[str, Any] = {"run_dir": run_dir, "checkpoint_every": conf["checkpoint_every"]}
    if conf.get("epochs") is not None:
        keywords["epochs"] = conf["epochs"]
    try:
        return cls(config, **keywords)
    except StateTrainerError:
        raise
    except Exception as exc:
        raise BuildError(cls.__name__, exc) from exc


def _check_epochs(trainer: Any, wanted: int | None, forced: bool) -> None:
    """``--epochs N`` set the epoch count unless a hook set it otherwise: then a warning says so
    (``--fast-dev-run`` sets it to 1 whatever the hooks did)."""
    from statetrainer._runtime import main_lifecycle

    spec = main_lifecycle(type(trainer))
    if wanted is None or not spec.with_role("epoch_start"):
        return
    attr = spec.epochs.total
    if forced:
        setattr(trainer, attr, wanted)
        return
    have = getattr(trainer, attr, None)
    if have != wanted:
        print(f"statetrainer: warning: --epochs {wanted}: {type(trainer).__name__} sets self.{attr} = {have!r} in a "
              f"hook, and a hook wins; set it from the config (self.{attr} = self.config.get('epochs', ...)) for "
              f"--epochs to apply", file=sys.stderr)


def _console(trainer: Any, args: argparse.Namespace) -> Any:
    """The epoch table and, when standard output is a terminal, a progress bar (neither with --quiet)."""
    from statetrainer import _progress
    from statetrainer.builtin_callbacks import ProgressBar
    from statetrainer.cli.console import EpochTable

    if args.quiet or not main_process():
        return None
    table = EpochTable()
    table.attach(trainer)
    has_bar = any(isinstance(b, ProgressBar) for b in trainer._statetrainer.bundles)
    if not has_bar and _progress.is_terminal(sys.stdout):
        trainer.add_callback(ProgressBar())
    return table


def _phases_run(trainer: Any, args: argparse.Namespace, run_dir: str, settings: dict[str, Any], table: Any) -> int:
    """Train and/or test as the mode says; on a resumed training, the resume line first."""
    mode = settings["config"]["mode"]
    if mode == "train" and args.resume and settings.get("train_finished"):
        print(f"training in {run_dir} had finished: nothing to resume")
        return 0
    if mode in ("train", "both"):
        announced = None
        if args.resume and not settings.get("train_finished") and main_process():
            from statetrainer.cli.console import announce_resume

            announced = announce_resume(trainer, run_dir, table)
        try:
            code = train._train_phase(trainer, args.resume, run_dir, settings,
                                      command=f"statetrainer run {shlex.quote(args.target)}")
        finally:
            if announced is not None:  # resumed at the final state, or failed before a transition
                announced()
        if code:
            return code
    if mode in ("test", "both"):
        trainer.test()
        return train._test_stopped(trainer, run_dir)
    return 0
