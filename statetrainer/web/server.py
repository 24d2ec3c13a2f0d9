"""The web view's HTTP server: read-only JSON endpoints, the SVG diagrams, and the pages.

Built on the standard library's :class:`http.server.ThreadingHTTPServer`, not a web
framework: the view serves a handful of GET endpoints to one person's browser, so a
framework would add a runtime dependency (and its start-up time) to a training library
for no gain. One thread per request keeps a slow disk or ``dot`` from blocking the rest.

Safe by default:

* it binds ``127.0.0.1`` unless told otherwise, and then also refuses requests whose
  ``Host`` header is not a loopback name (so a web page cannot reach it through DNS
  rebinding);
* GET and HEAD only; nothing writes, deletes or runs anything but Graphviz's ``dot``
  on a run's lifecycle spec;
* every file is opened through :class:`~statetrainer.web.files.Roots`, which refuses
  anything outside the served run directories (``..``, encoded or not, absolute paths,
  symlinks out); static assets come from a fixed list;
* a bad file is reported on its run; an unexpected error is a 500 for that request only.

Endpoints (``run`` is a run id from ``/api/runs``)::

    GET /                                  the runs page
    GET /run?run=ID                        a run page
    GET /api/runs                          every run: status, epoch, progress, rate, ETA
    GET /api/run?run=ID                    status.json as written + derived status, ranks, stop
    GET /api/lifecycles?run=ID             the run's lifecycle specs, for highlighting
    GET /api/diagram?run=ID&lifecycle=NAME the lifecycle as SVG
    GET /api/metrics?run=ID                per-epoch metrics and the charts to draw
    GET /api/trace?run=ID[&limit=N][&before=OFFSET]  the tail of trace.jsonl
    GET /api/file?run=ID&name=NAME         one of the run's known files, as is

JSON answers carry an ``ETag``; a poll with ``If-None-Match`` gets ``304`` when nothing
changed. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import math
import mimetypes
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from statetrainer import tracefile
from statetrainer.web import diagram, runs
from statetrainer.web.files import RAW_FILES, Cache, Refused, Roots, signature, tail_lines

STATIC = Path(__file__).with_name("static")
PAGES = {"/": "index.html", "/index.html": "index.html", "/run": "run.html"}
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: Trace entries per request: the default, and the most a request may ask for.
TRACE_DEFAULT, TRACE_MAX = 5_000, 20_000
#: How long the list of run directories is reused before the roots are searched again.
DISCOVERY_SECONDS = 2.0


class HTTPError(Exception):
    """An answer other than 200, with a message for the page."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class App:
    """What the handlers share: the roots, the caches, and the endpoint functions."""

    def __init__(self, folders: list[str | os.PathLike[str]]) -> None:
        self.roots = Roots(folders)
        self.cache = Cache()
        self.traces = Cache(16)  # a trace answer can hold 20,000 entries: keep few
        self.reader = runs.RunReader(self.roots, self.cache)
        self._found: tuple[float, list[tuple[int, Path]]] = (0.0, [])
        self._lock = threading.Lock()
        self.routes: dict[str, Callable[[dict[str, str]], tuple[Any, str | None]]] = {
            "/api/runs": self.api_runs,
            "/api/run": self.api_run,
            "/api/lifecycles": self.api_lifecycles,
            "/api/metrics": self.api_metrics,
            "/api/trace": self.api_trace,
        }

    # -- runs -------------------------------------------------------------------------

    def found(self) -> list[tuple[int, Path]]:
        """The run directories under the roots, searched again at most every couple of seconds."""
        with self._lock:
            at, found = self._found
            if time.monotonic() - at < DISCOVERY_SECONDS:
                return found
        found = runs.discover(self.roots)
        with self._lock:
            self._found = (time.monotonic(), found)
        return found

    def run(self, query: dict[str, str]) -> tuple[str, Path]:
        """The run a request names, resolved inside the roots (404 otherwise)."""
        run_id = query.get("run", "")
        try:
            path = self.roots.resolve(run_id)
        except Refused as exc:
            raise HTTPError(HTTPStatus.NOT_FOUND, str(exc)) from None
        if not any((path / name).exists() for name in (runs.STATUS, runs.RUN)):
            raise HTTPError(HTTPStatus.NOT_FOUND, f"{run_id!r} is not a run directory")
        return run_id, path

    # -- endpoints: each returns (JSON value, ETag or None) -----------------------------

    def api_runs(self, query: dict[str, str]) -> tuple[Any, str | None]:
        """Every run's summary row."""
        rows = [self.reader.summary(self.roots.run_id(i, p), p) for i, p in self.found()]
        tag = _etag([[r.get(k) for k in ("id", "status", "updated", "problems")] for r in rows])
        return {"runs": rows, "roots": self.roots.labels, "now": time.time()}, tag

    def api_run(self, query: dict[str, str]) -> tuple[Any, str | None]:
        """One run in full; the ETag changes with its files and its liveness, not with the clock."""
        run_id, path = self.run(query)
        detail = self.reader.detail(run_id, path)
        return detail, _etag([detail["signatures"], detail["run"]["status"], detail["problems"],
                              detail.get("ranks")])

    def api_lifecycles(self, query: dict[str, str]) -> tuple[Any, str | None]:
        """The run's lifecycle specs as the page uses them, and where they came from."""
        _, path = self.run(query)
        status, _ = self.reader.status(path)
        found = diagram.run_lifecycles(self.roots, path, status, self.cache)
        specs = {name: diagram.client_spec(spec, found.callbacks.get(name, {}))
                 for name, spec in found.specs.items()}
        value = {"source": found.source, "note": found.note, "lifecycles": specs,
                 "current": (status or {}).get("lifecycle"), "callbacks_recorded": found.callbacks_recorded}
        return value, _etag(value)

    def api_metrics(self, query: dict[str, str]) -> tuple[Any, str | None]:
        """Per-epoch metrics and the charts to draw."""
        _, path = self.run(query)
        try:
            value = self.reader.metrics(path)
        except Refused as exc:
            value = {"source": None, "epochs": [], "series": {}, "charts": [], "problem": str(exc)}
        return value, _etag(value)

    def api_trace(self, query: dict[str, str]) -> tuple[Any, str | None]:
        """The last ``limit`` entries of ``trace.jsonl`` before byte ``before``, read from the end."""
        _, path = self.run(query)
        limit = min(max(_int(query, "limit", TRACE_DEFAULT), 1), TRACE_MAX)
        before = _int(query, "before", -1)
        try:
            file = self.roots.file(path, runs.TRACE)
        except Refused as exc:
            raise HTTPError(HTTPStatus.NOT_FOUND, str(exc)) from None
        sig = signature(file)
        if sig is None:
            return {"entries": [], "start": 0, "end": 0, "size": 0, "bad": 0,
                    "problem": "the run has no trace.jsonl yet"}, None
        value = self.traces.get(("trace", str(file), limit, before), sig,
                               lambda: _trace(file, limit, None if before < 0 else before))
        return value, _etag([sig, limit, before])

    def diagram_svg(self, query: dict[str, str]) -> bytes:
        """The SVG of one of the run's lifecycles."""
        from statetrainer._errors import StateTrainerError

        _, path = self.run(query)
        status, _ = self.reader.status(path)
        found = diagram.run_lifecycles(self.roots, path, status, self.cache)
        spec = found.specs.get(query.get("lifecycle", ""))
        if spec is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"the run has no lifecycle {query.get('lifecycle')!r} to draw")
        try:
            return diagram.svg(spec, self.cache)
        except StateTrainerError as exc:  # Graphviz missing or failing: say so on the page
            raise HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from None

    def raw_file(self, query: dict[str, str]) -> Path:
        """One of a run's known files (:data:`~statetrainer.web.files.RAW_FILES`)."""
        _, path = self.run(query)
        name = query.get("name", "")
        if name not in RAW_FILES and not runs.RANK_FILE.match(name):
            raise HTTPError(HTTPStatus.NOT_FOUND, f"{name!r} is not a file the view serves")
        try:
            file = self.roots.file(path, name)
        except Refused as exc:
            raise HTTPError(HTTPStatus.NOT_FOUND, str(exc)) from None
        if not file.is_file():
            raise HTTPError(HTTPStatus.NOT_FOUND, f"the run has no {name}")
        return file


