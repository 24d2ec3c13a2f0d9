"""``statetrainer inspect``: a run's status, live or finished, from its run directory."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def add_parsers(sub: Any) -> argparse.ArgumentParser:
    """Add ``inspect``; returns its parser (the web view adds ``--web``)."""
    i = sub.add_parser("inspect", help="show a run's status (live or finished)")
    i.add_argument("run_dir")
    i.add_argument("--json", action="store_true")
    i.add_argument("--watch", action="store_true")
    i.add_argument("--interval", type=float, default=1.0)
    i.add_argument("--diagram", default=None, help="write the lifecycle with the current state highlighted")
    i.set_defaults(func=_inspect)
    return i  # type: ignore[no-any-return]


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
