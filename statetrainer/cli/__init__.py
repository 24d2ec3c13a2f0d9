"""The ``statetrainer`` command: demo, run, diagram, verify, verify-trace, inspect, serve.

User mistakes (a bad option, a missing file, a wrong ``MODULE:CLASS``) print one line to
stderr and exit 2; a failed training run exits 1 with the error saying where it failed.
One module per group of subcommands: :mod:`.train` (demo, run), :mod:`.diagram`
(diagram, verify, verify-trace), :mod:`.inspect_run` (inspect), and the web view's
:mod:`statetrainer.web.cli` (serve, ``inspect --web``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warning_line  # a warning is one line too (e.g. a corrupt checkpoint skipped)
        try:
            return _main(args)
        finally:
            if "torch" in sys.modules:
                from statetrainer import parallel

                parallel.destroy()


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    text = " ".join(str(message).split())
    print(f"statetrainer: warning: {text}", file=sys.stderr if file is None else file)


def _main(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except (UsageError, StateTrainerError, OSError) as exc:
        from statetrainer._errors import TrainerRunError

        if isinstance(exc, TrainerRunError):
            return _run_failed(exc)
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


def _run_failed(exc: Any) -> int:
    """A run failed: exit 1 with where it failed. When the cause is the machine's (a full disk,
    a read-only file system) or bad input (a file that does not fit), one line says so and
    what to do — exit 1 for the former (the last good checkpoint is kept), 2 for the latter."""
    cause = exc.__cause__
    where = f"lifecycle {exc.lifecycle!r}, state {exc.state!r}, epoch {exc.epoch}, batch {exc.batch}"
    if isinstance(cause, OSError) and not isinstance(cause, StateTrainerError):
        print(f"statetrainer: run failed: {one_line(cause)} (in {where}); the run is marked failed and its last "
              f"good checkpoint is kept: fix the cause (free some space), then continue it with --resume",
              file=sys.stderr)
        return 1
    if isinstance(cause, StateTrainerError):
        print(f"statetrainer: error: {one_line(cause)} (in {where})", file=sys.stderr)
        return 2
    print(f"statetrainer: run failed: {exc}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    from statetrainer.cli import diagram, inspect_run, train
    from statetrainer.web import cli as web_cli

    p = argparse.ArgumentParser(prog="statetrainer", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    train.add_parsers(sub)
    diagram.add_parsers(sub)
    inspecting = inspect_run.add_parsers(sub)
    web_cli.add_inspect_options(inspecting)
    web_cli.add_serve_parser(sub)
    return p


def main_process() -> bool:
    """Rank 0 (or a single process) writes files and prints; torchrun's other ranks stay quiet."""
    from statetrainer import parallel

    return parallel.is_main_process()


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


def _trainer_lifecycles(target: str | None) -> dict[str, Any]:
    from statetrainer import lifecycles

    if target is None:
        return dict(lifecycles.BUILTIN)
    cls: Any = load_class(target)
    lifecycles_of = getattr(cls, "lifecycles", None) if isinstance(cls, type) else None
    if not callable(lifecycles_of):
        raise UsageError(f"{target!r} is not a statetrainer trainer class")
    return dict(lifecycles_of())
