"""``statetrainer diagram``, ``verify`` and ``verify-trace``: lifecycles drawn and checked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from statetrainer.cli import UsageError, _trainer_lifecycles, load_class


def add_parsers(sub: Any) -> None:
    """Add ``diagram``, ``verify`` and ``verify-trace``."""
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


def _trace_lifecycles(target: str | None, trace: Path) -> dict[str, Any]:
    """The lifecycles a trace is checked against: ``--trainer``'s, else those its run
    directory recorded (``lifecycles.json``), else the built-ins."""
    from statetrainer import inspect

    if target is None and (trace.parent / inspect.LIFECYCLES_FILE).is_file():
        return inspect.read_lifecycles(trace.parent)
    return _trainer_lifecycles(target)


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
    from statetrainer.inspect import read_trace
    from statetrainer.testing import check_trace

    path = Path(args.trace)
    if not path.exists():
        raise UsageError(f"trace file {args.trace!r} does not exist")
    rows = read_trace(path)  # every line checked: one line naming the file, line and field when bad
    problem = check_trace(rows, _trace_lifecycles(args.trainer, path))
    if problem:
        print(f"trace is NOT a path through the machine: {problem}")
        return 1
    print(f"trace OK: {len(rows)} entries, every step is a transition of its lifecycle")
    return 0
