"""The ``statetrainer`` command: demo, run, diagram, verify, verify-trace, inspect.

User mistakes (a bad option, a missing file, a wrong ``MODULE:CLASS``) print one line to
stderr and exit 2; a failed training run exits 1 with the error saying where it failed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from statetrainer._errors import StateTrainerError


class UsageError(StateTrainerError):
    """A mistake in the command line or in what it names."""


class AttrDict(dict[str, Any]):
    """A config with key and attribute access, like farabio's EasyDict configs."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _main(args)
    finally:
        if "torch" in sys.modules:
            from statetrainer import parallel

            parallel.destroy()


def _main(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except (UsageError, StateTrainerError, FileNotFoundError) as exc:
        from statetrainer._errors import TrainerRunError

        if isinstance(exc, TrainerRunError):
            print(f"statetrainer: run failed: {exc}", file=sys.stderr)
            return 1
        print(f"statetrainer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("statetrainer: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="statetrainer", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

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

    g = sub.add_parser("diagram", help="draw a lifecycle from the code")
    g.add_argument("lifecycle", help="train, evaluate, test, or a custom lifecycle's name")
    g.add_argument("--format", choices=["dot", "svg", "png", "mermaid"], default="dot")
    g.add_argument("-o", "--output", default=None, help="file to write (default: stdout for text)")
    g.add_argument("--trainer", default=None, help="MODULE:CLASS or file.py:CLASS of a trainer")
    g.add_argument("--highlight", default=None, help="a state to mark as current")
    g.add_argument("--callbacks", action="store_true", help="list callbacks under each state (needs --trainer)")
    g.add_argument("--no-extensions", action="store_true", help="draw only the seed's edges")
    g.set_defaults(func=_diagram)

    v = sub.add_parser("verify", help="compare the machines with the seed's DOT diagrams")
    v.add_argument("--diagrams", default="diagrams", help="folder with train.dot, evaluate.dot, test.dot")
    v.add_argument("--trainer", default=None)
    v.set_defaults(func=_verify)

    t = sub.add_parser("verify-trace", help="check that a recorded trace is a path through the machine")
    t.add_argument("trace", help="trace.jsonl of a run directory")
    t.add_argument("--trainer", default=None)
    t.set_defaults(func=_verify_trace)

    i = sub.add_parser("inspect", help="show a run's status (live or finished)")
    i.add_argument("run_dir")
    i.add_argument("--json", action="store_true")
    i.add_argument("--watch", action="store_true")
    i.add_argument("--interval", type=float, default=1.0)
    i.add_argument("--diagram", default=None, help="write the lifecycle with the current state highlighted")
    i.set_defaults(func=_inspect)

    from statetrainer.web import cli as web_cli

    web_cli.add_inspect_options(i)
    web_cli.add_serve_parser(sub)
    return p


# -- demo / run -----------------------------------------------------------------------


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


def _main_process() -> bool:
    """Rank 0 (or a single process) writes files and prints; torchrun's other ranks stay quiet."""
    from statetrainer import parallel

    return parallel.is_main_process()


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


def load_class(target: str) -> Any:
    """Import ``MODULE:CLASS`` or ``path/to/file.py:CLASS``; a clear error when it cannot."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:CLASS or file.py:CLASS, got {target!r}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise UsageError(f"file {module_name!r} does not exist")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None


def _trace_lifecycles(target: str | None, trace: Path) -> dict[str, Any]:
    """The lifecycles a trace is checked against: ``--trainer``'s, else those its run
    directory recorded (``lifecycles.json``), else the built-ins."""
    from statetrainer import inspect

    if target is None and (trace.parent / inspect.LIFECYCLES_FILE).is_file():
        return inspect.read_lifecycles(trace.parent)
    return _trainer_lifecycles(target)


def _trainer_lifecycles(target: str | None) -> dict[str, Any]:
    from statetrainer import lifecycles

    if target is None:
        return dict(lifecycles.BUILTIN)
    cls: Any = load_class(target)
    lifecycles_of = getattr(cls, "lifecycles", None) if isinstance(cls, type) else None
    if not callable(lifecycles_of):
        raise UsageError(f"{target!r} is not a statetrainer trainer class")
    return dict(lifecycles_of())


# -- diagram / verify -------------------------------------------------------------------


def _diagram(args: argparse.Namespace) -> int:
    from statetrainer import diagrams
    from statetrainer._errors import UnknownStateError

    specs = _trainer_lifecycles(args.trainer)
    if args.lifecycle not in specs:
        raise UnknownStateError(args.lifecycle, specs, what="lifecycle")
    spec = specs[args.lifecycle]
    if args.highlight:
        spec.state(args.highlight)
    callbacks = _callback_names(args.trainer, spec) if args.callbacks else None
    kwargs: dict[str, Any] = {"highlight": args.highlight, "extensions": not args.no_extensions}
    if args.format != "mermaid":
        kwargs["callbacks"] = callbacks
    data = diagrams.to_format(spec, args.format, **kwargs)
    if args.output:
        Path(args.output).write_bytes(data)
    elif args.format in ("svg", "png"):
        raise UsageError(f"--format {args.format} needs -o FILE")
    else:
        sys.stdout.write(data.decode())
    return 0


def _callback_names(target: str | None, spec: Any) -> dict[str, list[str]]:
    if target is None:
        raise UsageError("--callbacks needs --trainer MODULE:CLASS (a trainer whose instance has callbacks)")
    cls = load_class(target)
    try:
        trainer = cls()
    except Exception as exc:
        raise UsageError(f"--callbacks: cannot build {target} with no arguments ({type(exc).__name__}: {exc}); "
                         f"give it defaults so its callbacks can be listed") from None
    names: dict[str, list[str]] = trainer._statetrainer.registry.names_by_state(spec)
    return names


def _verify(args: argparse.Namespace) -> int:
    from statetrainer import diagrams

    folder = Path(args.diagrams)
    if not folder.is_dir():
        raise UsageError(f"diagram folder {str(folder)!r} does not exist")
    ok = True
    checked = 0
    for name, spec in _trainer_lifecycles(args.trainer).items():
        path = folder / f"{name}.dot"
        if not path.exists():
            print(f"{name}: no {path}, skipped")
            continue
        report = diagrams.verify(spec, path)
        print(report.format())
        ok &= report.ok
        checked += 1
    if checked == 0:
        raise UsageError(f"no <lifecycle>.dot file in {str(folder)!r} to verify against")
    return 0 if ok else 1


def _verify_trace(args: argparse.Namespace) -> int:
    from statetrainer.testing import check_trace

    path = Path(args.trace)
    if not path.is_file():
        raise UsageError(f"trace file {args.trace!r} does not exist")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise UsageError(f"{args.trace}:{number} is not a JSON line") from None
    problem = check_trace(rows, _trace_lifecycles(args.trainer, path))
    if problem:
        print(f"trace is NOT a path through the machine: {problem}")
        return 1
    print(f"trace OK: {len(rows)} entries, every step is a transition of its lifecycle")
    return 0


# -- inspect ----------------------------------------------------------------------------


def _inspect(args: argparse.Namespace) -> int:
    from statetrainer import inspect
    from statetrainer.web import cli as web_cli

    web = web_cli.inspect_web(args)
    if web is not None:
        return web
    data = inspect.read_status(args.run_dir)
    while args.watch and data.get("status") in ("running", "stopping"):
        sys.stdout.write("\x1b[2J\x1b[H" + inspect.format_status(data) + "\n")
        sys.stdout.flush()
        time.sleep(args.interval)
        data = inspect.read_status(args.run_dir)
    if args.diagram:
        from statetrainer import diagrams

        specs = inspect.read_lifecycles(args.run_dir)
        spec = specs.get(data.get("lifecycle") or "") or next(iter(specs.values()))
        state = data.get("state") if data.get("state") in spec.state_names else None
        recent = data.get("recent") or []
        last = tuple(recent[-2:]) if len(recent) >= 2 else None
        fmt = "svg" if args.diagram.endswith(".svg") else "png" if args.diagram.endswith(".png") else "dot"
        Path(args.diagram).write_bytes(diagrams.to_format(spec, fmt, highlight=state, last=last))
    print(json.dumps(data, indent=1) if args.json else inspect.format_status(data))
    return 0