def _int(query: dict[str, str], key: str, default: int) -> int:
    text = query.get(key)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"{key} must be an integer, got {text!r}") from None


def _trace(file: Path, limit: int, before: int | None) -> dict[str, Any]:
    """The last ``limit`` entries (whole lines: a chunk line of :mod:`statetrainer.tracefile`
    holds many) before byte ``before``; ``start`` is where the lines used begin."""
    lines, start, end, size = tail_lines(file, limit, before)
    used: list[list[dict[str, Any]]] = []
    count = bad = 0
    for line in reversed(lines):
        if count >= limit:
            start += len(line) + 1  # a line left for the next page, above
            continue
        found, wrong = tracefile.parse([line])
        bad += wrong
        used.append(found)
        count += len(found)
    entries = [e for found in reversed(used) for e in found]
    problem = f"{bad} line(s) of trace.jsonl are not trace entries and were skipped" if bad else None
    return {"entries": entries, "start": start, "end": end, "size": size, "bad": bad, "problem": problem}


def _etag(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return '"' + hashlib.sha1(text.encode()).hexdigest()[:16] + '"'


def clean(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None``: browsers reject them in JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


class Handler(BaseHTTPRequestHandler):
    """One request: route, answer, and never let an error reach the server loop."""

    server: ViewServer
    server_version = "statetrainer-web"
    protocol_version = "HTTP/1.1"
    _body = True

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
        """Answer a GET."""
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        """Answer a HEAD: the GET's headers, no body."""
        self._answer(body=False)

    def _refuse_method(self) -> None:
        self.close_connection = True  # a request body may follow, unread
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b'{"error": "the view is read-only: GET and HEAD only"}\n',
                   "application/json", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    def _answer(self, body: bool) -> None:
        self._body = body
        try:
            self._check_host()
            self._route()
        except HTTPError as exc:
            self._json_error(exc.status, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # one request fails; the server keeps serving
            traceback.print_exc(file=sys.stderr)
            self._json_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _check_host(self) -> None:
        if not self.server.loopback_only:
            return
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if name.lower() not in LOOPBACK_NAMES:
            raise HTTPError(HTTPStatus.FORBIDDEN, f"unexpected Host {host!r}: this server answers loopback names only")

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path, app = parts.path, self.server.app
        if path in PAGES:
            self._static(PAGES[path])
        elif path.startswith("/static/"):
            self._static(path[len("/static/"):])
        elif path in app.routes:
            value, tag = app.routes[path](query)
            self._json(value, tag)
        elif path == "/api/diagram":
            self._send(HTTPStatus.OK, app.diagram_svg(query), "image/svg+xml", cache="no-cache")
        elif path == "/api/file":
            self._file(app.raw_file(query))
        else:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"nothing at {parts.path!r}")

    def _static(self, name: str) -> None:
        data = self.server.assets.get(name)
        if data is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no asset {name!r}")
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, data, kind + ("; charset=utf-8" if kind.startswith("text/") else ""))

    def _json(self, value: Any, tag: str | None) -> None:
        if tag is not None and tag in (self.headers.get("If-None-Match") or ""):
            self._send(HTTPStatus.NOT_MODIFIED, b"", None, extra={"ETag": tag})
            return
        try:
            data = json.dumps(value, separators=(",", ":"), default=str, allow_nan=False).encode()
        except ValueError:  # a NaN or infinity somewhere: browsers reject them in JSON
            data = json.dumps(clean(value), separators=(",", ":"), default=str).encode()
        self._send(HTTPStatus.OK, data, "application/json", extra={"ETag": tag} if tag else None)

    def _json_error(self, status: HTTPStatus, message: str) -> None:
        try:
            self._send(status, json.dumps({"error": message}).encode() + b"\n", "application/json")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _file(self, file: Path) -> None:
        kind = "text/plain; charset=utf-8" if file.suffix in (".jsonl", ".csv", ".dot", ".txt") else (
            mimetypes.guess_type(file.name)[0] or "application/octet-stream")
        with file.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            self._send_head(HTTPStatus.OK, kind, size, {"Content-Disposition": f'inline; filename="{file.name}"'})
            if self._body:
                shutil.copyfileobj(handle, self.wfile, 1 << 20)

    def _send(self, status: HTTPStatus, data: bytes, kind: str | None, extra: dict[str, str] | None = None,
              cache: str = "no-cache") -> None:
        headers = {"Cache-Control": cache, **(extra or {})}
        self._send_head(status, kind, len(data), headers)
        if self._body and data:
            self.wfile.write(data)

    def _send_head(self, status: HTTPStatus, kind: str | None, length: int, extra: dict[str, str]) -> None:
        self.send_response(status)
        if kind:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        # A page from elsewhere may not frame, sniff or script this one; SVG from runs cannot run scripts.
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy",
                         "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                         "script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Quiet: the pages poll several times a second; errors are printed where they happen."""
        if self.server.log_requests:
            super().log_message(format, *args)


class ViewServer(ThreadingHTTPServer):
    """The running server; ``url`` is where to point a browser."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, folders: list[str | os.PathLike[str]], host: str = "127.0.0.1", port: int = 0,
                 log_requests: bool = False) -> None:
        self.app = App(folders)
        self.assets = _assets()
        self.log_requests = log_requests
        self.loopback_only = host in LOOPBACK_NAMES or host.startswith("127.")
        if ":" in host:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        """``http://host:port/`` of this server (``localhost``-style for a wildcard bind)."""
        host, port = str(self.server_address[0]), self.server_address[1]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def run_url(self, run_id: str) -> str:
        """The page of one run."""
        from urllib.parse import quote

        return f"{self.url}run?run={quote(run_id, safe='')}"


def _assets() -> dict[str, bytes]:
    """The static files shipped in the package, read once (only these names are served)."""
    return {p.name: p.read_bytes() for p in STATIC.iterdir() if p.is_file() and not p.name.startswith(".")}


def make_server(folders: list[str | os.PathLike[str]], host: str = "127.0.0.1", port: int = 0,
                log_requests: bool = False) -> ViewServer:
    """A server for the runs under ``folders``, bound and ready for ``serve_forever()``."""
    return ViewServer(folders, host, port, log_requests)


def serve_in_thread(server: ViewServer) -> threading.Thread:
    """Serve in a daemon thread (tests, notebooks); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="statetrainer-web", daemon=True)
    thread.start()
    return thread
