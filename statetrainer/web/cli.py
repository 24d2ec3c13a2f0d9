"""Command-line wiring of the web view: ``statetrainer serve`` and ``inspect RUN --web``.

``statetrainer.cli`` calls these three functions; everything else lives in this package.
"""

from __future__ import annotations

import argparse


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand to the ``statetrainer`` parser."""
    p = sub.add_parser("serve", help="serve the live lifecycle view of runs in the browser")
    p.add_argument("runs", nargs="*", default=["runs"], help="run directories or folders of runs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.set_defaults(func=serve)


def add_inspect_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--web`` to ``statetrainer inspect``."""
    parser.add_argument("--web", action="store_true", help="open the run in the browser view")


def serve(args: argparse.Namespace) -> int:
    """Run the web view until interrupted."""
    raise NotImplementedError("statetrainer serve is being built")


def inspect_web(args: argparse.Namespace) -> int | None:
    """Handle ``inspect RUN --web``; ``None`` when ``--web`` was not given."""
    if not getattr(args, "web", False):
        return None
    raise NotImplementedError("statetrainer inspect --web is being built")
