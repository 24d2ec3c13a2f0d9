"""``statetrainer diagram``, ``verify`` and ``verify-trace``: lifecycles drawn and checked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from statetrainer.cli import UsageError, _trainer_lifecycles, load_class

_DIAGRAM_EXAMPLES = """examples:
  statetrainer diagram train                                  DOT on stdout
  statetrainer diagram train --format svg -o train.svg        SVG file (needs Graphviz)
  statetrainer diagram train --format svg > train.svg         SVG on stdout
  statetrainer diagram train --format png --scale 2 -o t.png  twice Graphviz's 96 dpi
  statetrainer diagram test --format mermaid
  statetrainer diagram train --format svg -o f.svg --highlight training_step --failed on_epoch_end
  statetrainer diagram train --format text                    as statetrainer explain train
"""

_EXPLAIN_EXAMPLES = """examples:
  statetrainer explain train
  statetrainer explain test
  statetrainer explain train --trainer statetrainer:GanTrainer
  statetrainer explain accumulate --trainer examples/grad_accumulation.py:AccumulatingTrainer
"""


def add_parsers(sub: Any) -> None:
    """Add ``diagram``, ``explain``, ``verify``, ``verify-trace`` and ``trace``."""
    fmt = argparse.RawDescriptionHelpFormatter
    g = sub.add_parser(
        "diagram", help="draw a lifecycle from the code", formatter_class=fmt, epilog=_DIAGRAM_EXAMPLES,
        description="Draw a lifecycle from the code. Colours say how often a state runs (one palette for every "
                    "lifecycle); a second line names its roles; a double border marks a resumable state; a grey "
                    "region runs without grad; dashed grey edges are the cases the seed leaves implicit. SVG and "
                    "PNG carry a legend saying so.")
    g.add_argument("lifecycle", help="train, evaluate, test, or a lifecycle of --trainer")
    g.add_argument("--format", choices=["dot", "svg", "png", "mermaid", "text"], default="dot",
                   help="output format; svg and png need Graphviz's dot; text is the explain pseudo-code "
                        "(default: dot)")
    g.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="file to write; '-' for stdout (default: stdout, but png refuses a terminal)")
    g.add_argument("--trainer", default=None, metavar="TARGET", help=_TRAINER_HELP)
    g.add_argument("--highlight", default=None, metavar="STATE", help="mark STATE as current (red border)")
    g.add_argument("--failed", default=None, metavar="STATE", help="mark STATE as where a run failed (filled red)")
    g.add_argument("--callbacks", action="store_true", help="list callbacks under each state (needs --trainer)")
    g.add_argument("--no-extensions", action="store_true", help="draw only the seed's edges")
    g.add_argument("--nested", action="store_true", help="draw nested regions too (evaluate inside train)")
    g.add_argument("--no-legend", action="store_true", help="leave the legend out (default: dot, mermaid, "
                                                             "svg and png have one)")
    size = g.add_mutually_exclusive_group()
    size.add_argument("--scale", type=float, default=None, metavar="FACTOR",
                      help="svg/png size as a factor of Graphviz's resolution (png 96 dpi, svg 72; default: 1)")
    size.add_argument("--dpi", type=float, default=None, metavar="N", help="svg/png resolution in dots per inch")
    g.set_defaults(func=_diagram)

    x = sub.add_parser(
        "explain", help="print a lifecycle's hook order as nested-loop pseudo-code", formatter_class=fmt,
        epilog=_EXPLAIN_EXAMPLES,
        description="Print the order in which a run enters a lifecycle's states, as nested loops generated "
                    "from the machine (its compounds, loops, guards, roles and feeds).")
    x.add_argument("lifecycle", nargs="?", default=None,
                   help="train, evaluate, test, or a lifecycle of --trainer (default: the trainer's main "
                        "lifecycle; train without --trainer)")
    x.add_argument("--trainer", default=None, metavar="TARGET", help=_TRAINER_HELP)
    x.set_defaults(func=_explain)

    v = sub.add_parser(
        "verify", help="compare the machines with the seed's DOT diagrams", formatter_class=fmt,
        epilog="examples:\n  statetrainer verify\n  statetrainer verify -v\n  statetrainer verify --diagrams "
               "path/to/diagrams --trainer my_trainer.py:MyTrainer\n",
        description="Compare each lifecycle with the seed's DOT file of its name (states, seed edges, loop "
                    "labels), report its roles, and check that the diagram the code renders draws every role "
                    "(parsed back with pydot). Prints one line per lifecycle and each difference; -v adds the "
                    "extension edges and the roles. Exits 1 on a mismatch.")
    v.add_argument("--diagrams", default=None, metavar="DIR",
                   help="folder with train.dot, evaluate.dot, test.dot (default: ./diagrams when it has them, "
                        "else the seed's files shipped in the package)")
    v.add_argument("--trainer", default=None, metavar="TARGET", help=_TRAINER_HELP)
    v.add_argument("-v", "--verbose", action="store_true", help="list the extension edges and the roles")
    v.set_defaults(func=_verify)

    t = sub.add_parser(
        "verify-trace", help="check that a recorded trace is a path through the machine", formatter_class=fmt,
        epilog="examples:\n  statetrainer verify-trace runs/first/trace.jsonl\n  statetrainer verify-trace "
               "runs/acc/trace.jsonl --trainer examples/grad_accumulation.py:AccumulatingTrainer\n",
        description="Check that every step of a recorded trace.jsonl is a transition of its lifecycle; exits 1\n"
                    "naming the first step that is not. The lifecycles are the run directory's lifecycles.json\n"
                    "when there is one, else --trainer's, else the built-in ones.")
    t.add_argument("trace", help="trace.jsonl of a run directory")
    t.add_argument("--trainer", default=None, metavar="TARGET", help=_TRAINER_HELP)
    t.set_defaults(func=_verify_trace)

    e = sub.add_parser("trace", help="print a run's trace, one JSON object per entry", formatter_class=fmt,
                       epilog="examples:\n  statetrainer trace runs/first --tail 20\n  statetrainer trace "
                              "runs/first | head -5\n",
                       description="Print the entries of a run directory's trace.jsonl (written in chunks,\n"
                                   "statetrainer.trace/2) one JSON object per line: seq, lifecycle, state, epoch,\n"
                                   "batch, depth, note, edge, run_id — for people and jq.")
    e.add_argument("run", help="a run directory, or its trace.jsonl")
    e.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N entries (default: all)")
    e.set_defaults(func=_print_trace)


_TRAINER_HELP = "a trainer class, MODULE:CLASS or file.py:CLASS, for its lifecycles (default: ConvnetTrainer's)"


def _trace_lifecycles(target: str | None, trace: Path) -> dict[str, Any]:
    """The lifecycles a trace is checked against: ``--trainer``'s, else those its run
    directory recorded (``lifecycles.json``), else the built-ins."""
    from statetrainer import inspect

    if target is None and (trace.parent / inspect.LIFECYCLES_FILE).is_file():
        return inspect.read_lifecycles(trace.parent)
    return _trainer_lifecycles(target)


def _lifecycle(target: str | None, name: str | None) -> Any:
    """The lifecycle ``name`` of ``target`` (default: the trainer's main one, else ``train``)."""
    from statetrainer._errors import UnknownStateError

    specs = _trainer_lifecycles(target)
    if name is None:
        name = next(iter(specs)) if target else "train"
    if name not in specs:
        error = UnknownStateError(name, specs, what="lifecycle")
        error.message += f" (the lifecycles{' of ' + target if target else ''}: {', '.join(specs)})"
        raise error
    return specs[name]


def _diagram(args: argparse.Namespace) -> int:
    from statetrainer import diagrams

    spec = _lifecycle(args.trainer, args.lifecycle)
    for state in (args.highlight, args.failed):
        if state:
            spec.state(state)
    if args.format == "text":
        return _explain(args)
    kwargs: dict[str, Any] = {"highlight": args.highlight, "failed": args.failed,
                              "extensions": not args.no_extensions, "nested": args.nested,
                              "legend": not args.no_legend}
    if args.format != "mermaid":
        kwargs["callbacks"] = _callback_names(args.trainer, spec) if args.callbacks else None
        kwargs.update(scale=args.scale, dpi=args.dpi)
    if args.format == "png" and args.output is None and sys.stdout.isatty():
        raise UsageError("--format png writes an image: give -o FILE, pipe it, or -o - to print it anyway")
    data = diagrams.to_format(spec, args.format, **kwargs)
    if args.output and args.output != "-":
        Path(args.output).write_bytes(data)
    else:
        _write_stdout(data)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from statetrainer.explain import explain

    spec = _lifecycle(args.trainer, args.lifecycle)
    text = explain(spec, trainer=args.trainer)
    if getattr(args, "output", None) and args.output != "-":
        Path(args.output).write_text(text)
    else:
        _write_stdout(text.encode())
    return 0


def _write_stdout(data: bytes) -> None:
    """Write to stdout (a reader that stops early, ``| head``, is :func:`statetrainer.cli.main`'s to handle)."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except AttributeError:  # a stdout replaced by a text-only stream (tests capturing output)
        sys.stdout.write(data.decode())


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


def _diagram_folder(given: str | None, names: list[str]) -> Path:
    """``--diagrams``, else ``./diagrams`` when it holds a DOT file of one of ``names``, else the seed."""
    from statetrainer import diagrams

    if given is not None:
        folder = Path(given)
        if not folder.is_dir():
            raise UsageError(f"diagram folder {str(folder)!r} does not exist")
        return folder
    local = Path("diagrams")
    if any((local / f"{n}.dot").is_file() for n in names):
        return local
    return diagrams.seed_folder()


def _verify(args: argparse.Namespace) -> int:
    from statetrainer import diagrams

    specs = _trainer_lifecycles(args.trainer)
    folder = _diagram_folder(args.diagrams, list(specs))
    ok = True
    checked = 0
    for name, spec in specs.items():
        path = folder / f"{name}.dot"
        if not path.exists():
            print(f"{name}: no {path}, skipped")
            continue
        report = diagrams.verify(spec, path)
        print(report.format(verbose=args.verbose))
        ok &= report.ok
        checked += 1
    if checked == 0:
        raise UsageError(f"no <lifecycle>.dot file in {str(folder)!r} to verify against")
    if not args.verbose:
        print("(-v lists the extension edges and each lifecycle's roles)")
    return 0 if ok else 1


def _print_trace(args: argparse.Namespace) -> int:
    from statetrainer import tracefile
    from statetrainer.inspect import read_trace

    path = Path(args.run)
    rows = read_trace(path / "trace.jsonl" if path.is_dir() else path)
    if args.tail is not None:
        if args.tail < 0:
            raise UsageError(f"--tail must be >= 0, got {args.tail}")
        rows = rows[len(rows) - args.tail:] if args.tail else []
    sys.stdout.writelines(tracefile.iter_lines(rows))
    return 0


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
