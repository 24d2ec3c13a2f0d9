"""``statetrainer inspect``: a run's status, live or finished, from its run directory.

A status that says ``running`` is checked against its writer: when the process is gone (on
this host), the run is shown as ``died``; otherwise the age of the last update is shown
(a run on another host cannot be checked from here). ``--watch`` ends when the run is
finished, failed, stopped or dead. Under data parallel, a failure another rank recorded
(``failure.rank<N>.json``) is shown with the rank. Reads only: never locks, never writes
in the run directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from statetrainer.cli import UsageError

_EXAMPLES = """examples:
  statetrainer inspect runs/first
  statetrainer inspect runs/first --watch --interval 2
  statetrainer inspect runs/first --json
  statetrainer inspect runs/first --diagram now.svg
"""

#: Statuses after which --watch keeps going.
LIVE = ("running", "stopping")


def add_parsers(sub: Any) -> argparse.ArgumentParser:
    """Add ``inspect``; returns its parser (the web view adds ``--web``)."""
    i = sub.add_parser(
        "inspect", help="show a run's status (live or finished)", epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Show where a run is — lifecycle, state, epoch, batch, metrics, the last transitions —\n"
                    "from its run directory's status.json, which the running trainer keeps up to date.\n"
                    "A 'running' status whose process is gone is shown as 'died'. Reads only.")
    i.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (it holds status.json)")
    i.add_argument("--json", action="store_true", help="print the status as JSON (default: as text)")
    i.add_argument("--watch", action="store_true", help="refresh until the run is finished, failed, stopped or dead")
    i.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="seconds between refreshes with --watch (default: 1.0)")
    i.add_argument("--diagram", default=None, metavar="FILE",
                   help="also write the lifecycle with the current state highlighted: .svg, .png, else DOT "
                        "(default: none)")
    i.set_defaults(func=_inspect)
    return i  # type: ignore[no-any-return]


def _inspect(args: argparse.Namespace) -> int:
    from statetrainer import inspect
    from statetrainer.web import cli as web_cli

    web = web_cli.inspect_web(args)
    if web is not None:
        return web
    if args.interval <= 0:
        raise UsageError(f"--interval must be > 0 seconds, got {args.interval}")
    data = inspect.read_status(args.run_dir)
    while args.watch and inspect.liveness(data)[0] in LIVE:
        sys.stdout.write("\x1b[2J\x1b[H" + _text(args.run_dir, data) + "\n")
        sys.stdout.flush()
        time.sleep(args.interval)
        data = inspect.read_status(args.run_dir)
    if args.diagram:
        _write_diagram(args.run_dir, data, args.diagram)
    print(json.dumps(_with_liveness(args.run_dir, data), indent=1) if args.json else _text(args.run_dir, data))
    return 0


def _with_liveness(run_dir: str, data: dict[str, Any]) -> dict[str, Any]:
    """``status.json`` as written, plus what inspect judged: ``shown`` (``died`` for a dead
    writer), why, the age of the last update, and other ranks' recorded failures."""
    from statetrainer import inspect

    shown, why = inspect.liveness(data)
    updated = data.get("updated")
    age = round(time.time() - float(updated), 3) if isinstance(updated, (int, float)) else None
    extra: dict[str, Any] = {"shown": shown, "shown_why": why, "age_s": age}
    failures = inspect.rank_failures(run_dir)
    if failures:
        extra["rank_failures"] = failures
    return {**data, "inspect": extra}


def _text(run_dir: str, data: dict[str, Any]) -> str:
    from statetrainer import inspect

    text = inspect.format_status(data)
    if data.get("error"):
        return text
    for failure in inspect.rank_failures(run_dir)[:1]:  # rank 0 did not record it: it died, or is still up
        text += (f"\nrank {failure.get('rank')} FAILED in state {failure.get('state')} ({failure.get('callback')}), "
                 f"epoch {failure.get('epoch')}, batch {failure.get('batch')}: {failure.get('message')}")
    return text


def _write_diagram(run_dir: str, data: dict[str, Any], target: str) -> None:
    from statetrainer import diagrams, inspect

    specs = inspect.read_lifecycles(run_dir)
    spec = specs.get(data.get("lifecycle") or "") or next(iter(specs.values()))
    state = data.get("state") if data.get("state") in spec.state_names else None
    recent = data.get("recent") or []
    last = tuple(recent[-2:]) if len(recent) >= 2 else None
    fmt = "svg" if target.endswith(".svg") else "png" if target.endswith(".png") else "dot"
    # a failed run: its failing state filled red (as `diagram --failed` draws it), not "current"
    failed = state if data.get("status") == "failed" else None
    content = diagrams.to_format(spec, fmt, highlight=None if failed else state, failed=failed, last=last)
    try:
        Path(target).write_bytes(content)
    except OSError as exc:
        raise UsageError(f"--diagram: cannot write {target!r}: {exc.strerror}; choose a writable path") from None
