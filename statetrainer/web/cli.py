"""Command-line wiring of the web view: ``statetrainer serve`` and ``inspect RUN --web``.

``statetrainer.cli`` calls these four functions; everything else lives in this package.
Importing this module imports nothing heavy (no torch, not even the server): the
``statetrainer`` command builds its parser on every call.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8787


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand to the ``statetrainer`` parser."""
    p = sub.add_parser("serve", help="serve the live lifecycle view of runs in the browser",
                       description="A read-only web view of every run under the given folders: where each "
                                   "run is in its lifecycle, live. Binds 127.0.0.1 unless --host says otherwise.")
    p.add_argument("runs", nargs="*", default=["runs"], help="run directories or folders of runs (default: runs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the runs to your network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--log-requests", action="store_true", help="print every request to stderr")
    p.set_defaults(func=serve)


def add_inspect_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--web`` (and its ``--port``) to ``statetrainer inspect``."""
    parser.add_argument("--web", action="store_true", help="open the run in the browser view (127.0.0.1)")
    parser.add_argument("--port", dest="web_port", metavar="PORT", type=int, default=0,
                        help="port for --web (default: any free port)")


def serve(args: argparse.Namespace) -> int:
    """Run the web view until interrupted."""
    folders = [_folder(f, missing_ok=True) for f in args.runs]
    for folder in folders:
        if not folder.exists():
            print(f"statetrainer serve: {str(folder)!r} does not exist yet; its runs will appear once it does",
                  file=sys.stderr)
    server = _bind(folders, args.host, args.port, getattr(args, "log_requests", False))
    if not server.loopback_only:
        print(f"statetrainer serve: WARNING: listening on {args.host}: anyone who can reach this machine on "
              f"port {server.server_address[1]} can read these runs (status, metrics, tracebacks); "
              f"the view has no login", file=sys.stderr)
    print(f"statetrainer web view: {server.url}  (runs under {', '.join(str(f) for f in folders)}; "
          f"Ctrl-C to stop)", flush=True)
    return _serve_until_interrupted(server)


def inspect_web(args: argparse.Namespace) -> int | None:
    """Handle ``inspect RUN --web``; ``None`` when ``--web`` was not given."""
    if not getattr(args, "web", False):
        return None
    folder = _folder(args.run_dir)
    from statetrainer.web import runs

    if not any((folder / name).is_file() for name in (runs.STATUS, runs.RUN)):
        from statetrainer._errors import ConfigurationError

        raise ConfigurationError(f"{str(folder)!r} is not a run directory: it has no {runs.STATUS}")
    server = _bind([folder], "127.0.0.1", getattr(args, "web_port", 0), False)
    url = server.run_url("0:.")
    print(f"statetrainer web view of {folder}: {url}  (Ctrl-C to stop)", flush=True)
    _open_browser(url)
    return _serve_until_interrupted(server)


def _folder(name: str, missing_ok: bool = False) -> Path:
    from statetrainer._errors import ConfigurationError

    path = Path(name)
    if missing_ok and not path.exists():
        return path  # `statetrainer serve runs/` may start before the first run makes runs/
    if not path.is_dir():
        raise ConfigurationError(f"{name!r} is not a directory: give run directories or folders of runs")
    return path


def _bind(folders: list[Path], host: str, port: int, log_requests: bool) -> Any:
    from statetrainer._errors import ConfigurationError
    from statetrainer.web.server import make_server

    try:
        return make_server(list(folders), host, port, log_requests)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(f"port {port} is in use; choose another with --port N "
                                     f"(0: any free port)") from None
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _serve_until_interrupted(server: Any) -> int:
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("statetrainer web view stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def _open_browser(url: str) -> None:
    """Open ``url`` in a graphical browser; on a machine without a display, only print it.

    Without a display :mod:`webbrowser` would start a text browser in this terminal.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return
    import webbrowser

    try:
        webbrowser.open(url)
    except Exception:  # noqa: BLE001 (a browser that fails to start must not stop the server)
        pass
