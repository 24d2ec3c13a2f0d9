"""The ``statetrainer`` command: demo, run, diagram, explain, verify, verify-trace, trace, inspect, serve.

User mistakes (a bad option, a missing file, a wrong ``MODULE:CLASS``) print one line to
stderr and exit 2; a failed training run exits 1 with the error saying where it failed
(with ``--traceback``, the full traceback). Output cut short by a closed pipe (``| head``)
ends quietly. One module per group of subcommands: :mod:`.train` (demo, run), :mod:`.diagram`
(diagram, verify, verify-trace), :mod:`.inspect_run` (inspect), and the web view's
:mod:`statetrainer.web.cli` (serve, ``inspect --web``).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import os
import sys
import warnings
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


#: What ``statetrainer --help`` says first (plain text: no markup in help).
DESCRIPTION = """Train farabio-style trainers whose lifecycle is an explicit state machine, and draw,
explain, verify and inspect those lifecycles and their runs.

Every subcommand has --help with its options, their defaults and examples."""

EXAMPLES = """examples:
  statetrainer demo --epochs 1                  train the demo convnet for one epoch
  statetrainer run first_trainer.py:FirstTrainer --epochs 2 --mode both
  statetrainer explain train                    the hook order as nested loops
  statetrainer diagram train --format svg -o train.svg
  statetrainer inspect runs/first               a run's status, live or finished
"""

#: The exit status of a command whose output pipe was closed (as if killed by SIGPIPE).
BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line  # a warning is one line too (e.g. a corrupt checkpoint skipped)
            try:
                code = _main(args)
            finally:
                if "torch" in sys.modules:
                    from statetrainer import parallel

                    parallel.destroy()
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return BROKEN_PIPE


def _quiet_stdout() -> None:
    """The reader went away (``| head``): send what is left to /dev/null, so that nothing
    complains about the closed pipe when Python flushes standard output at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (an in-process caller)
        pass
    finally:
        os.close(devnull)


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    text = " ".join(str(message).split())
    print(f"statetrainer: warning: {text}", file=sys.stderr if file is None else file)


def _main(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except (UsageError, StateTrainerError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        from statetrainer._errors import TrainerRunError

        if isinstance(exc, TrainerRunError) and isinstance(exc.__cause__, BrokenPipeError):
            raise exc.__cause__ from None  # printing to a closed pipe (| head): the reader has all it wants
        if isinstance(exc, TrainerRunError):
            return _run_failed(exc, getattr(args, "traceback", False))
        if isinstance(exc, BuildError):
            return _build_failed(exc, getattr(args, "traceback", False))
        if getattr(args, "traceback", False) and exc.__cause__ is not None:
            from statetrainer.cli.console import print_traceback

            print_traceback(exc.__cause__)
        print(f"statetrainer: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("statetrainer: interrupted", file=sys.stderr)
        return 130


def one_line(exc: BaseException) -> str:
    """An error's message on one line (an OSError as its reason and file, a listed problem after a colon)."""
    if isinstance(exc, OSError) and not isinstance(exc, StateTrainerError):
        where = f": {exc.filename!r}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    lines = [line.strip().removeprefix("- ") for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:1] + ["; ".join(lines[1:])]).strip() if lines else type(exc).__name__


class BuildError(StateTrainerError):
    """The trainer's constructor (one of its hooks) raised: the cause is the user's exception."""

    def __init__(self, trainer_name: str, cause: BaseException) -> None:
        self.trainer_name = trainer_name
        super().__init__(f"building {trainer_name} failed: {type(cause).__name__}: {cause}")


def _run_failed(exc: Any, full_traceback: bool = False) -> int:
    """A run failed: exit 1 with where it failed — the user's file and line, the lifecycle,
    state, callback, epoch and batch — printed once. When the cause is the machine's (a
    full disk, a read-only file system) or bad input (a file that does not fit), one line
    says so and what to do: exit 1 for the former (the last good checkpoint is kept), 2 for
    the latter."""
    cause = exc.__cause__
    where = f"lifecycle {exc.lifecycle!r}, state {exc.state!r}, epoch {exc.epoch}, batch {exc.batch}"
    if isinstance(cause, OSError) and not isinstance(cause, StateTrainerError):
        print(f"statetrainer: run failed: {one_line(cause)} (in {where}); the run is marked failed and its last "
              f"good checkpoint is kept: fix the cause (free some space), then continue it with --resume",
              file=sys.stderr)
        return 1
    from statetrainer._errors import ConfigurationError

    if isinstance(cause, ConfigurationError):  # the trainer's set-up, found while it ran: the run failed
        print(f"statetrainer: run failed: {one_line(cause)} (in {where})", file=sys.stderr)
        return 1
    if isinstance(cause, StateTrainerError):  # a file that does not fit (a checkpoint, run.json): bad input
        print(f"statetrainer: error: {one_line(cause)} (in {where})", file=sys.stderr)
        return 2
    from statetrainer.cli import console

    if full_traceback:
        console.print_traceback(exc)
        return 1
    lines = str(exc).splitlines()
    at = console.where_line(cause) if cause is not None else None
    split = next((i for i, line in enumerate(lines) if line.startswith("  raised in ")), len(lines))
    shown = lines[:split] + ([f"  {at}"] if at else []) + lines[split:] + ["  (--traceback prints the full traceback)"]
    print("statetrainer: run failed: " + "\n".join(shown), file=sys.stderr)
    return 1


def _build_failed(exc: BuildError, full_traceback: bool) -> int:
    """The constructor raised: the error and the user's file and line (exit 1)."""
    from statetrainer.cli import console

    cause = exc.__cause__
    if full_traceback and cause is not None:
        console.print_traceback(cause)
    at = console.where_line(cause) if cause is not None else None
    lines = [f"statetrainer: {exc}", *([f"  {at}"] if at else [])]
    if not full_traceback:
        lines.append("  (--traceback prints the full traceback)")
    print("\n".join(lines), file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    from statetrainer import __version__
    from statetrainer.cli import diagram, inspect_run, train
    from statetrainer.web import cli as web_cli

    p = argparse.ArgumentParser(prog="statetrainer", description=DESCRIPTION, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"statetrainer {__version__} ({_versions()})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_parsers(sub)
    diagram.add_parsers(sub)
    inspecting = inspect_run.add_parsers(sub)
    web_cli.add_inspect_options(inspecting)
    web_cli.add_serve_parser(sub)
    return p


def _versions() -> str:
    """``torch 2.13.0+cpu, Python 3.11.7`` (read from the installed metadata: torch is not imported)."""
    from importlib import metadata

    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    return f"torch {torch}, Python {sys.version.split()[0]}"


def main_process() -> bool:
    """Rank 0 (or a single process) writes files and prints; torchrun's other ranks stay quiet."""
    from statetrainer import parallel

    return parallel.is_main_process()


def load_class(target: str, what: str = "", of: type | None = None) -> Any:
    """Import ``MODULE:NAME`` or ``path/to/file.py:NAME``; a clear error when it cannot.

    A file's folder goes first on ``sys.path`` (its sibling modules import, as with ``python
    file.py``), and a module is looked up from the working directory too (as with ``python
    -m``). A name the module lacks gets a did-you-mean among its classes (its subclasses of
    ``of`` when given). ``what`` prefixes the errors (``--callback``).
    """
    prefix = f"{what} " if what else ""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{prefix}expected MODULE:NAME or file.py:NAME, got {target!r}")
    module = _import(module_name, prefix)
    try:
        return getattr(module, attr)
    except AttributeError:
        hint = _name_hint(module, attr, of)
        raise UsageError(f"{prefix}{module_name!r} has no attribute {attr!r}{hint}") from None


def _import(module_name: str, prefix: str) -> Any:
    try:
        if module_name.endswith(".py"):
            return _import_file(module_name, prefix)
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())  # after the installed packages: a local folder never shadows one
        return importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as exc:
        from statetrainer.cli.console import where_line

        at = where_line(exc)
        raise UsageError(f"{prefix}cannot import {module_name!r}: {type(exc).__name__}: {exc}"
                         f"{f' ({at})' if at else ''}") from exc


def _import_file(module_name: str, prefix: str) -> Any:
    """Load ``path/to/file.py`` as module ``file`` (once: a second target in it reuses it)."""
    path = Path(module_name)
    if not path.is_file():
        raise UsageError(f"{prefix}file {module_name!r} does not exist")
    path = path.resolve()
    loaded = sys.modules.get(path.stem)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[path.stem]
        raise
    return module


def _name_hint(module: Any, attr: str, of: type | None) -> str:
    """``; did you mean 'MyTrainer'?``, else the module's classes of the kind wanted."""
    classes = sorted(name for name, value in vars(module).items() if not name.startswith("_")
                     and isinstance(value, type) and (of is None or (issubclass(value, of) and value is not of)))
    names = classes if of is not None else sorted(n for n in vars(module) if not n.startswith("_"))
    close = difflib.get_close_matches(attr, names, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    if of is not None:
        kind = f"{of.__name__} subclasses"
        return f"; its {kind}: {', '.join(classes)}" if classes else f"; it defines no {kind}"
    return ""


def _trainer_lifecycles(target: str | None) -> dict[str, Any]:
    from statetrainer import lifecycles

    if target is None:
        return dict(lifecycles.BUILTIN)
    cls: Any = load_class(target)
    lifecycles_of = getattr(cls, "lifecycles", None) if isinstance(cls, type) else None
    if not callable(lifecycles_of):
        raise UsageError(f"{target!r} is not a statetrainer trainer class")
    return dict(lifecycles_of())
